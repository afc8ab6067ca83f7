"""Plugin dispatch benchmark: a request served by a WASM plugin against the native handler.

    python benchmarks/plugin_bench.py [--seconds 1] [--rounds 8] [--no-readme]

On a 3-node cluster on loopback, over the wire, at 1 and 64 requests in flight:
- `Ping` served natively against `PluginPing` served by a WAT plugin that answers at once;
- native `ReadKey` (linearizable) against a plugin's `ReadKey` for its own namespace, where the
  plugin calls kv_get_value (a linearizable read through the host) and answers.
Target (issue 4): a plugin-served request costs at most 20% more than the native one at 64 in
flight. In each of `--rounds` rounds the native and the plugin case run back to back for
`--seconds` each, taking turns at going first: the machine is shared, and runs minutes apart
would compare the load of two moments more than the two paths. The cost is the median of these
paired rounds; each case's best round and the nodes' CPU time per request are printed too.
A program that reports, never a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aspen.client import AsyncClient
from benchmarks.kv_bench import Errors, throughput
from benchmarks.report import write_section
from deploy.launcher import LocalCluster
from tests.plugins.wat import manifest, plugin

WHERE_THE_COST_GOES = (
    "Where the cost goes: a plugin request adds msgpack into and out of the guest, one C call that makes "
    "the three guest entries (aspen_alloc, handle_request, aspen_free; sandbox/_guestcall.c), host "
    "functions through a C trampoline, and the hand-off to the plugin's worker thread, which answers its "
    "whole batch in one loop callback. The guest entries themselves are the small part (a no-op call is "
    "well under a microsecond, see the sandbox table); the Python around them (msgpack in and out, stats, "
    "the worker's "
    "queue) and the hand-off between the loop's and the worker's threads are the rest; "
    "benchmarks/dispatch_bench.py splits the two, and shows the hand-off costing about twice as much with "
    "the threads on two CPUs as on one. Before the C call path (six ctypes calls and three GIL hand-offs a "
    "plugin "
    "call, a future and a task wake-up per request) the cost was +62% (Ping) and +37% (ReadKey)."
)
READ_RESPONSE = {"type": "ReadResult", "was_found": True, "value": b"v" * 100}


def cpu_s(pids: list[int]) -> float:
    """CPU time the processes have run, all threads (the kernel's schedstat, in ns)."""
    total_ns = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total_ns += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                pass  # a thread that ended meanwhile
    return total_ns / 1e9


def plugins() -> list[tuple[bytes, dict[str, Any]]]:
    pinger = plugin("bench-ping", "1.0.0", {"type": "Pong", "node_id": 0})
    reader = plugin(
        "bench-read", "1.0.0", READ_RESPONSE,
        imports=("kv_get_value",), strings=(b"bench:key",),
        handle="(drop (call $kv_get_value $s0))",
    )
    return [
        (pinger, manifest("bench-ping", "1.0.0", ["PluginPing"])),
        (
            reader,
            manifest(
                "bench-read", "1.0.0", ["ReadKey"], kv_prefixes=["bench:"], permissions={"kv_read": True}
            ),
        ),
    ]


@dataclass
class Case:
    best: dict[int, float] = field(default_factory=lambda: {1: 0.0, 64: 0.0})  # req/s by requests in flight
    cpu_us: list[float] = field(default_factory=list)  # the nodes' CPU per request at 64 in flight, per round
    costs: list[float] = field(default_factory=list)  # plugin cases: against native, paired within a round


async def run(seconds: float, rounds: int) -> dict[str, Case]:
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
            ops = {
                "Ping (native)": lambda i: client.request("Ping"),
                "Ping (plugin)": lambda i: client.request("PluginPing"),
                "ReadKey (native)": lambda i: client.get("native:key"),
                "ReadKey (plugin, kv_get_value)": lambda i: client.get("bench:key"),
            }
            cases = {name: Case() for name in ops}
            pids = [spec.pid for spec in cluster.nodes.values() if spec.pid]

            errors = Errors()  # counted, not raised: a failed request is reported below

            async def measure(name: str, n: int) -> float:
                case = cases[name]
                used_s, started = cpu_s(pids), time.perf_counter()
                rate = await throughput(ops[name], n, seconds, errors)
                used_s, elapsed_s = cpu_s(pids) - used_s, time.perf_counter() - started
                case.best[n] = max(case.best[n], rate)
                if n == 64:
                    case.cpu_us.append(used_s / (rate * elapsed_s) * 1e6)
                return rate

            for r in range(rounds):
                for plugin_case in (name for name in ops if "(plugin" in name):
                    # Native and plugin back to back, taking turns at going first: each pair
                    # sees the same moment of a shared machine, and drift cancels out.
                    pair = [_native_of(plugin_case), plugin_case]
                    rates = {name: await measure(name, 64) for name in (pair if r % 2 == 0 else pair[::-1])}
                    cases[plugin_case].costs.append(rates[pair[0]] / rates[pair[1]] - 1)
                for name in ops:
                    await measure(name, 1)
            await client.close()
            if errors.count:
                print(f"failed requests: {errors.count} (first: {errors.first})", flush=True)
        finally:
            cluster.down()
    return cases


def _native_of(name: str) -> str:
    return name.split(" (")[0] + " (native)"


def table(cases: dict[str, Case]) -> str:
    lines = [
        "| request | req/s @1 | req/s @64 | cost vs native @64: paired, median (range) | of the best rounds "
        "| nodes' CPU us/request @64 (median) | CPU cost vs native |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, case in cases.items():
        paired = best = cpu_cost = "-"
        cpu = statistics.median(case.cpu_us)
        if case.costs:
            native = cases[_native_of(name)]
            paired = (
                f"{statistics.median(case.costs):+.0%} ({min(case.costs):+.0%} to {max(case.costs):+.0%})"
            )
            best = f"{native.best[64] / case.best[64] - 1:+.0%}"
            cpu_cost = f"{cpu / statistics.median(native.cpu_us) - 1:+.0%}"
        lines.append(f"| {name} | {case.best[1]:,.0f} | {case.best[64]:,.0f} | {paired} | {best} "
                     f"| {cpu:.1f} | {cpu_cost} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="one measurement")
    ap.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    text = table(uvloop.run(run(args.seconds, args.rounds)))
    print(text)
    if not args.no_readme:
        note = (
            f"3 nodes on 127.0.0.1 on a shared 2-CPU machine, Python client, {args.rounds} interleaved "
            "rounds of "
            f"{args.seconds:g} s, measured {time.strftime('%Y-%m-%d')}. Target (issue 4): a plugin-served "
            "request "
            "costs at most 20% more than the native one at 64 in flight. Cost = native req/s / plugin req/s "
            "- 1. "
            "The headline is the paired cost: native and plugin measured back to back in each round, taking "
            "turns at going first, median over the rounds; 'of the best rounds' compares each case's best "
            "round. The nodes' CPU is every thread of the three node processes (the kernel's schedstat) over "
            "the requests served. Whole runs an hour apart on this machine differed by up to 10 points in "
            "these medians."
        )
        write_section("plugin_bench", "Plugins: plugin-served requests against native ones",
                      note + "\n\n" + text + "\n\n" + WHERE_THE_COST_GOES)


if __name__ == "__main__":
    main()
