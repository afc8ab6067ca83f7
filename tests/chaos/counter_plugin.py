"""The chaos counter: a WAT plugin that increments one key with a kv_compare_and_swap retry loop.

`ChaosIncrement {}` -> `ChaosIncremented {value: bin}` (the new count, 8 bytes little-endian,
exactly what the key holds). The count lives at COUNTER_KEY. Errors:
- COUNTER_CONTENDED: every CAS attempt (at most CAS_ATTEMPTS_MAX) found another value; nothing
  was written, so the increment definitely did not happen;
- COUNTER_HOST_ERROR: a host call failed (a leader died mid-CAS, a timeout): the increment may
  or may not have happened.

Hand-written WebAssembly text because the ABI is small and the guest's whole behaviour then
fits on one page (docs/HOST_ABI.md): host results are tagged msgpack arrays, parsed here by
their fixed byte layout.
"""

from __future__ import annotations

from typing import Any

import msgpack
import wasmtime

from tests.plugins.wat import _import
from tests.sandbox.guests import ALLOC, wat_bytes

NAME = "chaoscounter"
VERSION = "1.0.0"
REQUEST_TYPE = "ChaosIncrement"
COUNTER_KEY = "chaos/counter"
CAS_ATTEMPTS_MAX = 200
CONTENDED = "COUNTER_CONTENDED"
HOST_ERROR = "COUNTER_HOST_ERROR"

_INFO_OFF, _KEY_OFF, _RESP_OFF, _CONTENDED_OFF, _HOST_ERR_OFF, _SCRATCH_OFF = 512, 256, 1024, 2048, 2304, 3072


def _layout() -> dict[str, Any]:
    info = msgpack.packb({"name": NAME, "version": VERSION})
    resp = msgpack.packb({"type": "ChaosIncremented", "value": b"\0" * 8})
    contended = msgpack.packb(
        {
            "type": "Error",
            "code": CONTENDED,
            "message": f"{CAS_ATTEMPTS_MAX} CAS attempts found another value; nothing written",
        }
    )
    host_err = msgpack.packb({"type": "Error", "code": HOST_ERROR,
                              "message": "a host call failed; the increment may or may not have happened"})
    assert resp.endswith(b"\xc4\x08" + b"\0" * 8)
    return {"info": info, "resp": resp, "contended": contended, "host_err": host_err,
            "value_off": _RESP_OFF + len(resp) - 8}


def wasm() -> bytes:
    lay = _layout()
    key = COUNTER_KEY.encode()
    ret = lambda off, data: f"(i64.const {(off << 32) | len(data)})"  # noqa: E731
    # Tagged results: get -> [0, bin8] = 92 00 c4 08 <8> or [1] = 91 01;
    # cas -> [0, {"swapped": bool, "actual": bin8|nil}] = 92 00 82 a7 "swapped" <c3|c2> a6 "actual" <c4 08
    # <8>|c0>.
    text = f"""(module
{_import("kv_get_value")}{_import("kv_compare_and_swap")}  (memory (export "memory") 4)
{ALLOC}
  (data (i32.const {_INFO_OFF}) "{wat_bytes(lay["info"])}")
  (data (i32.const {_KEY_OFF}) "{wat_bytes(key)}")
  (data (i32.const {_RESP_OFF}) "{wat_bytes(lay["resp"])}")
  (data (i32.const {_CONTENDED_OFF}) "{wat_bytes(lay["contended"])}")
  (data (i32.const {_HOST_ERR_OFF}) "{wat_bytes(lay["host_err"])}")
  (func (export "plugin_info") (result i64) {ret(_INFO_OFF, lay["info"])})
  (func (export "handle_request") (param $p i32) (param $n i32) (result i64)
    (local $r i64) (local $ptr i32) (local $old i64) (local $found i32) (local $tries i32)
    (local.set $r (call $kv_get_value (i32.const {_KEY_OFF}) (i32.const {len(key)})))
    (local.set $ptr (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))))
    (if (i32.and (i32.eq (i32.load16_u (local.get $ptr)) (i32.const 0x0092))
                 (i32.eq (i32.load16_u (i32.add (local.get $ptr) (i32.const 2))) (i32.const 0x08c4)))
      (then (local.set $old (i64.load (i32.add (local.get $ptr) (i32.const 4))))
            (local.set $found (i32.const 1)))
      (else (if (i32.ne (i32.load16_u (local.get $ptr)) (i32.const 0x0191))
        (then (return {ret(_HOST_ERR_OFF, lay["host_err"])})))))
    (block $gave_up
      (loop $retry
        (br_if $gave_up (i32.ge_u (local.get $tries) (i32.const {CAS_ATTEMPTS_MAX})))
        (local.set $tries (i32.add (local.get $tries) (i32.const 1)))
        (i64.store (i32.const {_SCRATCH_OFF}) (local.get $old))
        (i64.store (i32.const {_SCRATCH_OFF + 8}) (i64.add (local.get $old) (i64.const 1)))
        (local.set $r (call $kv_compare_and_swap (i32.const {_KEY_OFF}) (i32.const {len(key)})
          (i32.const {_SCRATCH_OFF}) (select (i32.const 8) (i32.const -1) (local.get $found))
          (i32.const {_SCRATCH_OFF + 8}) (i32.const 8)))
        (local.set $ptr (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))))
        (if (i32.ne (i32.load16_u (local.get $ptr)) (i32.const 0x0092))
          (then (return {ret(_HOST_ERR_OFF, lay["host_err"])})))
        (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (i32.const 11))) (i32.const 0xc3))
          (then
            (i64.store (i32.const {lay["value_off"]}) (i64.add (local.get $old) (i64.const 1)))
            (return {ret(_RESP_OFF, lay["resp"])})))
        ;; Not swapped: start again from the value the store reported.
        (if (i32.eq (i32.load16_u (i32.add (local.get $ptr) (i32.const 19))) (i32.const 0x08c4))
          (then (local.set $old (i64.load (i32.add (local.get $ptr) (i32.const 21))))
                (local.set $found (i32.const 1)))
          (else (local.set $old (i64.const 0)) (local.set $found (i32.const 0))))
        (br $retry)))
    {ret(_CONTENDED_OFF, lay["contended"])})
)"""
    return wasmtime.wat2wasm(text)


def manifest() -> dict[str, Any]:
    return {"name": NAME, "version": VERSION, "handles": [REQUEST_TYPE],
            "permissions": {"kv_read": True, "kv_write": True}, "kv_prefixes": [COUNTER_KEY]}


def install(client: Any) -> dict[str, Any]:
    """Install through any node (the registry entry goes through the log)."""
    return client.request("PluginInstall", manifest=manifest(), wasm=wasm())
