"""Sandbox benchmark: the cost of calling into a plugin, and of a plugin calling the host.

    python benchmarks/sandbox_bench.py [--calls 50000] [--no-readme]

Rows: a no-op guest call (raw export call, the floor); an echo of 100 bytes through
handle_request (msgpack in, msgpack out, input and output buffers in guest memory); a host
function round trip (a guest calling kv_get_value 100 times in one handle_request, minus the
same loop without the call, over 100); and the
same echo through Extism's Python host in the same run. Guests are WAT compiled by
wasmtime.wat2wasm. A program that reports, never a timed test.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import write_section
from sandbox import InMemoryHost, Permissions, PluginConfig, Runtime
from sandbox.raw import func_address

ALLOC = """
  (global $bump (mut i32) (i32.const 65536))
  (func $alloc (export "aspen_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump
      (i32.add (global.get $bump) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (if (i32.gt_u (global.get $bump) (i32.const 1048576)) (then (global.set $bump (i32.const 65536))))
    (local.get $p))
"""
INFO = '(data (i32.const 512) "\\82\\a4name\\a5bench\\a7version\\a51.0.0") ' \
       '(func (export "plugin_info") (result i64) (i64.const 2199023255572))'  # (512 << 32) | 20

# handle_request answers with its input: the request map itself is a valid response map.
ECHO = f"""(module (memory (export "memory") 20) {ALLOC} {INFO}
  (func (export "noop") (result i64) (i64.const 0))
  (func (export "handle_request") (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32)) (i64.extend_i32_u (local.get $n)))))"""

# handle_request calls kv_get_value on a fixed key HOST_CALLS times, then echoes its input;
# LOOPED runs the same loop without the call. Their difference over HOST_CALLS is one host
# function round trip (guest -> host -> guest allocator -> guest), without the call-in costs
# that a single call would have to subtract (and whose noise would swamp it).
HOST_CALLS = 100


def _looped(imports: str, body: str) -> str:
    return f"""(module {imports}
  (memory (export "memory") 20) {ALLOC} {INFO}
  (data (i32.const 1024) "bench:k")
  (func (export "handle_request") (param $p i32) (param $n i32) (result i64)
    (local $i i32)
    (block $done (loop $calls
      (br_if $done (i32.ge_u (local.get $i) (i32.const {HOST_CALLS})))
      {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $calls)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32)) (i64.extend_i32_u (local.get $n)))))"""


HOSTCALL = _looped('(import "aspen" "kv_get_value" (func $get (param i32 i32) (result i64)))',
                   "(drop (call $get (i32.const 1024) (i32.const 7)))")
LOOPED = _looped("", "(nop)")

# The same echo for Extism's kernel ABI.
EXTISM_ECHO = """(module
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 1)
  (func (export "echo") (result i32)
    (local $n i64) (local $off i64) (local $i i64)
    (local.set $n (call $input_length))
    (local.set $off (call $alloc (local.get $n)))
    (block $done (loop $words
      (br_if $done (i64.gt_u (i64.add (local.get $i) (i64.const 8)) (local.get $n)))
      (call $store_u64 (i64.add (local.get $off) (local.get $i)) (call $input_load_u64 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 8)))
      (br $words)))
    (block $done2 (loop $bytes
      (br_if $done2 (i64.ge_u (local.get $i) (local.get $n)))
      (call $store_u8 (i64.add (local.get $off) (local.get $i)) (call $input_load_u8 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $bytes)))
    (call $output_set (local.get $off) (local.get $n))
    (i32.const 0)))"""


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    return interleaved_us({"fn": fn}, calls)["fn"]


def interleaved_us(fns: dict[str, Callable[[], object]], calls: int, rounds: int = 5) -> dict[str, float]:
    """Best per-call time of each function over `rounds` rounds that take turns, so rows that
    are subtracted from each other (host call = with host call - echo) are measured under the
    same load: the machine is shared, and the best of separate runs can land minutes apart."""
    for fn in fns.values():
        for _ in range(min(1000, calls)):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / calls * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=50_000)
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()

    runtime = Runtime()
    host = InMemoryHost()
    host.kv["bench:k"] = b"v" * 100
    echo = runtime.load(wasmtime.wat2wasm(ECHO), PluginConfig("bench"), host)
    echo.init()
    hostcall = runtime.load(wasmtime.wat2wasm(HOSTCALL),
                            PluginConfig("bench", Permissions(kv_read=True), kv_prefixes=("bench:",)), host)
    hostcall.init()
    looped = runtime.load(wasmtime.wat2wasm(LOOPED), PluginConfig("bench"), host)
    looped.init()
    request = {"type": "Echo", "data": b"x" * 100}
    assert echo.handle_request(request) == request
    assert hostcall.handle_request(request) == request
    assert looped.handle_request(request) == request

    # The floor: one raw export call with the per-call fuel and deadline set, as every call does.
    inst = echo._inst
    assert inst is not None
    noop_export = inst.instance.exports(inst.store)["noop"]
    assert isinstance(noop_export, wasmtime.Func)
    site, noop_address = inst.site, func_address(noop_export)

    def noop() -> None:
        site.call(noop_address, None, 500_000_000, 3000)

    rows: dict[str, tuple[float, float | None]] = {}
    best = interleaved_us({"noop": noop, "echo": lambda: echo.handle_request(request)}, args.calls)
    rows["no-op guest call"] = (best["noop"], 4.0)
    rows["echo 100 B via handle_request"] = (best["echo"], 10.0)
    host_best = interleaved_us({
        "looped": lambda: looped.handle_request(request),
        "with_host": lambda: hostcall.handle_request(request),
    }, max(100, args.calls // HOST_CALLS * 2))
    rows["host function round trip (kv_get_value, 100 B value)"] = (
        (host_best["with_host"] - host_best["looped"]) / HOST_CALLS, 5.0)

    extism_us: float | None = None
    try:
        import extism

        plugin = extism.Plugin(bytes(wasmtime.wat2wasm(EXTISM_ECHO)), wasi=False)
        payload = b"x" * 100
        assert bytes(plugin.call("echo", payload, parse=bytes)) == payload
        extism_us = per_call_us(lambda: plugin.call("echo", payload, parse=bytes), max(1000, args.calls // 5))
        rows["echo 100 B via Extism (same run)"] = (extism_us, None)
    except ImportError:
        print("extism not installed: pip install extism (the comparison row is skipped)")
    runtime.close()

    lines = ["| call | us per call | target | vs Extism echo |", "|---|---|---|---|"]
    for name, (us, target) in rows.items():
        ratio = f"{us / extism_us:.2f}x" if extism_us and "Extism" not in name else "-"
        lines.append(f"| {name} | {us:.2f} | {f'<= {target:g}' if target else '-'} | {ratio} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        from importlib.metadata import version

        note = (
            f"wasmtime {version('wasmtime')}, one C call per plugin call (sandbox/_guestcall.c), fuel and "
            "epoch deadline "
            f"set on every call; best of 5 interleaved rounds of {args.calls} calls (host round trip: a "
            f"guest making {HOST_CALLS} kv_get_value calls per request, minus the same guest's loop "
            f"without them, over {HOST_CALLS}); measured {time.strftime('%Y-%m-%d')}."
        )
        write_section("sandbox_bench", "Sandbox: calls into and out of a plugin", note + "\n\n" + text)


if __name__ == "__main__":
    main()
