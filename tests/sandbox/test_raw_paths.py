"""The raw call path's caches stay correct: guest memory that grows under the host's cached view,
and host callbacks reached at different call depths (the cached value-array view)."""

from __future__ import annotations

from sandbox import InMemoryHost, Permissions, PluginConfig, Runtime
from tests.sandbox.guests import call_guest, decode_result, module

READ = Permissions(kv_read=True)


def test_results_past_the_memory_seen_at_load(runtime: Runtime, host: InMemoryHost) -> None:
    # The guest's allocator grows memory for each big result: the host writes the value and
    # reads the response beyond the size its view had when the instance was made.
    plugin = runtime.load(
        call_guest("kv_get_value", [b"myapp:k"]), PluginConfig("t", READ, kv_prefixes=("myapp:",)), host
    )
    plugin.init()
    for i in range(6):
        value = bytes([i]) * (300_000 + i)
        host.kv["myapp:k"] = value
        assert decode_result(plugin.handle_request({"type": "Probe"})) == [0, value]


def test_host_function_from_nested_guest_frames(runtime: Runtime, host: InMemoryHost) -> None:
    # The same import called from two call depths sees its own arguments each time.
    wasm = module("""
  (data (i32.const 4096) "\\81\\a4type\\a2Ok")
  (func $deep (param $d i32) (result i64)
    (if (result i64) (i32.eqz (local.get $d))
      (then (call $get_node_id))
      (else (i64.add (call $get_node_id) (call $deep (i32.sub (local.get $d) (i32.const 1)))))))
  (func (export "handle_request") (param i32 i32) (result i64)
    (if (i64.ne (call $deep (i32.const 5)) (i64.const 42)) (then unreachable))
    (i64.const 17592186044425))""", imports=("get_node_id",))  # (4096 << 32) | 9
    plugin = runtime.load(wasm, PluginConfig("t"), InMemoryHost(node=7))
    plugin.init()
    assert plugin.handle_request({"type": "Probe"}) == {"type": "Ok"}
