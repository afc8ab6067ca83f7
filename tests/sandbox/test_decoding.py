"""Bounded decoding of what a guest hands over: call output and msgpack host-call arguments
are walked before msgpack-python allocates anything, and refused past the bound."""

from __future__ import annotations

import tracemalloc

import msgpack
import pytest
import wasmtime

from sandbox import InMemoryHost, Permissions, PluginConfig, Runtime, SandboxError, _guestcall, abi, limits
from sandbox.decode import GUEST_BOUND, DecodeRefused, unpack_guest
from tests.sandbox.guests import (
    RESULT_PREFIX,
    alloc_after,
    call_guest,
    decode_result,
    info_export,
    wat_bytes,
)
from tests.sandbox.rss import MIB, call_in_subprocess

NIL_MAP = b"\x81\xc0\xc0"  # {nil: nil}: 3 bytes, a dict of 224 bytes and more
KV = Permissions(kv_read=True, kv_write=True)


def _array(count: int) -> bytes:
    return b"\xdd" + count.to_bytes(4, "big")


def _repeated(header: bytes, item: bytes, count: int, then: str) -> bytes:
    """A module whose handle_request builds `header + item * count` in its memory at run time
    (a data segment that size would make a huge WAT) and hands it on with `then`: "return"
    returns it as the call's output, "batch" passes it to kv_batch_write and answers
    {"type": "Result", "r": <the host's tagged result>}."""
    total = len(header) + len(item) * count
    data = header + item
    if then == "return":
        tail = f"(i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.const {total}))"
    else:
        n = len(RESULT_PREFIX)
        tail = f"""(local.set $r (call $kv_batch_write (local.get $out) (i32.const {total})))
    (local.set $rp (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))))
    (local.set $rl (i32.wrap_i64 (local.get $r)))
    (local.set $out (call $alloc (i32.add (local.get $rl) (i32.const {n}))))
    (memory.copy (local.get $out) (i32.const 16) (i32.const {n}))
    (memory.copy (i32.add (local.get $out) (i32.const {n})) (local.get $rp) (local.get $rl))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $rl) (i32.const {n}))))"""
    alloc, pages = alloc_after(1024 + len(data))  # the buffers it hands out start past the data
    return wasmtime.wat2wasm(f"""(module
  (import "aspen" "kv_batch_write" (func $kv_batch_write (param i32 i32) (result i64)))
  (memory (export "memory") {pages})
{alloc}
  (data (i32.const 16) "{wat_bytes(RESULT_PREFIX)}")
  (data (i32.const 1024) "{wat_bytes(data)}")
{info_export()}
  (func (export "handle_request") (param i32 i32) (result i64)
    (local $out i32) (local $at i32) (local $end i32) (local $r i64) (local $rp i32) (local $rl i32)
    (local.set $out (call $alloc (i32.const {total})))
    (memory.copy (local.get $out) (i32.const 1024) (i32.const {len(header)}))
    (local.set $at (i32.add (local.get $out) (i32.const {len(header)})))
    (local.set $end (i32.add (local.get $out) (i32.const {total})))
    (block $done (loop $fill
      (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
      (memory.copy (local.get $at) (i32.const {1024 + len(header)}) (i32.const {len(item)}))
      (local.set $at (i32.add (local.get $at) (i32.const {len(item)})))
      (br $fill)))
    {tail}))""")


def _returning(data: bytes) -> bytes:
    """A module whose handle_request and plugin_info return `data` (from a data segment)."""
    alloc, pages = alloc_after(4096 + len(data))
    return wasmtime.wat2wasm(f"""(module (memory (export "memory") {pages})
{alloc}
  (data (i32.const 4096) "{wat_bytes(data)}")
  (func (export "plugin_info") (result i64) (i64.const {(4096 << 32) | len(data)}))
  (func (export "handle_request") (param i32 i32) (result i64) (i64.const {(4096 << 32) | len(data)})))""")


def _measured_peak(data: bytes) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        value = abi.unpack(data)
        peak = tracemalloc.get_traced_memory()[1]
        del value
    finally:
        tracemalloc.stop()
    return peak


SHAPES = {
    "negative ints": _array(50_000) + b"\xe0" * 50_000,
    "uint16s": _array(50_000) + b"\xcd\x01\x01" * 50_000,
    "int64s": _array(20_000) + (b"\xd3" + b"\x7f" * 8) * 20_000,
    "floats": _array(20_000) + (b"\xcb" + b"\x3f" * 8) * 20_000,
    "empty lists": _array(50_000) + b"\x90" * 50_000,
    "empty maps": _array(50_000) + b"\x80" * 50_000,
    "one-entry maps": _array(50_000) + NIL_MAP * 50_000,
    "nested maps": b"\x81\xc0" * 31 + b"\xc0",
    "short strs": _array(50_000) + b"\xa2ab" * 50_000,
    "wide strs": _array(20_000) + (b"\xb4" + "\U0001f600".encode() + b"a" * 16) * 20_000,
    "bins": _array(50_000) + b"\xc4\x02ab" * 50_000,
    "distinct str keys": b"\xdf" + (50_000).to_bytes(4, "big") + b"".join(
        b"\xa6" + b"%06d" % i + b"\xc0" for i in range(50_000)),
    "scan result": msgpack.packb([{"key": f"myapp:{i:08d}", "value": b"v" * 12, "version": 1000 + i,
                                   "create_revision": 70_000 + i, "mod_revision": 70_000 + i}
                                  for i in range(10_000)]),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_model_is_an_upper_bound_of_what_decoding_allocates(name: str) -> None:
    data = SHAPES[name]
    peak = _measured_peak(data)
    # Allowed exactly `peak - 1` bytes, the walk must refuse: its model says at least `peak`.
    problem = _guestcall.decode_bound(data, limits.DECODE_DEPTH_MAX, 0, peak - 1, 2**62)
    assert problem is not None and "would decode to over" in problem, (name, peak, problem)


def test_legitimate_payloads_fit_the_bound() -> None:
    # The native ScanResult shape at the scan maximum (10,000 entries), and plain bytes.
    assert unpack_guest(SHAPES["scan result"])[9999]["key"] == "myapp:00009999"
    assert unpack_guest(msgpack.packb({"type": "ReadResult", "value": b"x" * (8 * MIB)}))["value"] == b"x" * (
        8 * MIB
    )


def test_depth_is_bounded() -> None:
    at_limit = b"\x91" * limits.DECODE_DEPTH_MAX + b"\xc0"
    assert unpack_guest(at_limit) is not None
    with pytest.raises(DecodeRefused, match="nests deeper than 32"):
        unpack_guest(b"\x91" + at_limit)


@pytest.mark.parametrize("data", [
    _array(2**31),  # a claim of 2^31 items in 5 bytes: refused before any list is made
    b"\xdf" + (2**31).to_bytes(4, "big") + b"\xc0\xc0",
    b"\xc6\xff\xff\xff\xff" + b"x",
    b"\x92\xc0",  # one item short
    b"\xc0\xc0",  # a second value after the first
    b"\xd4\x01\x00",  # ext types are not in the ABI
    b"\xc1",
])
def test_malformed_msgpack_is_refused_by_the_walk(data: bytes) -> None:
    with pytest.raises(DecodeRefused):
        unpack_guest(data)


def test_huge_output_is_refused_before_decoding() -> None:
    # 8 MiB of output peaked at 646 MiB decoding it: no permission needed, any export.
    count = (8 * MIB) // len(NIL_MAP)
    wasm = _repeated(_array(count), NIL_MAP, count, "return")
    response, grown = call_in_subprocess(wasm, {"name": "bomb", "memory_limit_bytes": 64 * MIB})
    assert response["code"] == "INVALID_RESPONSE", response
    assert "would decode to over" in response["message"]
    assert grown < 64 * MIB + 64 * MIB, grown


def test_plugin_info_output_is_bounded(runtime: Runtime, host: InMemoryHost) -> None:
    # plugin_info runs at install, before any permission or manifest check.
    count = MIB // len(NIL_MAP)
    info = b"\x82\xa4name\xa1t\xa1x" + _array(count) + NIL_MAP * count
    plugin = runtime.load(_returning(info), PluginConfig("info-bomb"), host)
    with pytest.raises(SandboxError) as err:
        plugin.info()
    assert err.value.code == "INVALID_RESPONSE" and "would decode to over" in err.value.message
    assert plugin.stats.traps == 0  # a guest error, not a trap


def test_output_at_the_bound_still_decodes(runtime: Runtime, host: InMemoryHost) -> None:
    response = msgpack.packb({"type": "ScanResult", "entries": msgpack.unpackb(SHAPES["scan result"])})
    plugin = runtime.load(_returning(response), PluginConfig("scan"), host)
    plugin.init()
    out = plugin.handle_request({"type": "ScanKeys"})
    assert out["type"] == "ScanResult" and len(out["entries"]) == 10_000


def test_huge_batch_is_refused_before_decoding() -> None:
    count = (8 * MIB) // len(NIL_MAP)
    wasm = _repeated(_array(count), NIL_MAP, count, "batch")
    config = {"name": "batch", "memory_limit_bytes": 64 * MIB, "permissions": {"kv_write": True},
              "kv_prefixes": ["myapp:"]}
    response, grown = call_in_subprocess(wasm, config)
    assert response["type"] == "Result", response  # an error value for the guest, not a trap
    assert grown < 64 * MIB + 64 * MIB, grown


def test_huge_batch_gets_an_invalid_argument_naming_the_bound(runtime: Runtime, host: InMemoryHost) -> None:
    count = MIB // len(NIL_MAP)
    plugin = runtime.load(_repeated(_array(count), NIL_MAP, count, "batch"),
                          PluginConfig("batch", KV, kv_prefixes=("myapp:",)), host)
    plugin.init()
    tag, code, message = decode_result(plugin.handle_request({"type": "X"}))
    assert (tag, code) == (abi.TAG_ERROR, "INVALID_ARGUMENT") and "would decode to over" in message
    assert not host.kv


def test_a_batch_of_the_most_ops_still_applies(runtime: Runtime, host: InMemoryHost) -> None:
    ops = msgpack.packb([["set", f"myapp:{i:04d}", b"v" * 100] for i in range(limits.BATCH_OPS_MAX)])
    plugin = runtime.load(
        call_guest("kv_batch_write", [ops]), PluginConfig("batch", KV, kv_prefixes=("myapp:",)), host
    )
    plugin.init()
    assert decode_result(plugin.handle_request({"type": "X"})) == [abi.TAG_OK, limits.BATCH_OPS_MAX]
    assert len(host.kv) == limits.BATCH_OPS_MAX


def test_the_bound_is_what_the_limits_say() -> None:
    assert GUEST_BOUND.as_tuple() == (limits.DECODE_DEPTH_MAX, limits.DECODE_BYTES_PER_BYTE,
                                      limits.DECODE_SLACK_BYTES, limits.DECODE_MAX_BYTES)



def _batch(runtime: Runtime, host: InMemoryHost, wasm: bytes) -> list:
    plugin = runtime.load(wasm, PluginConfig("batch", KV, kv_prefixes=("myapp:",)), host)
    plugin.init()
    return decode_result(plugin.handle_request({"type": "X"}))


def test_a_batch_over_its_size_is_refused_unread(runtime: Runtime, host: InMemoryHost) -> None:
    result = _batch(runtime, host, call_guest("kv_batch_write", [0x100, limits.BATCH_MAX_BYTES + 1]))
    assert result[:2] == [abi.TAG_ERROR, "LIMIT_EXCEEDED"]


def test_a_batch_of_the_most_bytes_still_applies(runtime: Runtime, host: InMemoryHost) -> None:
    # 64 ops of a value near VALUE_MAX_BYTES: within 64 bytes of BATCH_MAX_BYTES, and its
    # decoded size (about its length) within the bound's 128 MiB.
    ops = 64
    value_bytes = (limits.BATCH_MAX_BYTES - 3) // ops - 18
    op = b"\x93\xa3set\xa7myapp:k\xc6" + value_bytes.to_bytes(4, "big") + b"v" * value_bytes
    total = 3 + ops * len(op)
    assert (
        limits.BATCH_MAX_BYTES - 64 < total <= limits.BATCH_MAX_BYTES
        and value_bytes <= limits.VALUE_MAX_BYTES
    )
    result = _batch(runtime, host, _repeated(b"\xdc" + ops.to_bytes(2, "big"), op, ops, "batch"))
    assert result == [abi.TAG_OK, ops]
    assert len(host.kv["myapp:k"]) == value_bytes
