"""Plugin dispatch benchmark: a request served by a WASM plugin against the native handler.

    python benchmarks/plugin_bench.py [--seconds 1] [--rounds 5] [--no-readme]

On a 3-node cluster on loopback, over the wire, at 1 and 64 requests in flight:
- `Ping` served natively against `PluginPing` served by a WAT plugin that answers at once;
- native `ReadKey` (linearizable) against a plugin's `ReadKey` for its own namespace, where the
  plugin calls kv_get_value (a linearizable read through the host) and answers.
Target (issue 4): a plugin-served request costs at most 20% more than the native one at 64 in
flight. The cases take turns in `--rounds` rounds of `--seconds` each and each keeps its best
round: the machine is shared, and a native run and a plugin run minutes apart would compare
the load of two moments more than the two paths. A program that reports, never a timed test.
"""

from __future__ import annotations

import argparse
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


async def run(seconds: float, rounds: int) -> dict[str, dict[int, float]]:
    rows: dict[str, dict[int, float]] = {}
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
            for _ in range(rounds):
                for name, op in cases.items():
                    for n in (1, 64):
                        rows[name][n] = max(rows[name][n], await throughput(op, n, seconds))
            await client.close()
        finally:
            cluster.down()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="one measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; each case keeps its best")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    rows = uvloop.run(run(args.seconds, args.rounds))
    lines = ["| request | req/s @1 | req/s @64 | plugin cost vs native @64 |", "|---|---|---|---|"]
    for name, r in rows.items():
        extra = "-"
        if "(plugin" in name:
            native = rows[name.split(" (")[0] + " (native)"][64]
            extra = f"{native / r[64] - 1:+.0%} per request"
        lines.append(f"| {name} | {r[1]:,.0f} | {r[64]:,.0f} | {extra} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        note = (f"3 nodes on 127.0.0.1, Python client, best of {args.rounds} interleaved rounds of {args.seconds:g} s, "
                f"measured {time.strftime('%Y-%m-%d')}. "
                "Cost per request = native throughput / plugin throughput - 1 (target: at most +20% at 64 in flight)."
                "\n\nWhere the cost goes: a plugin request makes three guest entries (aspen_alloc for the input, "
                "handle_request, aspen_free for the output; about 1 us each through wasmtime's C API), msgpack in and "
                "out of the guest (together the sandbox bench's echo row) and a hand-off to the plugin's worker "
                "thread. A native Ping does next to nothing, so that fixed cost is a large share of it. Serving "
                "plugin calls inline on the event loop (measured once, not kept: a slow plugin would stall the "
                "node) still cost about +50%: the floor is the sandbox call, not the hand-off.")
        write_section("plugin_bench", "Plugins: plugin-served requests against native ones", note + "\n\n" + text)


if __name__ == "__main__":
    main()
