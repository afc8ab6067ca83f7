"""The compiled-module cache (sandbox/runtime.py): native code loaded from disk only when the file
names the wasm being loaded and is whole; concurrent compiles never share a temp file.

Before: the file was deserialized as it was found (a damaged or swapped file became machine code
in the node), and every compile of one wasm wrote the same `<key>.tmp`.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sandbox.runtime import Runtime
from tests.sandbox.guests import module

HANDLE = '(func (export "handle_request") (param i32 i32) (result i64) (i64.const 0))'
PLUGIN_A = module(HANDLE + '(func (export "a") )')
PLUGIN_B = module(HANDLE + '(func (export "b") )')


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.cwasm"))


def test_a_damaged_cache_file_is_compiled_again_not_loaded(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rt = Runtime(cache)
    try:
        rt.compile(PLUGIN_A)
        [path] = cache_files(cache)
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF  # one flipped bit inside the machine code
        path.write_bytes(bytes(raw))
        assert rt.compile(PLUGIN_A) is not None
        assert path.read_bytes() != bytes(raw), "the damaged file was kept"
        rt.compile(PLUGIN_A)  # and the rewritten file loads
        path.write_bytes(b"short")
        assert rt.compile(PLUGIN_A) is not None
    finally:
        rt.close()


def test_a_file_swapped_in_from_another_wasm_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rt = Runtime(cache)
    try:
        rt.compile(PLUGIN_A)
        [a_path] = cache_files(cache)
        a_bytes = a_path.read_bytes()
        rt.compile(PLUGIN_B)
        b_path = next(p for p in cache_files(cache) if p != a_path)
        b_path.write_bytes(a_bytes)  # A's native code under B's name
        mod = rt.compile(PLUGIN_B)
        assert {e.name for e in mod.exports} >= {"b"}, "B was served A's code"
        assert b_path.read_bytes() != a_bytes
    finally:
        rt.close()


def test_concurrent_compiles_of_one_wasm_leave_one_whole_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rt = Runtime(cache)
    errors: list[BaseException] = []

    def compile_it() -> None:
        try:
            rt.compile(PLUGIN_A)
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=compile_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(cache_files(cache)) == 1
        assert not list(cache.glob("*.tmp")), "a temp file was left behind"
        assert Runtime(cache).compile(PLUGIN_A) is not None
    finally:
        rt.close()
