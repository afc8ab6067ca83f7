"""Every host function's success and error path, and every permission denied (WAT guests)."""

from __future__ import annotations

import msgpack
import nacl.signing
import pytest

from sandbox import InMemoryHost, Permissions, PluginConfig, Runtime, abi
from sandbox.permissions import PERMISSION_NAMES
from tests.sandbox.guests import call_guest, decode_result

ALL = Permissions(**{p: True for p in PERMISSION_NAMES})
H = b"a" * 64


def run(runtime: Runtime, host: InMemoryHost, fn: str, args: list, perms: Permissions = ALL,
        prefixes: tuple[str, ...] = ("myapp:",)) -> object:
    plugin = runtime.load(call_guest(fn, args), PluginConfig("t", perms, kv_prefixes=prefixes), host)
    plugin.init()
    return decode_result(plugin.handle_request({"type": "Probe"}))


# (function, args, permission it needs)
CHECKED = [
    ("kv_get_value", [b"myapp:k"], "kv_read"),
    ("kv_put_value", [b"myapp:k", b"v"], "kv_write"),
    ("kv_delete_key", [b"myapp:k"], "kv_write"),
    ("kv_scan_prefix", [b"myapp:", 10], "kv_read"),
    ("kv_compare_and_swap", [b"myapp:k", 0, -1, b"v"], "kv_write"),
    ("kv_batch_write", [msgpack.packb([["set", "myapp:a", b"1"]])], "kv_write"),
    ("blob_exists", [H], "blob_read"),
    ("blob_get_data", [H], "blob_read"),
    ("blob_put_data", [b"data"], "blob_write"),
    ("is_current_leader", [], "cluster_info"),
    ("get_leader_id", [], "cluster_info"),
    ("sign_data", [b"x"], "signing"),
    ("verify_signature", [b"k" * 32, b"x", b"s" * 64], "signing"),
    ("public_key", [], "signing"),
    ("get_random_bytes", [16], "randomness"),
    ("schedule_timer_on_host", [msgpack.packb({"name": "t", "interval_ms": 1000})], "timers"),
    ("cancel_timer_on_host", [b"t"], "timers"),
    ("subscribe_hook_events", [b"hooks.kv.*"], "hooks"),
    ("unsubscribe_hook_events", [b"hooks.kv.*"], "hooks"),
]


@pytest.mark.parametrize(("fn", "args", "permission"), CHECKED, ids=[c[0] for c in CHECKED])
def test_every_permission_is_denied_by_default(runtime: Runtime, host: InMemoryHost, fn: str, args: list,
                                                 permission: str) -> None:
    host.kv["myapp:k"] = b"untouched"
    result = run(runtime, host, fn, args, perms=Permissions())
    assert result[0] == abi.TAG_ERROR and result[1] == "PERMISSION_DENIED" and permission in result[2]
    assert host.kv == {"myapp:k": b"untouched"} and not host.timers and not host.subscriptions
    # Granting exactly that one permission is enough.
    result = run(runtime, host, fn, args, perms=Permissions(**{permission: True}))
    assert result[:2] != [abi.TAG_ERROR, "PERMISSION_DENIED"]


def test_kv_functions(runtime: Runtime, host: InMemoryHost) -> None:
    assert run(runtime, host, "kv_get_value", [b"myapp:k"]) == [abi.TAG_NOT_FOUND]
    assert run(runtime, host, "kv_put_value", [b"myapp:k", b"v1"])[0] == abi.TAG_OK
    assert host.kv["myapp:k"] == b"v1"
    assert run(runtime, host, "kv_get_value", [b"myapp:k"]) == [abi.TAG_OK, b"v1"]
    host.kv["myapp:k2"] = b"v2"
    host.kv["other:k"] = b"x"
    assert run(runtime, host, "kv_scan_prefix", [b"myapp:", 0]) == [
        abi.TAG_OK,
        [["myapp:k", b"v1"], ["myapp:k2", b"v2"]],
    ]
    assert run(runtime, host, "kv_scan_prefix", [b"myapp:", 1]) == [abi.TAG_OK, [["myapp:k", b"v1"]]]
    assert run(runtime, host, "kv_scan_prefix", [b"myapp:", 10_001])[1] == "LIMIT_EXCEEDED"
    assert run(runtime, host, "kv_compare_and_swap", [b"myapp:k", b"v1", b"v3"]) == [
        abi.TAG_OK,
        {"swapped": True, "actual": None},
    ]
    assert run(runtime, host, "kv_compare_and_swap", [b"myapp:k", b"v1", b"v4"]) == [
        abi.TAG_OK,
        {"swapped": False, "actual": b"v3"},
    ]
    assert run(runtime, host, "kv_compare_and_swap", [b"myapp:new", 0, -1, b"n"])[1]["swapped"] is True
    assert run(runtime, host, "kv_compare_and_swap", [b"myapp:new", 0, -1, b"n"])[1] == {
        "swapped": False,
        "actual": b"n",
    }
    assert run(runtime, host, "kv_delete_key", [b"myapp:k"]) == [abi.TAG_OK, True]
    assert run(runtime, host, "kv_delete_key", [b"myapp:k"]) == [abi.TAG_OK, False]
    ops = msgpack.packb([["set", "myapp:b1", b"1"], ["set", "myapp:b2", b"2"], ["delete", "myapp:k2"]])
    assert run(runtime, host, "kv_batch_write", [ops]) == [abi.TAG_OK, 3]
    assert host.kv["myapp:b1"] == b"1" and "myapp:k2" not in host.kv


def test_kv_bounds(runtime: Runtime, host: InMemoryHost) -> None:
    assert run(runtime, host, "kv_get_value", [b"myapp:" + b"k" * 1100])[1] == "KEY_TOO_LARGE"
    assert run(runtime, host, "kv_put_value", [b"myapp:k", b"v" * (1024 * 1024 + 1)])[1] == "VALUE_TOO_LARGE"
    assert run(runtime, host, "kv_get_value", [b"myapp:\xff\xfe"])[1] == "INVALID_ARGUMENT"
    assert run(runtime, host, "kv_batch_write", [b"\xc1"])[1] == "INVALID_ARGUMENT"
    assert (
        run(runtime, host, "kv_batch_write", [msgpack.packb([["frob", "myapp:x"]])])[1] == "INVALID_ARGUMENT"
    )
    assert not host.kv


@pytest.mark.parametrize("key", [b"myapp", b"myap", b"other:k", b"xmyapp:k", b"", b"MYAPP:k"])
def test_prefix_escapes_are_denied(runtime: Runtime, host: InMemoryHost, key: bytes) -> None:
    for fn, args in (("kv_get_value", [key]), ("kv_put_value", [key, b"v"]), ("kv_delete_key", [key]),
                     ("kv_compare_and_swap", [key, 0, -1, b"v"])):
        result = run(runtime, host, fn, args)
        assert result[0] == abi.TAG_ERROR and result[1] in ("KV_PREFIX_DENIED", "INVALID_ARGUMENT"), (
            fn,
            key,
            result,
        )
    assert not host.kv


def test_scan_prefix_broader_than_allowed_is_denied(runtime: Runtime, host: InMemoryHost) -> None:
    host.kv["myapp:secret-of-mine"] = b"1"
    host.kv["other:secret"] = b"2"
    for prefix in (b"", b"my", b"myapp"):
        assert run(runtime, host, "kv_scan_prefix", [prefix, 0])[1] == "KV_PREFIX_DENIED"


def test_batch_mixing_allowed_and_denied_keys_writes_nothing(runtime: Runtime, host: InMemoryHost) -> None:
    ops = msgpack.packb([["set", "myapp:ok", b"1"], ["set", "other:evil", b"2"], ["delete", "myapp:x"]])
    result = run(runtime, host, "kv_batch_write", [ops])
    assert result[1] == "KV_PREFIX_DENIED" and "op 1" in result[2]
    assert host.kv == {}


def test_default_namespace_when_no_prefixes(runtime: Runtime, host: InMemoryHost) -> None:
    assert run(runtime, host, "kv_put_value", [b"__plugin:t:k", b"v"], prefixes=())[0] == abi.TAG_OK
    assert run(runtime, host, "kv_put_value", [b"anything", b"v"], prefixes=())[1] == "KV_PREFIX_DENIED"
    assert host.kv == {"__plugin:t:k": b"v"}


def test_blob_functions(runtime: Runtime, host: InMemoryHost) -> None:
    result = run(runtime, host, "blob_put_data", [b"payload"])
    h = result[1]
    assert result[0] == abi.TAG_OK and len(h) == 64 and host.blobs[h] == b"payload"
    assert run(runtime, host, "blob_exists", [h.encode()]) == [abi.TAG_OK, True]
    assert run(runtime, host, "blob_get_data", [h.encode()]) == [abi.TAG_OK, b"payload"]
    assert run(runtime, host, "blob_get_data", [H]) == [abi.TAG_NOT_FOUND]
    assert run(runtime, host, "blob_exists", [b"not-a-hash"])[1] == "INVALID_ARGUMENT"


def test_cluster_functions(runtime: Runtime, host: InMemoryHost) -> None:
    host.node, host.leader = 2, 3
    assert run(runtime, host, "is_current_leader", []) == [abi.TAG_OK, False]
    assert run(runtime, host, "get_leader_id", []) == [abi.TAG_OK, 3]
    host.leader = None
    assert run(runtime, host, "get_leader_id", []) == [abi.TAG_NOT_FOUND]
    assert int.from_bytes(run(runtime, host, "get_node_id", [], perms=Permissions()), "little") == 2


def test_crypto_functions(runtime: Runtime, host: InMemoryHost) -> None:
    sig = run(runtime, host, "sign_data", [b"message"])[1]
    host.signing_key.verify_key.verify(b"message", sig)
    pk_hex = run(runtime, host, "public_key", [])[1]
    assert pk_hex == bytes(host.signing_key.verify_key).hex()
    assert run(runtime, host, "verify_signature", [pk_hex.encode(), b"message", sig]) == [abi.TAG_OK, True]
    assert run(runtime, host, "verify_signature", [bytes.fromhex(pk_hex), b"tampered", sig]) == [
        abi.TAG_OK,
        False,
    ]
    other = nacl.signing.SigningKey.generate()
    assert run(runtime, host, "verify_signature", [bytes(other.verify_key), b"message", sig]) == [
        abi.TAG_OK,
        False,
    ]
    assert run(runtime, host, "verify_signature", [b"short", b"message", sig])[1] == "INVALID_ARGUMENT"
    r = run(runtime, host, "get_random_bytes", [4096])
    assert r[0] == abi.TAG_OK and len(r[1]) == 4096
    assert run(runtime, host, "get_random_bytes", [4097])[1] == "LIMIT_EXCEEDED"
    assert run(runtime, host, "get_random_bytes", [0])[1] == "LIMIT_EXCEEDED"


def test_timer_functions(runtime: Runtime, host: InMemoryHost) -> None:
    ok = msgpack.packb({"name": "tick", "interval_ms": 1000, "repeat": True})
    assert run(runtime, host, "schedule_timer_on_host", [ok])[0] == abi.TAG_OK
    assert host.timers[("t", "tick")] == (1000, True)
    for bad in (
        {"name": "x", "interval_ms": 999},
        {"name": "x", "interval_ms": 86_400_001},
        {"interval_ms": 5000},
        {"name": "", "interval_ms": 5000},
    ):
        assert run(runtime, host, "schedule_timer_on_host", [msgpack.packb(bad)])[0] == abi.TAG_ERROR
    assert run(runtime, host, "cancel_timer_on_host", [b"never"]) == [abi.TAG_NOT_FOUND]


def test_timer_and_subscription_counts_are_bounded(runtime: Runtime, host: InMemoryHost) -> None:
    body = "".join(
        f'(data (i32.const {2048 + i * 64}) "{_hex(msgpack.packb({"name": f"t{i}", "interval_ms": 1000}))}")'
        for i in range(17)
    )
    calls = "".join(
        f"(drop (call $schedule_timer_on_host (i32.const {2048 + i * 64}) "
        f"(i32.const {len(msgpack.packb({'name': f't{i}', 'interval_ms': 1000}))})))"
        for i in range(16)
    )
    from tests.sandbox.guests import module

    wasm = module(
        body + f"""(func (export "plugin_init") (result i64) {calls} (i64.const 0))
        (func (export "handle_request") (param i32 i32) (result i64)
          (call $schedule_timer_on_host (i32.const {2048 + 16 * 64})
            (i32.const {len(msgpack.packb({'name': 't16', 'interval_ms': 1000}))})))""",
        imports=("schedule_timer_on_host",),
    )
    plugin = runtime.load(wasm, PluginConfig("t", ALL), host)
    plugin.init()
    assert len(host.timers) == 16
    resp = plugin.handle_request({"type": "X"})
    assert resp["type"] == "Error" and resp["code"] == "INVALID_RESPONSE"  # raw tagged error, not a map
    assert len(host.timers) == 16


def _hex(b: bytes) -> str:
    return "".join(f"\\{x:02x}" for x in b)


def test_hook_functions(runtime: Runtime, host: InMemoryHost) -> None:
    assert run(runtime, host, "subscribe_hook_events", [b"hooks.kv.*"])[0] == abi.TAG_OK
    assert host.subscriptions["t"] == ("hooks.kv.*",)
    for bad in (b"hooks.>.x", b"", b"a" * 257, b"hooks.k*"):
        assert run(runtime, host, "subscribe_hook_events", [bad])[0] == abi.TAG_ERROR
    assert run(runtime, host, "unsubscribe_hook_events", [b"hooks.none"]) == [abi.TAG_NOT_FOUND]


def test_logging_and_clocks(runtime: Runtime, host: InMemoryHost) -> None:
    for fn, level in (("log_info_msg", "info"), ("log_debug_msg", "debug"), ("log_warn_msg", "warn")):
        plugin = runtime.load(call_guest(fn, [b"hello \xff"]), PluginConfig("t"), host)
        plugin.init()
        assert plugin.handle_request({"type": "X"}) == {"type": "Result", "r": None}
        assert host.logs[-1] == ("t", level, "hello \ufffd")
    import time

    for fn in ("current_time_ms", "hlc_now_ms"):
        plugin = runtime.load(call_guest(fn, []), PluginConfig("t"), host)
        plugin.init()
        ms = int.from_bytes(plugin.handle_request({"type": "X"})["r"], "little")
        assert abs(ms - time.time() * 1000) < 60_000
