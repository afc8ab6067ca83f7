"""Hostile guests: the host survives each one and keeps serving other plugins."""

from __future__ import annotations

import threading
import time

import pytest
import wasmtime

from sandbox import InMemoryHost, Permissions, PluginConfig, PluginState, Runtime, SandboxError
from tests.sandbox.guests import ALLOC, INFO, call_guest, info_export, module, wat_bytes

LOOP = '(func (export "handle_request") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))'
PONG = b"\x81\xa4type\xa4Pong"
PAGES_PREFIX = b"\x82\xa4type\xa5Pages\xa1n"
RESPOND = f"""
  (data (i32.const 256) "{wat_bytes(PONG)}")
  (func (export "handle_request") (param i32 i32) (result i64) (i64.const {(256 << 32) | len(PONG)}))"""


def healthy_neighbour(runtime: Runtime, host: InMemoryHost) -> None:
    """Another plugin on the same runtime still answers."""
    other = runtime.load(module(RESPOND), PluginConfig("neighbour"), host)
    other.init()
    assert other.handle_request({"type": "Ping"}) == {"type": "Pong"}


def test_infinite_loop_is_stopped_by_fuel(runtime: Runtime, host: InMemoryHost) -> None:
    plugin = runtime.load(module(LOOP), PluginConfig("spin", fuel_limit=5_000_000), host)
    plugin.init()
    resp = plugin.handle_request({"type": "X"})
    assert resp["code"] == "FUEL_EXHAUSTED"
    assert plugin.stats.fuel_exhausted == 1 and plugin.stats.fuel_used >= 5_000_000
    healthy_neighbour(runtime, host)


def test_infinite_loop_is_stopped_by_the_wall_clock_timeout(runtime: Runtime, host: InMemoryHost) -> None:
    plugin = runtime.load(
        module(LOOP), PluginConfig("spin", fuel_limit=10**11, execution_timeout_s=0.3), host
    )
    plugin.init()
    started = time.monotonic()
    resp = plugin.handle_request({"type": "X"})
    elapsed = time.monotonic() - started
    assert resp["code"] == "TIMEOUT", resp
    assert elapsed < 30  # it really stopped (no timing assertion beyond "it returned")
    healthy_neighbour(runtime, host)


def test_timeout_stops_a_guest_while_other_threads_run(runtime: Runtime, host: InMemoryHost) -> None:
    spin = runtime.load(module(LOOP), PluginConfig("spin", fuel_limit=10**11, execution_timeout_s=0.5), host)
    spin.init()
    out: dict[str, object] = {}
    t = threading.Thread(target=lambda: out.setdefault("r", spin.handle_request({"type": "X"})))
    t.start()
    healthy_neighbour(runtime, host)  # served while the spinner runs in another thread
    t.join(30)
    assert not t.is_alive() and out["r"]["code"] == "TIMEOUT"  # type: ignore[index]


def test_memory_bomb_hits_the_memory_limit(runtime: Runtime, host: InMemoryHost) -> None:
    # Grow one page at a time until memory.grow fails; report how many pages it got.
    n = len(PAGES_PREFIX)
    body = f"""
  (data (i32.const 256) "{wat_bytes(PAGES_PREFIX)}")
  (func (export "handle_request") (param i32 i32) (result i64)
    (local $n i32) (local $out i32)
    (block $done (loop $l
      (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $l)))
    (local.set $out (call $alloc (i32.const 32)))
    (memory.copy (local.get $out) (i32.const 256) (i32.const {n}))
    (i32.store8 (i32.add (local.get $out) (i32.const {n})) (i32.const 0xd2))
    (i32.store8 (i32.add (local.get $out) (i32.const {n + 1})) (i32.shr_u (local.get $n) (i32.const 24)))
    (i32.store8 (i32.add (local.get $out) (i32.const {n + 2})) (i32.shr_u (local.get $n) (i32.const 16)))
    (i32.store8 (i32.add (local.get $out) (i32.const {n + 3})) (i32.shr_u (local.get $n) (i32.const 8)))
    (i32.store8 (i32.add (local.get $out) (i32.const {n + 4})) (local.get $n))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.const {n + 5})))"""
    limit = 4 * 1024 * 1024
    plugin = runtime.load(module(body), PluginConfig("bomb", memory_limit_bytes=limit), host)
    plugin.init()
    resp = plugin.handle_request({"type": "X"})
    assert resp["type"] == "Pages"
    assert (2 + resp["n"]) * 65536 <= limit  # memory.grow failed at the limit
    healthy_neighbour(runtime, host)


def test_out_of_bounds_pointer_traps_and_the_next_call_is_clean(runtime: Runtime, host: InMemoryHost) -> None:
    body = """(func (export "handle_request") (param i32 i32) (result i64)
      (call $kv_get_value (i32.const 0x7ffffff0) (i32.const 8)))"""
    plugin = runtime.load(
        module(body, imports=("kv_get_value",)), PluginConfig("oob", Permissions(kv_read=True)), host
    )
    plugin.init()
    assert plugin.handle_request({"type": "X"})["code"] == "PLUGIN_TRAP"
    assert plugin.stats.instantiations == 1
    plugin.handle_request({"type": "X"})
    assert plugin.stats.instantiations == 2  # a fresh instance after the trap
    healthy_neighbour(runtime, host)


def test_huge_length_claims_are_refused(runtime: Runtime, host: InMemoryHost) -> None:
    for fn, args in (("kv_get_value", [0x100, 0x7FFFFFFF]), ("blob_put_data", [0x100, 0x7FFFFFFF]),
                     ("log_info_msg", [0x100, 0x7FFFFFFF]), ("kv_get_value", [0x100, -5])):
        consts = " ".join(f"(i32.const {a})" for a in args)
        call = f"(call ${fn} {consts})" + (" (i64.const 0)" if fn.startswith("log") else "")
        body = f'(func (export "handle_request") (param i32 i32) (result i64) {call})'
        plugin = runtime.load(
            module(body, imports=(fn,)),
            PluginConfig("huge", Permissions(kv_read=True, blob_write=True)),
            host,
        )
        plugin.init()
        resp = plugin.handle_request({"type": "X"})
        assert resp["type"] == "Error", (fn, resp)  # an error value or a trap, never a crash
    assert not host.blobs
    healthy_neighbour(runtime, host)


def test_guest_returning_a_buffer_outside_memory(runtime: Runtime, host: InMemoryHost) -> None:
    body = '(func (export "handle_request") (param i32 i32) (result i64) (i64.const 0x7fff000000001000))'
    plugin = runtime.load(module(body), PluginConfig("bad-out"), host)
    plugin.init()
    assert plugin.handle_request({"type": "X"})["code"] == "PLUGIN_TRAP"


def test_allocator_returning_garbage(runtime: Runtime, host: InMemoryHost) -> None:
    wat = f"""(module (memory (export "memory") 1)
      (func (export "aspen_alloc") (param i32) (result i32) (i32.const -256))
      {info_export(INFO, 512)}
      {RESPOND})"""
    plugin = runtime.load(wasmtime.wat2wasm(wat), PluginConfig("garbage-alloc"), host)
    plugin.init()
    assert plugin.handle_request({"type": "X"})["code"] == "PLUGIN_TRAP"
    healthy_neighbour(runtime, host)


def test_unknown_imports_are_refused_at_load(runtime: Runtime, host: InMemoryHost) -> None:
    for imp in ('(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))',
                '(import "aspen" "launch_missiles" (func))',
                '(import "aspen" "kv_get_value" (func (param i32) (result i64)))'):
        wat = f"(module {imp} (memory (export \"memory\") 1) {ALLOC} {info_export()} {RESPOND})"
        with pytest.raises(SandboxError) as err:
            runtime.load(wasmtime.wat2wasm(wat), PluginConfig("imports"), host)
        assert err.value.code == "UNKNOWN_IMPORT"
    assert "wasi_snapshot_preview1.fd_write" in SandboxError.__str__(
        _load_error(
            runtime,
            host,
            '(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))',
        )
    )


def _load_error(runtime: Runtime, host: InMemoryHost, imp: str) -> SandboxError:
    wat = f"(module {imp} (memory (export \"memory\") 1) {ALLOC} {info_export()} {RESPOND})"
    try:
        runtime.load(wasmtime.wat2wasm(wat), PluginConfig("imports"), host)
    except SandboxError as exc:
        return exc
    raise AssertionError("loaded")


def test_missing_exports_and_bad_modules(runtime: Runtime, host: InMemoryHost) -> None:
    with pytest.raises(SandboxError) as err:
        runtime.load(wasmtime.wat2wasm('(module (memory (export "memory") 1))'), PluginConfig("x"), host)
    assert err.value.code == "MISSING_EXPORT"
    with pytest.raises(SandboxError) as err:
        runtime.load(b"\0asm garbage", PluginConfig("x"), host)
    assert err.value.code == "INVALID_MODULE"
    with pytest.raises(SandboxError) as err:
        runtime.load(b"\0" * (50 * 1024 * 1024 + 1), PluginConfig("x"), host)
    assert err.value.code == "MODULE_TOO_LARGE"


@pytest.mark.parametrize("export", ["plugin_init", "handle_request", "plugin_health", "plugin_on_timer",
                                    "plugin_on_hook_event", "plugin_shutdown", "plugin_info"])
def test_trap_in_every_export(runtime: Runtime, host: InMemoryHost, export: str) -> None:
    params = {"handle_request": "(param i32 i32)", "plugin_on_timer": "(param i32 i32)",
              "plugin_on_hook_event": "(param i32 i32)"}.get(export, "")
    trapping = f'(func (export "{export}") {params} (result i64) unreachable)'
    others = ""
    if export != "handle_request":
        others += RESPOND
    info = "" if export == "plugin_info" else info_export()
    wasm = wasmtime.wat2wasm(f'(module (memory (export "memory") 2) {ALLOC} {info} {others} {trapping})')
    plugin = runtime.load(wasm, PluginConfig("trapper"), host)
    if export == "plugin_info":
        with pytest.raises(SandboxError) as err:
            plugin.info()
        assert err.value.code == "PLUGIN_TRAP"
        return
    if export == "plugin_init":
        with pytest.raises(SandboxError):
            plugin.init()
        assert plugin.state == PluginState.FAILED
        assert plugin.handle_request({"type": "X"})["code"] == "NOT_READY"
        return
    plugin.init()
    if export == "handle_request":
        assert plugin.handle_request({"type": "X"})["code"] == "PLUGIN_TRAP"
    elif export == "plugin_health":
        assert plugin.health() is False and plugin.state == PluginState.DEGRADED
    elif export == "plugin_shutdown":
        plugin.shutdown()
        assert plugin.state == PluginState.STOPPED
    else:
        with pytest.raises(SandboxError) as err:
            (plugin.on_timer("t") if export == "plugin_on_timer" else plugin.on_hook_event({"subject": "x"}))
        assert err.value.code == "PLUGIN_TRAP"
    healthy_neighbour(runtime, host)


def test_repeated_traps_fail_the_plugin(runtime: Runtime, host: InMemoryHost) -> None:
    plugin = runtime.load(module(LOOP), PluginConfig("flaky", fuel_limit=100_000), host)
    plugin.init()
    for _ in range(5):
        assert plugin.handle_request({"type": "X"})["code"] == "FUEL_EXHAUSTED"
    assert plugin.state == PluginState.FAILED
    assert plugin.handle_request({"type": "X"})["code"] == "NOT_READY"
    healthy_neighbour(runtime, host)


def test_many_calls_after_a_trap_stay_correct(runtime: Runtime, host: InMemoryHost) -> None:
    host.kv["myapp:k"] = b"v"
    plugin = runtime.load(call_guest("kv_get_value", [b"myapp:k"]),
                          PluginConfig("t", Permissions(kv_read=True), kv_prefixes=("myapp:",)), host)
    plugin.init()
    for _ in range(1000):
        assert plugin.handle_request({"type": "X"})["r"] == [0, b"v"]
