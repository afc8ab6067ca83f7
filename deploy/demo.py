"""`make run`: a local 3-node cluster serving plugins, over TLS.

Starts 3 nodes (TLS with a new local CA and client certificates: `aspen-cluster up --tls`), writes a value
through node 1 and reads it through node 3, installs the WASM
plugin examples/wat-greeter (compiled from its WebAssembly text) and calls it through every
node. Then the Rust plugin examples/plugins/kv-counter goes the author's way: built with
`cargo aspen-plugin build --release`, signed with a new key, the key trusted on the cluster,
installed with --verify-signature, and incremented through each node in turn. The cluster is
left running; the exports to reach it are printed.

A demo cluster still running and healthy from an earlier `make run` is kept, data and all (it
was wiped without a word): the program says so and how to start afresh. One that is not
healthy (a node dead, no leader) is replaced, and the program says that too.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import wasmtime

from aspen.cli.plugin import WAIT_READY_S, wait_ready
from aspen.toolchain.cli import run as cargo_aspen_plugin
from deploy.launcher import LocalCluster
from wire.errors import AspenError

DEMO_DIR = Path(".aspen-demo")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GREETER = EXAMPLES / "wat-greeter"
KV_COUNTER = EXAMPLES / "plugins" / "kv-counter"
WASM_DIR = KV_COUNTER / "target" / "wasm32-unknown-unknown" / "release"


def toolchain(*args: str) -> None:
    print(f"$ cargo aspen-plugin {' '.join(args)}")
    if cargo_aspen_plugin(list(args)) != 0:
        sys.exit(f"demo failed: cargo aspen-plugin {args[0]}")


def serve_kv_counter(cluster: LocalCluster) -> None:
    """The author's way, end to end: build, sign, trust, install verified, use."""
    key = DEMO_DIR / "plugin-signing-key"
    manifest = DEMO_DIR / "kv-counter.plugin.json"  # the signed copy; the example stays as committed
    manifest.write_text((KV_COUNTER / "plugin.json").read_text())
    toolchain("build", "--release", "--path", str(KV_COUNTER))
    toolchain("keygen", "--output", str(key), "--force")
    toolchain("sign", "--key", str(key), "--path", str(KV_COUNTER), "--manifest", str(manifest))
    toolchain("verify", "--path", str(KV_COUNTER), "--manifest", str(manifest))
    public = key.with_name(key.name + ".pub").read_text().strip()
    with cluster.client() as c:
        c.request("PluginKeysAdd", public_key=public, name="demo author")
        r = c.request("PluginInstall", manifest=json.loads(manifest.read_text()),
                      wasm=(WASM_DIR / "aspen_kv_counter.wasm").read_bytes(), verify_signature=True)
        print(
            f"trusted key {public[:16]}... and installed {r['name']} {r['version']} with --verify-signature"
        )
    # Until a node has loaded the plugin, it would serve counter: keys natively: wait, as
    # `aspen-cli plugin install --wait` does.
    with cluster.client() as c:
        wait_ready(c, "kv-counter", "0.1.0", WAIT_READY_S)
    for node_id in cluster.nodes:
        with cluster.client([node_id], discover_leader=False) as cn:
            reply = cn.put("counter:demo", b"increment")
            print(f"kv set counter:demo increment through node {node_id}: count {reply['value'].decode()}")
    with cluster.client() as c:
        count = c.get("counter:demo")["value"].decode()
    print(f"kv get counter:demo: {count}")
    if count != str(len(cluster.nodes)):
        sys.exit(f"demo failed: {len(cluster.nodes)} increments gave {count}")


def healthy(cluster: LocalCluster) -> bool:
    """Every node alive and all agreeing on a leader."""
    return all(cluster.alive(n) for n in cluster.nodes) and cluster.leader_id() is not None


def how_to_use(cluster: LocalCluster) -> None:
    print("The cluster keeps running. To use it:")
    print(cluster.exports().rstrip())
    print("  .venv/bin/aspen-cli kv get demo/greeting")
    print("  .venv/bin/aspen-cli rpc Greet")
    print("  .venv/bin/aspen-cli plugin info greeter")
    print("  .venv/bin/aspen-cli kv set counter:demo increment")
    print("  .venv/bin/aspen-cli kv get counter:demo")
    print("  .venv/bin/aspen-cli cluster health")
    print(f"Stop it with: .venv/bin/aspen-cluster down --dir {DEMO_DIR} --purge")


def main() -> None:
    cluster = LocalCluster(DEMO_DIR)
    if cluster.nodes and healthy(cluster):
        print(
            f"A demo cluster is already running in {DEMO_DIR}/ (leader: node {cluster.leader_id()}): kept "
            "as it "
            "is, with its data."
        )
        print(f"For a fresh one: .venv/bin/aspen-cluster down --dir {DEMO_DIR} --purge, then make run again.")
        print()
        how_to_use(cluster)
        return
    if cluster.nodes:
        print(
            f"The previous demo cluster in {DEMO_DIR}/ is not healthy (a node is down or there is no "
            "leader): "
            "replacing it, data and all."
        )
        cluster.down(purge=True)
    cluster = LocalCluster(DEMO_DIR, tls=True)
    print(
        "starting 3 nodes (TLS: CA and certificates in "
        f"{cluster.tls_dir.relative_to(Path.cwd().resolve())}/) ..."
    )
    cluster.up(3)
    leader = cluster.wait_leader()
    print(f"leader elected: node {leader}")
    with (
        cluster.client([1], discover_leader=False) as via1,
        cluster.client([3], discover_leader=False) as via3,
    ):
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
    serve_kv_counter(cluster)
    print()
    how_to_use(cluster)


if __name__ == "__main__":
    main()
