"""`make run`: a local 3-node cluster, a value written through one node and read through another.

The cluster is left running so you can keep using it; the exports to reach it are printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from deploy.launcher import LocalCluster

DEMO_DIR = Path(".aspen-demo")


def main() -> None:
    cluster = LocalCluster(DEMO_DIR)
    if cluster.nodes:
        print(f"stopping the previous demo cluster in {DEMO_DIR}/")
        cluster.down(purge=True)
        cluster = LocalCluster(DEMO_DIR)
    print("starting 3 nodes ...")
    cluster.up(3)
    leader = cluster.wait_leader()
    print(f"leader elected: node {leader}")
    with cluster.client([1], discover_leader=False) as via1, cluster.client([3], discover_leader=False) as via3:
        w = via1.put("demo/greeting", b"hello from node 1")
        print(f"wrote demo/greeting through node 1 (revision {w['revision']})")
        r = via3.get("demo/greeting")
        print(f"read  demo/greeting through node 3: {r['value'].decode()!r}")
        if r["value"] != b"hello from node 1":
            sys.exit("demo failed: node 3 did not return the value written through node 1")
    print()
    print("The cluster keeps running. To use it:")
    print(cluster.exports().rstrip())
    print("  .venv/bin/aspen-cli kv get demo/greeting")
    print(f"Stop it with: .venv/bin/aspen-cluster down --dir {DEMO_DIR} --purge")


if __name__ == "__main__":
    main()
