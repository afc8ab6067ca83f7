"""Plugin dispatch benchmark: a request served by a WASM plugin against the native handler.

    python benchmarks/plugin_bench.py [--seconds 1] [--rounds 5] [--no-readme]

On a 3-node cluster on loopback, over the wire, at 1 and 64 requests in flight:
- `Ping` served natively against `PluginPing` served by a WAT plugin that answers at once;
- native `ReadKey` (linearizable) against a plugin's `ReadKey` for its own namespace, where the
  plugin calls kv_get_value (a linearizable read through the host) and answers.
Target (issue 4): a plugin-served request costs at most 20% more than the native one at 64 in
flight. The cases take turns in `--rounds` rounds of `--seconds` each and each keeps its best
round: the machine is shared, and a native run and a plugin run minutes apart would compare
the load of two moments more than the two paths. The spread of the cost measured within each
round (plugin against native, seconds apart) is printed too. A program that reports, never a
timed test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aspen.client import AsyncClient
from benchmarks.kv_bench import throughput
from benchmarks.report import write_section
from deploy.launcher import LocalCluster
from tests.plugins.wat import manifest, plugin

READ_RESPONSE = {"type": "ReadResult", "was_found": True, "value": b"v" * 100}


def plugins() -> list[tuple[bytes, dict[str, Any]]]:
    pinger = plugin("bench-ping", "1.0.0", {"type": "Pong", "node_id": 0})
    reader = plugin(
        "bench-read", "1.0.0", READ_RESPONSE,
        imports=("kv_get_value",), strings=(b"bench:key",),
        handle="(drop (call $kv_get_value $s0))",
    )
    return [
        (pinger, manifest("bench-ping", "1.0.0", ["PluginPing"])),
        (reader, manifest("bench-read", "1.0.0", ["ReadKey"], kv_prefixes=["bench:"], permissions={"kv_read": True})),
    ]


async def run(seconds: float, rounds: int) -> tuple[dict[str, dict[int, float]], dict[str, list[float]]]:
    rows: dict[str, dict[int, float]] = {}
    spread: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="aspen-plugin-bench-") as tmp:
        cluster = LocalCluster(Path(tmp) / "c")
        cluster.up(3)
        try:
            client = AsyncClient(cluster.endpoints, cluster.cookie, timeout_s=30)
            for wasm, man in plugins():
                await client.request("PluginInstall", manifest=man, wasm=wasm)
            await client.put("native:key", b"v" * 100)
            await client.put("bench:key", b"v" * 100)
            assert (await client.request("PluginPing"))["type"] == "Pong"
            assert (await client.get("bench:key"))["value"] == b"v" * 100
            cases = {
                "Ping (native)": lambda i: client.request("Ping"),
                "Ping (plugin)": lambda i: client.request("PluginPing"),
                "ReadKey (native)": lambda i: client.get("native:key"),
                "ReadKey (plugin, kv_get_value)": lambda i: client.get("bench:key"),
            }
            rows = {name: {1: 0.0, 64: 0.0} for name in cases}
            spread = {name: [] for name in cases if "(plugin" in name}
            for _ in range(rounds):
                this_round: dict[str, float] = {}
                for name, op in cases.items():
                    for n in (1, 64):
                        rate = await throughput(op, n, seconds)
                        rows[name][n] = max(rows[name][n], rate)
                        if n == 64:
                            this_round[name] = rate
                for name in spread:
                    spread[name].append(this_round[_native_of(name)] / this_round[name] - 1)
            await client.close()
        finally:
            cluster.down()
    return rows, spread


def _native_of(name: str) -> str:
    return name.split(" (")[0] + " (native)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="one measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; each case keeps its best")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    rows, spread = uvloop.run(run(args.seconds, args.rounds))
    lines = ["| request | req/s @1 | req/s @64 | plugin cost vs native @64 | within rounds: median (range) |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        extra = within = "-"
        if name in spread:
            extra = f"{rows[_native_of(name)][64] / r[64] - 1:+.0%} per request"
            costs = spread[name]
            within = f"{statistics.median(costs):+.0%} ({min(costs):+.0%} to {max(costs):+.0%})"
        lines.append(f"| {name} | {r[1]:,.0f} | {r[64]:,.0f} | {extra} | {within} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        note = (f"3 nodes on 127.0.0.1, Python client, best of {args.rounds} interleaved rounds of {args.seconds:g} s, "
                f"measured {time.strftime('%Y-%m-%d')}. "
                "Cost per request = native throughput / plugin throughput - 1, of the best rounds (target: at most "
                "+20% at 64 in flight); the last column is the same cost measured within each round."
                "\n\nWhere the cost goes: a plugin request adds msgpack into and out of the guest, one C call that "
                "makes the three guest entries (aspen_alloc, handle_request, aspen_free; sandbox/_guestcall.c) and "
                "the hand-off to the plugin's worker thread, which answers its whole batch in one loop callback "
                "with no task or future per request; guest code keeps the GIL for its first millisecond, so a "
                "short call costs no GIL hand-off. Before these changes (six ctypes calls and three GIL hand-offs "
                "a plugin call, and a future and a task wake-up per request) the cost was +62% (Ping) and +37% "
                "(ReadKey).")
        write_section("plugin_bench", "Plugins: plugin-served requests against native ones", note + "\n\n" + text)


if __name__ == "__main__":
    main()
