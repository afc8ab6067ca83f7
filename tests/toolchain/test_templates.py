"""Each of the guide's four templates, end to end, with the guide's commands: init, check,
build --release, cargo test, keygen, sign, verify, then install with --verify-signature on a
3-node cluster and requests through aspen-cli."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from deploy.launcher import LocalCluster
from tests.plugins.test_plugin_cli import cli
from tests.plugins.test_plugins_cluster import eventually
from tests.toolchain.conftest import cargo


def _rpc(cluster: LocalCluster, rtype: str) -> dict:
    r = cli(cluster, "--json", "rpc", rtype)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def exercise_basic(cluster: LocalCluster, name: str) -> None:
    assert _rpc(cluster, "MyBasicPing")["message"] == "pong"
    assert cli(cluster, "kv", "set", f"{name}:greeting", "hello").returncode == 0
    eventually(lambda: _rpc(cluster, "MyBasicPing")["message"] == "hello", what="greeting read by the plugin")


def exercise_kv(cluster: LocalCluster, name: str) -> None:
    r = cli(cluster, "kv", "set", f"{name}:a", "1")
    assert (r.returncode, r.stdout.strip()) == (0, "OK"), r.stderr  # the plugin answered: no revision
    assert cli(cluster, "kv", "get", f"{name}:a").stdout == "1\n"
    big = cluster.root / "big"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    r = cli(cluster, "kv", "set", f"{name}:big", "--file", str(big))
    assert r.returncode == 1 and "INVALID_REQUEST" in r.stderr and "over" in r.stderr
    assert cli(cluster, "kv", "delete", f"{name}:a").stdout == "deleted\n"
    assert cli(cluster, "kv", "get", f"{name}:a").returncode == 1


def exercise_timer(cluster: LocalCluster, name: str) -> None:
    def every_node_ticked() -> bool:
        nodes = _rpc(cluster, "MyTimerStatus")["nodes"]
        return len(nodes) == 3 and all(int(n["ticks"]) >= 1 for n in nodes)

    eventually(every_node_ticked, timeout_s=30, what="a tick on every node")


def exercise_hook(cluster: LocalCluster, name: str) -> None:
    assert cli(cluster, "kv", "set", "hooked:x", "1").returncode == 0

    def seen_everywhere() -> bool:
        stats = _rpc(cluster, "MyHookStats")
        return "hooked:x" in (stats["last_event"] or "") and len(stats["seen"]) == 3

    eventually(seen_everywhere, what="the write recorded by the hook plugin on every node")


EXERCISE = {"basic": exercise_basic, "kv": exercise_kv, "timer": exercise_timer, "hook": exercise_hook}


@pytest.mark.parametrize("template", ["basic", "kv", "timer", "hook"])
def test_template_end_to_end(
    template: str, shared_cluster: LocalCluster, tmp_path: Path, wasm_toolchain: None
) -> None:
    name = f"my-{template}"
    home = tmp_path / "home"
    home.mkdir()
    r = cargo(
        "aspen-plugin", "init", name, "--template", template, "--priority", "945", cwd=tmp_path, home=home
    )
    assert f"Created {name}" in r.stdout
    project = tmp_path / name
    for rel in ("Cargo.toml", "plugin.json", "src/lib.rs", "README.md", ".cargo/config.toml", ".gitignore"):
        assert (project / rel).is_file(), rel
    manifest = json.loads((project / "plugin.json").read_text())
    assert manifest["priority"] == 945 and manifest["kv_prefixes"] == [f"{name}:"]

    assert "valid" in cargo("aspen-plugin", "check", cwd=project, home=home).stdout
    r = cargo("aspen-plugin", "build", "--release", cwd=project, home=home)
    wasm = project / "target" / "wasm32-unknown-unknown" / "release" / f"aspen_{name.replace('-', '_')}.wasm"
    assert f"Built {wasm}" in r.stdout and wasm.is_file()
    r = cargo("test", cwd=project, home=home)
    assert "plugin_info_matches_manifest ... ok" in r.stdout

    r = cargo("aspen-plugin", "keygen", cwd=project, home=home)
    key_path = home / ".config" / "aspen" / "plugin-signing-key"
    assert f"Secret key: {key_path}" in r.stdout
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    public = r.stdout.split("Public key: ")[1].split()[0]
    assert len(public) == 64
    cargo("aspen-plugin", "sign", "--key", "~/.config/aspen/plugin-signing-key", cwd=project, home=home)
    signed = json.loads((project / "plugin.json").read_text())
    assert signed["signature"]["public_key"] == public
    assert f"signed by {public}" in cargo("aspen-plugin", "verify", cwd=project, home=home).stdout
    cargo("aspen-plugin", "verify", "--key", public, cwd=project, home=home)

    assert cli(shared_cluster, "plugin-keys", "add", public, "--name", f"author of {name}").returncode == 0
    # --wait: every node loads it by itself from the replicated registry; the hook template must
    # be subscribed everywhere before the write it is to see.
    r = cli(shared_cluster, "plugin", "install", str(wasm), "--manifest", str(project / "plugin.json"),
            "--verify-signature", "--wait")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("Ready on every node")
    assert cli(shared_cluster, "plugin", "info", name).stdout.count("Ready") == 3
    EXERCISE[template](shared_cluster, name)
    # Leave the cluster as found: a ticking timer plugin would feed the hook plugin's events.
    assert cli(shared_cluster, "plugin", "remove", name).returncode == 0
