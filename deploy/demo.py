"""`make run`: a local 3-node cluster serving a plugin.

Starts 3 nodes, writes a value through node 1 and reads it through node 3, installs the WASM
plugin examples/wat-greeter (compiled from its WebAssembly text) on the cluster, and calls it
through every node. The cluster is left running; the exports to reach it are printed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import wasmtime

from deploy.launcher import LocalCluster
from storage.errors import AspenError

DEMO_DIR = Path(".aspen-demo")
GREETER = Path(__file__).resolve().parent.parent / "examples" / "wat-greeter"


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
    wasm = bytes(wasmtime.wat2wasm((GREETER / "greeter.wat").read_text()))
    manifest = json.loads((GREETER / "plugin.json").read_text())
    with cluster.client() as c:
        r = c.request("PluginInstall", manifest=manifest, wasm=wasm)
        print(f"installed plugin {r['name']} {r['version']} (wasm {r['wasm_hash'][:16]}...) on the cluster")
    for node_id in cluster.nodes:
        with cluster.client([node_id], discover_leader=False) as cn:
            for _ in range(100):  # each node loads the plugin as the registry entry reaches it
                try:
                    reply = cn.request("Greet")
                    break
                except AspenError:
                    time.sleep(0.1)
            else:
                sys.exit(f"demo failed: node {node_id} never served the plugin")
            print(f"Greet through node {node_id}: {reply['text']!r} (served by node {reply['node']})")
    print()
    print("The cluster keeps running. To use it:")
    print(cluster.exports().rstrip())
    print("  .venv/bin/aspen-cli kv get demo/greeting")
    print("  .venv/bin/aspen-cli rpc Greet")
    print("  .venv/bin/aspen-cli plugin info greeter")
    print(f"Stop it with: .venv/bin/aspen-cluster down --dir {DEMO_DIR} --purge")


if __name__ == "__main__":
    main()
