"""The guide's Deployment commands as a user types them, and signature checks at install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nacl.signing
import pytest

from aspen import signing
from aspen.manifest import Manifest
from deploy.launcher import LocalCluster
from sandbox.permissions import PERMISSION_NAMES
from tests.plugins.test_plugins_cluster import eventually, install
from tests.plugins.wat import manifest, plugin, write
from wire.errors import AspenError

BIN = Path(sys.executable).parent


def cli(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASPEN_CLUSTER": cluster.endpoints, "ASPEN_COOKIE": cluster.cookie}
    return subprocess.run(
        [str(BIN / "aspen-cli"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_install_list_info_rpc_disable_remove_through_the_cli(
    shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    wasm = plugin("myprefix-store", "0.1.0", {"type": "WriteResult", "revision": 0, "by": "plugin"})
    w, m = write(tmp_path, wasm, manifest("myprefix-store", "0.1.0", ["WriteKey", "Hello"]))
    r = cli(
        shared_cluster,
        "plugin",
        "install",
        str(w),
        "--manifest",
        str(m),
        "--kv-prefixes",
        "myprefix:",
        "--priority",
        "940",
        "--fuel-limit",
        "1000000",
        "--memory-limit",
        "16777216",
        "--execution-timeout-secs",
        "5",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("installed myprefix-store 0.1.0")
    # The guide's Integration Testing example reaches the plugin that owns the namespace.
    eventually(
        lambda: (
            json.loads(cli(shared_cluster, "--json", "kv", "set", "myprefix:key1", "value1").stdout).get("by")
            == "plugin"
        )
    )
    r = cli(shared_cluster, "plugin", "list")
    assert "myprefix-store" in r.stdout and "priority=940" in r.stdout
    r = cli(shared_cluster, "plugin", "info", "myprefix-store")
    assert r.returncode == 0 and "kv_prefixes: myprefix:" in r.stdout and "fuel 1000000" in r.stdout
    assert "timeout 5" in r.stdout  # --execution-timeout-secs: the plugin's limit, not the request's deadline
    assert r.stdout.count("Ready") == 3
    r = cli(shared_cluster, "rpc", "Hello", "--data", '{"who": "me", "data": {"utf8": "x"}}')
    assert r.returncode == 0 and json.loads(r.stdout)["by"] == "plugin"  # printed as JSON
    assert cli(shared_cluster, "plugin", "reload", "myprefix-store").returncode == 0
    assert cli(shared_cluster, "plugin", "disable", "myprefix-store").returncode == 0
    eventually(lambda: cli(shared_cluster, "rpc", "Hello").stderr.startswith("error: UNKNOWN_REQUEST"))
    assert cli(shared_cluster, "plugin", "remove", "myprefix-store").returncode == 0
    r = cli(shared_cluster, "plugin", "info", "myprefix-store")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr


def test_bad_manifest_file_is_refused_by_the_cli(shared_cluster: LocalCluster, tmp_path: Path) -> None:
    w, m = write(tmp_path, plugin("x", "1.0.0", {"type": "X"}), manifest("x", "1.0.0", ["X"], priority=12))
    r = cli(shared_cluster, "plugin", "install", str(w), "--manifest", str(m))
    # Checked before sending: a usage error (2), one line.
    assert r.returncode == 2 and r.stderr.startswith("error: INVALID_REQUEST: ") and "priority" in r.stderr


def test_reload_reinitializes_on_every_node(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        install(c, plugin("reloadme", "1.0.0", {"type": "R"}), manifest("reloadme", "1.0.0", ["ReloadPing"]))
        eventually(lambda: all(st.get("instantiations") == 1 for st in
                               c.request("PluginInfo", name="reloadme")["nodes"].values()))
        c.request("PluginReload", name="reloadme")
        eventually(
            lambda: all(
                st.get("calls", 0) >= 0 and st.get("instantiations") == 1 and st.get("state") == "Ready"
                for st in c.request("PluginInfo", name="reloadme")["nodes"].values()
            )
        )
        assert c.request("ReloadPing")["type"] == "R"
        seq = c.request("PluginInfo", name="reloadme")["manifest"]["reload_seq"]
        assert seq == 1


def test_verify_signature_refuses_unsigned_untrusted_and_tampered(shared_cluster: LocalCluster) -> None:
    wasm = plugin("signed", "1.0.0", {"type": "Signed"})
    author = nacl.signing.SigningKey.generate()
    stranger = nacl.signing.SigningKey.generate()
    good = manifest(
        "signed",
        "1.0.0",
        ["SignedPing"],
        signature=signing.sign(Manifest.from_json(manifest("signed", "1.0.0", ["SignedPing"])), wasm, author),
    )
    with shared_cluster.client() as c:
        cases = [
            (manifest("signed", "1.0.0", ["SignedPing"]), wasm, "SIGNATURE_MISSING"),
            (good, wasm, "SIGNATURE_UNTRUSTED"),  # not trusted yet
        ]
        for man, body, code in cases:
            with pytest.raises(AspenError) as err:
                install(c, body, man, verify_signature=True)
            assert err.value.code == code, err.value
        c.request("PluginKeysAdd", public_key=bytes(author.verify_key).hex(), name="Alice")
        assert [k["name"] for k in c.request("PluginKeysList")["keys"]] == ["Alice"]
        tampered = plugin("signed", "1.0.0", {"type": "Evil"})
        with pytest.raises(AspenError) as err:
            install(c, tampered, good, verify_signature=True)
        assert err.value.code == "SIGNATURE_INVALID" and "changed" in err.value.message
        by_stranger = manifest(
            "signed",
            "1.0.0",
            ["SignedPing"],
            signature=signing.sign(
                Manifest.from_json(manifest("signed", "1.0.0", ["SignedPing"])), wasm, stranger
            ),
        )
        with pytest.raises(AspenError) as err:
            install(c, wasm, by_stranger, verify_signature=True)
        assert err.value.code == "SIGNATURE_UNTRUSTED"
        assert install(c, wasm, good, verify_signature=True)["name"] == "signed"
        # A cluster setting makes verification mandatory for every install.
        c.request("ClusterSetting", name="require_signatures", value=True)
        # The probe: the signed module with every permission and someone else's
        # namespace. The signature covers the manifest, so the edit is refused, by name.
        every = {perm: True for perm in PERMISSION_NAMES}
        for edit, field in (
            ({"permissions": every}, "permissions"),
            ({"kv_prefixes": ["mitm/"]}, "kv_prefixes"),
            ({"handles": ["SignedPing", "ReadKey"]}, "handles"),
        ):
            with pytest.raises(AspenError) as err:
                install(c, wasm, {**good, **edit})
            assert err.value.code == "SIGNATURE_INVALID" and err.value.message.startswith(field), err.value
        with pytest.raises(AspenError) as err:  # another name is another namespace: signed too
            install(c, wasm, good, install_name="signed-copy")
        assert err.value.code == "SIGNATURE_INVALID" and err.value.message.startswith("name"), err.value
        assert c.request("PluginInfo", name="signed")["manifest"]["kv_prefixes"] == []
        with pytest.raises(AspenError) as err:
            install(c, plugin("unsigned", "1.0.0", {"type": "U"}), manifest("unsigned", "1.0.0", ["U"]))
        assert err.value.code == "SIGNATURE_MISSING"
        c.request("ClusterSetting", name="require_signatures", value=False)
        c.request("PluginKeysRemove", public_key=bytes(author.verify_key).hex())
        assert c.request("PluginKeysList")["keys"] == []


def test_install_wait_with_a_node_down_and_an_identical_reinstall(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    # It blocked 60 s and exited 1 although the install had committed; a reinstall of the same
    # wasm and manifest said "upgraded".
    w, m = write(
        tmp_path, plugin("waiter", "1.0.0", {"type": "W"}), manifest("waiter", "1.0.0", ["WaitPing"])
    )
    leader = cluster.wait_leader()
    down = max(n for n in cluster.nodes if n != leader)  # a follower: no election during the install
    cluster.kill(down)
    r = cli(cluster, "plugin", "install", str(w), "--manifest", str(m), "--wait")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("installed waiter 1.0.0") and f"node(s) {down} unreachable" in r.stdout, (
        r.stdout
    )
    r = cli(cluster, "plugin", "install", str(w), "--manifest", str(m))
    assert r.returncode == 0 and r.stdout.startswith("unchanged waiter 1.0.0"), r.stdout + r.stderr
