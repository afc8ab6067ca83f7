"""WAT conformance guests, generated per test so each calls exactly one host function.

`call_guest(fn, args)` builds a module whose handle_request calls host function `fn` with
`args` (bytes become (ptr, len) pairs from data segments, ints become i32 constants) and
answers {"type": "Result", "r": <the host's tagged result, embedded as msgpack>}; scalar
host results come back as 8 little-endian bytes, void ones as nil.
"""

from __future__ import annotations

import msgpack
import wasmtime

from sandbox import abi

RESULT_PREFIX = b"\x82\xa4type\xa6Result\xa1r"
PREFIX_OFF = 16
ARGS_OFF = 1024
INFO = msgpack.packb({"name": "t", "version": "1.0.0"})

ALLOC_TEMPLATE = """
  (global $bump (mut i32) (i32.const BUMP_START))
  (func $alloc (export "aspen_alloc") (param $n i32) (result i32)
    (local $p i32) (local $need i32)
    (local.set $p (global.get $bump))
    (global.set $bump
      (i32.add (global.get $bump) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.set $need (i32.sub (global.get $bump) (i32.mul (memory.size) (i32.const 65536))))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (i32.add (i32.div_u (local.get $need) (i32.const 65536)) (i32.const 1)))
                        (i32.const -1))
        (then unreachable))))
    (local.get $p))
"""
ALLOC = ALLOC_TEMPLATE.replace("BUMP_START", "65536")


def alloc_after(data_end: int) -> tuple[str, int]:
    """The allocator starting past the data segments, and the pages the module needs."""
    start = (data_end // 65536 + 1) * 65536
    return ALLOC_TEMPLATE.replace("BUMP_START", str(start)), start // 65536 + 1


def wat_bytes(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def _import(name: str) -> str:
    params, results = abi.IMPORTS[name]
    p = " ".join(params)
    r = f" (result {' '.join(results)})" if results else ""
    return f'  (import "aspen" "{name}" (func ${name} (param {p}){r}))\n' if params else \
        f'  (import "aspen" "{name}" (func ${name}{r}))\n'


def info_export(info: bytes = INFO, off: int = 512) -> str:
    return (f'  (data (i32.const {off}) "{wat_bytes(info)}")\n'
            f'  (func (export "plugin_info") (result i64) (i64.const {(off << 32) | len(info)}))\n')


def embed_result(call: str) -> str:
    """WAT that runs `call` (a host function returning a guest buffer, i64 ptr << 32 | len) and
    answers {"type": "Result", "r": <that buffer>} (needs locals $r i64, $rp $rl $out i32, and
    RESULT_PREFIX at PREFIX_OFF)."""
    n = len(RESULT_PREFIX)
    return f"""(local.set $r {call})
    (local.set $rp (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))))
    (local.set $rl (i32.wrap_i64 (local.get $r)))
    (local.set $out (call $alloc (i32.add (local.get $rl) (i32.const {n}))))
    (memory.copy (local.get $out) (i32.const {PREFIX_OFF}) (i32.const {n}))
    (memory.copy (i32.add (local.get $out) (i32.const {n})) (local.get $rp) (local.get $rl))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $rl) (i32.const {n}))))"""


def call_guest(fn: str, args: list[bytes | int], extra: str = "") -> bytes:
    datas, consts, off = [], [], ARGS_OFF
    for a in args:
        if isinstance(a, bytes):
            datas.append(f'  (data (i32.const {off}) "{wat_bytes(a)}")\n')
            consts.append(f"(i32.const {off}) (i32.const {len(a)})")
            off += len(a) + 8
        else:
            consts.append(f"(i32.const {a})")
    results = abi.IMPORTS[fn][1]
    call = f"(call ${fn} {' '.join(consts)})"
    n = len(RESULT_PREFIX)
    if not results:
        body = f"""{call}
    (local.set $out (call $alloc (i32.const {n + 1})))
    (memory.copy (local.get $out) (i32.const {PREFIX_OFF}) (i32.const {n}))
    (i32.store8 (i32.add (local.get $out) (i32.const {n})) (i32.const 0xc0))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.const {n + 1}))"""
    elif fn in ("get_node_id", "current_time_ms", "hlc_now_ms"):
        body = f"""(local.set $r {call})
    (local.set $out (call $alloc (i32.const {n + 10})))
    (memory.copy (local.get $out) (i32.const {PREFIX_OFF}) (i32.const {n}))
    (i32.store16 (i32.add (local.get $out) (i32.const {n})) (i32.const 0x08c4))
    (i64.store (i32.add (local.get $out) (i32.const {n + 2})) (local.get $r))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.const {n + 10}))"""
    else:
        body = embed_result(call)
    alloc, pages = alloc_after(off)
    wat = f"""(module
{_import(fn)}  (memory (export "memory") {pages})
{alloc}
  (data (i32.const {PREFIX_OFF}) "{wat_bytes(RESULT_PREFIX)}")
{''.join(datas)}{info_export()}
  (func (export "handle_request") (param i32 i32) (result i64)
    (local $r i64) (local $rp i32) (local $rl i32) (local $out i32)
    {body})
{extra})"""
    return wasmtime.wat2wasm(wat)


def module(body: str, imports: tuple[str, ...] = ()) -> bytes:
    """A module from raw export bodies, with memory, the allocator and plugin_info."""
    return wasmtime.wat2wasm(f"""(module
{''.join(_import(i) for i in imports)}  (memory (export "memory") 2)
{ALLOC}
{info_export()}
{body})""")


def decode_result(response: dict) -> list:
    """The host's tagged result from a call_guest response."""
    assert response["type"] == "Result", response
    return response["r"]


INT_PREFIX = b"\x82\xa4type\xa3Int\xa1n"
INT_PREFIX_OFF = 128


def int_response(expr: str) -> str:
    """WAT that answers {"type": "Int", "n": <the i32 `expr` computes>} (a module() body needs
    `int_prefix_data()` among its exports)."""
    n = len(INT_PREFIX)
    stores = "".join(
        f"(i32.store8 (i32.add (local.get $out) (i32.const {n + 1 + i})) (i32.shr_u (local.get $v) "
        f"(i32.const {24 - 8 * i})))"
        for i in range(4)
    )
    return f"""(local.set $v {expr})
    (local.set $out (call $alloc (i32.const {n + 5})))
    (memory.copy (local.get $out) (i32.const {INT_PREFIX_OFF}) (i32.const {n}))
    (i32.store8 (i32.add (local.get $out) (i32.const {n})) (i32.const 0xd2))
    {stores}
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.const {n + 5}))"""


def int_prefix_data() -> str:
    return f'  (data (i32.const {INT_PREFIX_OFF}) "{wat_bytes(INT_PREFIX)}")\n'
