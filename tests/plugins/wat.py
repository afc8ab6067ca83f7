"""WAT plugins for the cluster tests, compiled with wasmtime.wat2wasm.

`plugin(...)` builds a module with memory, a bump allocator, plugin_info (name, version) and
a handle_request that answers a fixed msgpack map; optional bodies add plugin_init,
plugin_on_timer and plugin_on_hook_event. `strings` are placed in data segments and named
$s0, $s1, ... as (offset, length) constants for the bodies to use.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import wasmtime

from sandbox import abi
from tests.sandbox.guests import ALLOC, wat_bytes


def _import(name: str) -> str:
    params, results = abi.IMPORTS[name]
    p = f" (param {' '.join(params)})" if params else ""
    r = f" (result {' '.join(results)})" if results else ""
    return f'  (import "aspen" "{name}" (func ${name}{p}{r}))\n'


def plugin(
    name: str,
    version: str,
    response: dict,
    *,
    imports: tuple[str, ...] = (),
    strings: tuple[bytes, ...] = (),
    init: str = "",
    on_timer: str = "",
    on_hook: str = "",
    handle: str = "",
) -> bytes:
    info = msgpack.packb({"name": name, "version": version})
    resp = msgpack.packb(response)
    datas = [
        f'  (data (i32.const 512) "{wat_bytes(info)}")',
        f'  (data (i32.const 1024) "{wat_bytes(resp)}")',
    ]
    off = 4096
    consts = {}
    for i, s in enumerate(strings):
        datas.append(f'  (data (i32.const {off}) "{wat_bytes(s)}")')
        consts[f"$s{i}"] = f"(i32.const {off}) (i32.const {len(s)})"
        off += len(s) + 8

    def sub(body: str) -> str:
        for k, v in sorted(consts.items(), key=lambda kv: -len(kv[0])):
            body = body.replace(k, v)
        return body

    parts = [
        f'(module\n{"".join(_import(i) for i in imports)}  (memory (export "memory") 4)',
        ALLOC,
        *datas,
        f'  (func (export "plugin_info") (result i64) (i64.const {(512 << 32) | len(info)}))',
        f'  (func (export "handle_request") (param $p i32) (param $n i32) (result i64)\n    {sub(handle)}\n'
        f"    (i64.const {(1024 << 32) | len(resp)}))",
    ]
    if init:
        parts.append(f'  (func (export "plugin_init") (result i64) {sub(init)} (i64.const 0))')
    if on_timer:
        parts.append(
            f'  (func (export "plugin_on_timer") (param $p i32) (param $n i32) (result i64) {sub(on_timer)} '
            '(i64.const 0))'
        )
    if on_hook:
        parts.append(
            '  (func (export "plugin_on_hook_event") (param $p i32) (param $n i32) (result i64) '
            f'{sub(on_hook)} (i64.const 0))'
        )
    return wasmtime.wat2wasm("\n".join(parts) + ")")


def write(tmp: Path, wasm: bytes, manifest: dict) -> tuple[Path, Path]:
    """The .wasm and plugin.json a user would pass to `aspen-cli plugin install`."""
    name = manifest["name"]
    w, m = tmp / f"{name}-{manifest['version']}.wasm", tmp / f"{name}-{manifest['version']}.json"
    w.write_bytes(wasm)
    m.write_text(json.dumps(manifest))
    return w, m


def manifest(name: str, version: str, handles: list[str], **extra: object) -> dict:
    return {"name": name, "version": version, "handles": handles, **extra}
