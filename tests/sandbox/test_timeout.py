"""The execution timeout is wall-clock for the whole call, host calls included."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sandbox import InMemoryHost, Permissions, PluginConfig, PluginInstance, Runtime
from tests.sandbox.guests import module, wat_bytes

KEY = b"myapp:k"
PERMS = Permissions(kv_read=True, kv_write=True)
# handle_request calls kv_get_value on KEY forever.
HOST_LOOP = f"""
  (data (i32.const 256) "{wat_bytes(KEY)}")
  (func (export "handle_request") (param i32 i32) (result i64)
    (loop $l (drop (call $kv_get_value (i32.const 256) (i32.const {len(KEY)}))) (br $l))
    (i64.const 0))"""
# handle_request calls kv_get_value once, then kv_put_value, then answers nothing.
GET_THEN_PUT = f"""
  (data (i32.const 256) "{wat_bytes(KEY)}")
  (func (export "handle_request") (param i32 i32) (result i64)
    (drop (call $kv_get_value (i32.const 256) (i32.const {len(KEY)})))
    (drop (call $kv_put_value (i32.const 256) (i32.const {len(KEY)}) (i32.const 256) (i32.const 1)))
    (i64.const 0))"""


@dataclass
class SlowHost(InMemoryHost):
    """kv_get takes `delay_s` (a Raft round trip, a slow peer); it notes the call's time left."""

    delay_s: float = 0.02
    plugin: PluginInstance | None = None
    time_left_s: list[float] = field(default_factory=list)

    def kv_get(self, key: str) -> bytes | None:
        if self.plugin is not None:
            self.time_left_s.append(self.plugin.call_time_left_s())
        time.sleep(self.delay_s)
        return super().kv_get(key)


def _load(
    runtime: Runtime, host: SlowHost, body: str, timeout_s: float, imports: tuple[str, ...]
) -> PluginInstance:
    config = PluginConfig(
        "slow", PERMS, kv_prefixes=("myapp:",), fuel_limit=10**11, execution_timeout_s=timeout_s
    )
    plugin = runtime.load(module(body, imports=imports), config, host)
    host.plugin = plugin
    plugin.init()
    return plugin


def test_slow_host_calls_count_against_the_timeout(runtime: Runtime) -> None:
    # 20 ms host calls under a 0.2 s timeout ran 4.06 s: each deadline callback used one tick
    # however many ticks had passed during the host call.
    host = SlowHost(delay_s=0.02)
    plugin = _load(runtime, host, HOST_LOOP, 0.2, ("kv_get_value",))
    started = time.monotonic()
    resp = plugin.handle_request({"type": "X"})
    elapsed = time.monotonic() - started
    assert resp["code"] == "TIMEOUT", resp
    assert elapsed < 0.2 + 1.0, elapsed
    assert plugin.stats.timeouts == 1


def test_a_host_call_returning_past_the_deadline_ends_the_call(runtime: Runtime) -> None:
    # The guest does nothing more once a host call returns past its deadline: no kv_put.
    host = SlowHost(delay_s=0.4)
    plugin = _load(runtime, host, GET_THEN_PUT, 0.1, ("kv_get_value", "kv_put_value"))
    resp = plugin.handle_request({"type": "X"})
    assert resp["code"] == "TIMEOUT", resp
    assert "myapp:k" not in host.kv


def test_host_calls_within_the_timeout_run_and_see_their_time_left(runtime: Runtime) -> None:
    host = SlowHost(delay_s=0.01)
    plugin = _load(runtime, host, GET_THEN_PUT, 5.0, ("kv_get_value", "kv_put_value"))
    resp = plugin.handle_request({"type": "X"})
    assert resp["code"] == "INVALID_RESPONSE"  # it answered nothing, after both host calls ran
    assert host.kv["myapp:k"] == b"m"
    assert len(host.time_left_s) == 1 and 0 < host.time_left_s[0] <= 5.0
