"""Automerge plugin benchmark: pushes and full pulls of real Automerge changes on 3 nodes.

    python benchmarks/automerge_bench.py [--rounds 5] [--no-readme]

Needs the plugin built (`make automerge-plugin`) and the real client (`make automerge-js`).
On a 3-node cluster on loopback, over the wire, one request at a time:
- push of 1,000 small changes (one AmPush of their concatenated chunks) to a fresh document;
- full pull of a 10,000-change document (AmPull from no heads, following pages), from each node.
Targets (issue 15): pull of 10,000 changes <= 0.5 s; push of 1,000 changes <= 1 s. Each case
prints its median and best over `--rounds`, and the plugin's fuel per call (the serving
node's fuel_used before and after). A program that reports, never a timed test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aspen import automerge
from aspen.client import Client
from benchmarks.report import write_section
from deploy.launcher import LocalCluster
from tests.automerge.conftest import JsClient

PUSH_CHANGES = 1_000
PULL_CHANGES = 10_000
TARGETS_S = {"push": 1.0, "pull": 0.5}


@dataclass
class Case:
    target_s: float
    seconds: list[float] = field(default_factory=list)
    fuel: list[int] = field(default_factory=list)
    note: str = ""


def fuel_used(c: Client, node: int) -> int:
    return int(c.request("PluginInfo", name="automerge")["nodes"][str(node)]["fuel_used"])


def make_changes(peer: JsClient, doc: str, n: int) -> bytes:
    peer.call("new", doc=doc)
    peer.call("many", doc=doc, n=n, fn="d['k' + (i % 100)] = i")
    return peer.since(doc, [])


def run(rounds: int) -> dict[str, Case]:
    peer = JsClient()
    small = make_changes(peer, "small", PUSH_CHANGES)
    big = make_changes(peer, "big", PULL_CHANGES)
    peer.close()
    cases = {f"push {PUSH_CHANGES:,} changes ({len(small):,} bytes)": Case(TARGETS_S["push"]),
             f"full pull of {PULL_CHANGES:,} changes ({len(big):,} bytes)": Case(TARGETS_S["pull"])}
    push_case, pull_case = cases.values()
    with tempfile.TemporaryDirectory(prefix="aspen-automerge-bench-") as tmp:
        cluster = LocalCluster(Path(tmp) / "c")
        cluster.up(3)
        try:
            with cluster.client() as admin:
                manifest = json.loads(automerge.MANIFEST.read_text())
                admin.request("PluginInstall", manifest=manifest, wasm=automerge.WASM.read_bytes())
                deadline = time.monotonic() + 60
                while not all(st.get("state") == "Ready"
                              for st in admin.request("PluginInfo", name="automerge")["nodes"].values()):
                    assert time.monotonic() < deadline, "the plugin never became Ready"
                    time.sleep(0.2)
                r = automerge.push(admin, "big", big)
                assert r["stored"] == PULL_CHANGES, r
                addrs = cluster.endpoints.split(",")
                node_ids = sorted(cluster.nodes)
                for i in range(rounds):
                    node = node_ids[i % len(node_ids)]
                    with Client(addrs[i % len(addrs)], cluster.cookie, 60.0, discover_leader=False) as c:
                        before = fuel_used(admin, node)
                        started = time.perf_counter()
                        r = automerge.push(c, f"small-{i}", small)
                        push_case.seconds.append(time.perf_counter() - started)
                        push_case.fuel.append(fuel_used(admin, node) - before)
                        assert r["stored"] == PUSH_CHANGES, r
                        before = fuel_used(admin, node)
                        started = time.perf_counter()
                        pulled = automerge.pull_all(c, "big")
                        pull_case.seconds.append(time.perf_counter() - started)
                        pull_case.fuel.append((fuel_used(admin, node) - before) // pulled.pages)
                        assert pulled.count == PULL_CHANGES
                        pull_case.note = f"{pulled.pages} page(s)"
        finally:
            cluster.down()
    return cases


def table(cases: dict[str, Case]) -> str:
    lines = [
        "| case | median s | best s | target s | met | fuel per call (median) |",
        "|---|---|---|---|---|---|",
    ]
    for name, case in cases.items():
        median = statistics.median(case.seconds)
        lines.append(
            f"| {name}{' ' + case.note if case.note else ''} | {median:.3f} | {min(case.seconds):.3f} "
            f"| {case.target_s:g} | {'yes' if median <= case.target_s else 'no'} "
            f"| {statistics.median(case.fuel):,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="measurements of each case, spread over the nodes")
    ap.add_argument("--no-readme", action="store_true", help="print only; do not write benchmarks/README.md")
    args = ap.parse_args()
    text = table(run(args.rounds))
    print(text)
    if not args.no_readme:
        note = (
            f"3 nodes on 127.0.0.1, Python client, one request at a time, {args.rounds} rounds spread over "
            "the "
            f"nodes, measured {time.strftime('%Y-%m-%d')}. Changes made by @automerge/automerge 3.5.0 "
            "(one map key set per change). Fuel is the serving node's plugin fuel for the call."
        )
        write_section("automerge_bench", "Automerge plugin: push and full pull", note + "\n\n" + text)


if __name__ == "__main__":
    main()
