"""The C call path (sandbox/_guestcall.c) at its edges: every pointer and length a guest hands
back is checked against its memory exactly, a broken ABI is a trap with a message that says
what broke, and the next call runs on a clean instance."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import msgpack
import pytest
import wasmtime

from sandbox import InMemoryHost, Permissions, PluginConfig, Runtime, SandboxCode, SandboxError, limits
from sandbox.raw import FAULT, OK, TRAPPED, define_host, func_address, trap_of
from tests.sandbox.guests import ALLOC, info_export, wat_bytes

PAGE = 65536
PONG = msgpack.packb({"type": "Pong"})


def _plugin(runtime: Runtime, host: InMemoryHost, handle: str, alloc: str = ALLOC, extra: str = "",
            imports: str = "", perms: Permissions | None = None):  # type: ignore[no-untyped-def]
    wat = f"""(module {imports} (memory (export "memory") 2) {alloc} {info_export()}
      (func (export "handle_request") (param $p i32) (param $n i32) (result i64) {handle}) {extra})"""
    plugin = runtime.load(wasmtime.wat2wasm(wat), PluginConfig("edge", perms or Permissions()), host)
    plugin.init()
    return plugin


def _returning(ptr: int, n: int) -> str:
    return f"(i64.const {(ptr << 32) | n})"


def test_output_ending_exactly_at_the_end_of_memory_is_read(runtime: Runtime, host: InMemoryHost) -> None:
    at = 2 * PAGE - len(PONG)
    plugin = _plugin(
        runtime, host, _returning(at, len(PONG)), extra=f'(data (i32.const {at}) "{wat_bytes(PONG)}")'
    )
    assert plugin.handle_request({"type": "X"}) == {"type": "Pong"}


def test_output_one_byte_past_memory_is_a_trap_naming_the_range(runtime: Runtime, host: InMemoryHost) -> None:
    at = 2 * PAGE - len(PONG) + 1
    plugin = _plugin(runtime, host, _returning(at, len(PONG)))
    resp = plugin.handle_request({"type": "X"})
    assert resp["code"] == "PLUGIN_TRAP"
    assert f"guest range [{at}, {at}+{len(PONG)}) is outside memory of {2 * PAGE} bytes" in resp["message"]
    assert plugin.stats.traps == 1


def test_output_over_the_limit_is_refused_before_any_read(runtime: Runtime, host: InMemoryHost) -> None:
    n = limits.GUEST_OUTPUT_MAX_BYTES + 1
    plugin = _plugin(runtime, host, _returning(0, n))
    resp = plugin.handle_request({"type": "X"})
    assert (
        resp["code"] == "PLUGIN_TRAP"
        and f"buffer of {n} bytes, over {limits.GUEST_OUTPUT_MAX_BYTES}" in resp["message"]
    )


@pytest.mark.parametrize(("returned", "fits"),
                         [(0, False), (2 * PAGE - 64, True), (2 * PAGE - 63, False), (-1, False)])
def test_allocator_pointer_is_checked_for_the_whole_input(runtime: Runtime, host: InMemoryHost, returned: int,
                                                          fits: bool) -> None:
    # The request packs to exactly 64 bytes: a pointer 64 bytes before the end just fits.
    request = {"type": "X", "pad": "p" * 50}
    assert len(msgpack.packb(request)) == 64
    alloc = f'(func (export "aspen_alloc") (param i32) (result i32) (i32.const {returned}))'
    pong = f'(data (i32.const 256) "{wat_bytes(PONG)}")'
    plugin = _plugin(runtime, host, _returning(256, len(PONG)), alloc=alloc, extra=pong)
    resp = plugin.handle_request(request)
    if fits:
        assert resp == {"type": "Pong"}
    else:
        assert resp["code"] == "PLUGIN_TRAP"
        assert f"aspen_alloc(64) returned an unusable pointer {returned & 0xFFFFFFFF}" in resp["message"]


def test_input_arrives_intact_where_the_allocator_said(runtime: Runtime, host: InMemoryHost) -> None:
    # Echo: the guest answers with its own input buffer, so the bytes must be the request's.
    plugin = _plugin(runtime, host, "(i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32)) "
                                    "(i64.extend_i32_u (local.get $n)))")
    for size in (0, 1, 100, 70_000):
        request = {"type": "Echo", "data": b"\xab" * size}
        assert plugin.handle_request(request) == request


def test_a_trap_in_aspen_free_fails_the_call_and_the_next_call_is_clean(
    runtime: Runtime, host: InMemoryHost
) -> None:
    # A request over 20 bytes is answered from a copy at 768, which aspen_free refuses to free.
    free = ('(func (export "aspen_free") (param $p i32) (param i32) '
            "(if (i32.eq (local.get $p) (i32.const 768)) (then unreachable)))")
    handle = (
        f"(if (result i64) (i32.gt_u (local.get $n) (i32.const 20)) (then {_returning(768, len(PONG))}) "
        f"(else {_returning(256, len(PONG))}))"
    )
    pong = wat_bytes(PONG)
    plugin = _plugin(
        runtime, host, handle, extra=f'{free} (data (i32.const 256) "{pong}") (data (i32.const 768) "{pong}")'
    )
    resp = plugin.handle_request({"type": "X", "pad": "p" * 30})
    assert resp["code"] == "PLUGIN_TRAP" and "unreachable" in resp["message"]
    assert plugin.handle_request({"type": "X"}) == {"type": "Pong"}  # on a fresh instance
    assert plugin.stats.instantiations == 2


def test_a_host_function_result_into_a_broken_allocator_traps_naming_the_function(
        runtime: Runtime, host: InMemoryHost) -> None:
    host.kv["k:a"] = b"value"
    imports = '(import "aspen" "kv_get_value" (func $kv_get_value (param i32 i32) (result i64)))'
    # The first allocation (the request) succeeds; the second (kv_get_value's result) returns a
    # pointer past the end of memory.
    alloc = """(global $calls (mut i32) (i32.const 0))
      (func (export "aspen_alloc") (param i32) (result i32)
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        (if (result i32) (i32.eq (global.get $calls) (i32.const 1))
          (then (i32.const 4096)) (else (i32.const 200000))))"""
    plugin = _plugin(
        runtime,
        host,
        f"(drop (call $kv_get_value (i32.const 1024) (i32.const 3))) {_returning(256, 1)}",
        alloc=alloc,
        extra='(data (i32.const 1024) "k:a")',
        imports=imports,
        perms=Permissions(kv_read=True),
    )
    resp = plugin.handle_request({"type": "X"})
    assert resp["code"] == "PLUGIN_TRAP"
    assert "kv_get_value: aspen_alloc(" in resp["message"]
    assert "returned an unusable pointer 200000" in resp["message"]


def test_fuel_used_is_what_the_call_consumed(runtime: Runtime, host: InMemoryHost) -> None:
    spin = "(local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) " \
           "(br_if $l (i32.lt_u (local.get $i) (i32.const 10000)))) (i64.const 0)"
    plugin = _plugin(runtime, host, spin)
    before = plugin.stats.fuel_used
    plugin.handle_request({"type": "X"})
    used = plugin.stats.fuel_used - before
    assert 10_000 < used < 200_000  # a few instructions per iteration, plus alloc and the call


def test_call_site_status_codes(runtime: Runtime, host: InMemoryHost) -> None:
    plugin = _plugin(runtime, host, "unreachable", extra='(func (export "noop") (result i64) (i64.const 0))')
    inst = plugin._inst
    assert inst is not None
    noop = inst.instance.exports(inst.store)["noop"]
    assert isinstance(noop, wasmtime.Func)
    assert inst.site.call(func_address(noop), None, 1_000_000, 100)[:2] == (OK, None)
    status, value, _ = inst.site.call(inst.funcs["handle_request"], b"\x80", 1_000_000, 100)
    assert status == TRAPPED and trap_of(value).trap_code == wasmtime.TrapCode.UNREACHABLE
    status, value, left = inst.site.call(inst.funcs["handle_request"], b"\x80", 0, 100)
    assert status == TRAPPED and left == 0  # no fuel at all: the allocator cannot even start
    assert trap_of(value).trap_code == wasmtime.TrapCode.OUT_OF_FUEL
    assert FAULT not in (OK, TRAPPED)


@pytest.mark.parametrize("limit", ["fuel", "timeout"])
def test_running_out_inside_the_allocator_under_a_host_function_keeps_its_cause(
        runtime: Runtime, host: InMemoryHost, limit: str) -> None:
    # The allocator spins on its second call, which comes from inside kv_get_value: the trap
    # passes through the host function, and must still say fuel or time, not "a trap".
    host.kv["k:a"] = b"value"
    imports = '(import "aspen" "kv_get_value" (func $kv_get_value (param i32 i32) (result i64)))'
    alloc = """(global $calls (mut i32) (i32.const 0))
      (func (export "aspen_alloc") (param i32) (result i32)
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        (if (i32.gt_u (global.get $calls) (i32.const 1)) (then (loop $spin (br $spin))))
        (i32.const 4096))"""
    wat = f"""(module {imports} (memory (export "memory") 2) {alloc} {info_export()}
      (data (i32.const 1024) "k:a")
      (func (export "handle_request") (param $p i32) (param $n i32) (result i64)
        (drop (call $kv_get_value (i32.const 1024) (i32.const 3))) {_returning(256, 1)}))"""
    config = (PluginConfig("spin-alloc", Permissions(kv_read=True), kv_prefixes=("k:",), fuel_limit=2_000_000)
              if limit == "fuel" else
              PluginConfig("spin-alloc", Permissions(kv_read=True), kv_prefixes=("k:",), fuel_limit=10**11,
                           execution_timeout_s=0.2))
    plugin = runtime.load(wasmtime.wat2wasm(wat), config, host)
    plugin.init()
    resp = plugin.handle_request({"type": "X"})
    assert resp["code"] == ("FUEL_EXHAUSTED" if limit == "fuel" else "TIMEOUT"), resp
    assert (plugin.stats.fuel_exhausted, plugin.stats.timeouts) == ((1, 0) if limit == "fuel" else (0, 1))


def test_a_guest_running_past_a_tick_gives_up_the_gil(runtime: Runtime, host: InMemoryHost) -> None:
    # Guest code starts holding the GIL (a short call then costs no hand-off) and must give it
    # up at the first epoch tick it is still running: Python threads (the event loop, Raft)
    # keep running beside a slow plugin. Here a Python thread counts while the guest spins
    # until its 0.3 s timeout; holding the GIL throughout would leave the count near zero.
    spin = '(func (export "handle_request") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))'
    plugin = runtime.load(
        wasmtime.wat2wasm(f'(module (memory (export "memory") 1) {ALLOC} {info_export()} {spin})'),
        PluginConfig("spin", fuel_limit=10**11, execution_timeout_s=0.3),
        host,
    )
    plugin.init()
    counted = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counted[0] += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        before = counted[0]
        started = time.monotonic()
        assert plugin.handle_request({"type": "X"})["code"] == "TIMEOUT"
        assert time.monotonic() - started >= 0.29  # the whole budget, not one tick
        assert counted[0] - before > 10_000
    finally:
        stop.set()
        counter.join()


def _os_threads() -> int:
    """The epoch ticker threads of this process (named by _guestcall.c): other tests' threads
    may start or end meanwhile, so all threads is a count that flakes."""
    count = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            count += (task / "comm").read_text().strip() == "aspen-ticker"
        except OSError:
            continue  # ended while listing
    return count


def test_each_runtime_has_one_ticker_thread_and_close_joins_it() -> None:
    before = _os_threads()
    runtimes = [Runtime() for _ in range(5)]
    assert _os_threads() == before + 5  # one C ticker each (no Python thread: it needs no GIL)
    for rt in runtimes:
        rt.close()
        rt.close()  # twice is fine
    assert _os_threads() == before


# The runtime outlives sandbox.raw's globals at exit (a global lambda keeps its plugin for the
# last stage of teardown), so EpochTicker.__del__ cannot stop the ticker any more.
_EXIT_WITHOUT_CLOSE = """
from sandbox import InMemoryHost, Permissions, PluginConfig, Runtime
from tests.plugins.wat import plugin
runtime = Runtime()
pinger = runtime.load(plugin("p", "1.0.0", {"type": "Pong"}), PluginConfig("p", Permissions()),
                      InMemoryHost())
pinger.init()
ping = lambda: pinger.handle_request({"type": "Ping"})
for _ in range(1000):
    ping()
"""


def test_a_program_that_exits_without_closing_its_runtime_exits_cleanly() -> None:
    # At exit Python may free the Engine while the C ticker still runs: the ticker holds an
    # engine reference of its own, or it ticks freed memory (this crashed with SIGSEGV).
    root = Path(__file__).resolve().parents[2]
    for _ in range(3):
        r = subprocess.run(
            [sys.executable, "-c", _EXIT_WITHOUT_CLOSE],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        assert r.returncode == 0, r.stderr[-2000:]


_KV_GET = '(import "aspen" "kv_get_value" (func $kv_get_value (param i32 i32) (result i64)))'


def test_a_host_bug_is_a_trap_naming_the_function_and_is_logged(
    runtime: Runtime, host: InMemoryHost, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(key: str) -> bytes | None:
        raise RuntimeError("the host's own bug")

    monkeypatch.setattr(host, "kv_get", broken)
    key = "__plugin:edge:a"  # in the plugin's own namespace: the call reaches the host
    plugin = _plugin(runtime, host, f"(drop (call $kv_get_value (i32.const 1024) (i32.const {len(key)}))) "
                     f"{_returning(256, 1)}", extra=f'(data (i32.const 1024) "{key}")', imports=_KV_GET,
                     perms=Permissions(kv_read=True))
    with caplog.at_level("ERROR", logger="aspen.sandbox"):
        resp = plugin.handle_request({"type": "X"})
    assert resp["code"] == "PLUGIN_TRAP" and "kv_get_value: host error RuntimeError" in resp["message"]
    logged = [r for r in caplog.records if r.getMessage() == "host function kv_get_value failed"]
    assert logged and logged[0].exc_info is not None and "the host's own bug" in str(logged[0].exc_info[1])


def test_a_start_function_calling_the_host_fails_instantiation(runtime: Runtime, host: InMemoryHost) -> None:
    # Host functions are bound to the instance's call site after instantiation: before that a
    # call is refused with a trap, never run against a half-made instance.
    wat = f"""(module {_KV_GET} (memory (export "memory") 1) {ALLOC} {info_export()}
      (func $start (drop (call $kv_get_value (i32.const 0) (i32.const 1)))) (start $start)
      (func (export "handle_request") (param i32 i32) (result i64) (i64.const 0)))"""
    with pytest.raises(SandboxError) as exc:
        runtime.load(wasmtime.wat2wasm(wat), PluginConfig("starter", Permissions(kv_read=True)), host)
    assert exc.value.code == SandboxCode.INVALID_MODULE
    assert "host function called while the module was being instantiated" in exc.value.message


def test_instances_dropped_after_traps_are_freed_with_their_host_functions(
    runtime: Runtime, host: InMemoryHost
) -> None:
    # Host functions, their failure handlers and the store must not keep each other alive: each
    # dropped instance (and its memory reservation) is freed, with the methods it held.
    plugin = _plugin(runtime, host, "unreachable", imports=_KV_GET)
    gc.collect()
    held = sys.getrefcount(plugin._funcs)  # the live instance's host functions hold it, once each
    dropped = []
    for _ in range(3):
        assert plugin._inst is not None
        dropped.append(weakref.ref(plugin._inst))
        assert plugin.handle_request({"type": "X"})["code"] == "PLUGIN_TRAP"
        plugin.info()  # the next call runs on a fresh instance
    gc.collect()
    assert [ref() for ref in dropped] == [None, None, None]
    now_held = sys.getrefcount(plugin._funcs)  # outside the assert, whose rewriting holds one more
    assert now_held == held  # one live instance's worth, as before


def test_a_plugin_whose_host_reaches_it_is_freed_once_dropped(runtime: Runtime) -> None:
    # A node's Host reaches its plugins (NodeHost -> manager -> plugin): the host functions'
    # methods lead back to the store that holds them. Held from C, that cycle was never freed.
    host = InMemoryHost()
    plugin = _plugin(runtime, host, _returning(256, 1), imports=_KV_GET)
    host.reaches = plugin  # type: ignore[attr-defined]
    dropped = weakref.ref(plugin)
    del plugin, host
    gc.collect()
    assert dropped() is None


def test_host_functions_take_integer_results_only() -> None:
    linker = wasmtime.Linker(wasmtime.Engine())
    f32 = wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.f32()])
    with pytest.raises(ValueError, match="at most one i32 or i64 result"):
        define_host(linker, "aspen", "f", f32, lambda x: 0, lambda kind, value: "failed")
