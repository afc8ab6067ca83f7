"""deploy.launcher: the node command line contract, state files, and a real local cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import launcher
from deploy.launcher import LocalCluster, NodeSpec


def test_node_command_follows_the_contract(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "c")
    c.nodes = {1: NodeSpec(1, 7001, 7101), 2: NodeSpec(2, 7002, 7102), 3: NodeSpec(3, 7003, 7103)}
    cmd = c.command(2)
    assert cmd[:3] == [sys.executable, "-m", "aspen.node"]
    args = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert args == {
        "--node-id": "2",
        "--data-dir": str(c.root / "node2"),
        "--listen": "127.0.0.1:7002",
        "--raft": "127.0.0.1:7102",
        "--peers": "1=127.0.0.1:7101,3=127.0.0.1:7103",  # the OTHER nodes
        "--peer-clients": "1=127.0.0.1:7001,3=127.0.0.1:7003",
        "--cookie-file": str(c.root / "cookie"),
        "--initial-cluster-state": "existing",  # any start but the first `up`
    }
    new = c.command(2, "new")
    assert dict(zip(new[3::2], new[4::2], strict=True))["--initial-cluster-state"] == "new"  # the first up


def test_bad_arguments_are_refused_before_anything_starts(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "c")
    with pytest.raises(ValueError):
        c.up(0)
    with pytest.raises(ValueError):
        c.up(16)
    with pytest.raises(ValueError):
        c.up(3, base_port=80)
    assert not (tmp_path / "c").exists()


def test_free_ports_are_distinct() -> None:
    ports = launcher.free_ports(20)
    assert len(set(ports)) == 20


def test_cli_without_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        launcher.main(["status", "--dir", str(tmp_path / "none")])
    assert e.value.code == 1 and "no cluster" in capsys.readouterr().err


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    with LocalCluster(tmp_path / "c") as c:
        yield c


def test_real_cluster_lifecycle(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.up(3)
    root = cluster.root
    assert (root / "cookie").stat().st_mode & 0o777 == 0o600
    state = json.loads((root / "cluster.json").read_text())
    assert [n["node_id"] for n in state["nodes"]] == [1, 2, 3] and all(n["pid"] for n in state["nodes"])
    assert all((root / f"node{i}" / "node.log").exists() for i in (1, 2, 3))
    exports = cluster.exports()
    assert (
        exports.startswith(f"export ASPEN_CLUSTER={cluster.endpoints}\n")
        and "export ASPEN_COOKIE=" in exports
    )

    leader = cluster.wait_leader()
    with cluster.client() as c:
        c.put("launcher/k", b"v")
    roles = cluster.roles()
    assert roles[leader] == "leader" and sorted(roles.values()) == ["follower", "follower", "leader"]

    # The CLI sees the same state (another LocalCluster over the same directory).
    with pytest.raises(SystemExit) as e:
        launcher.main(["status", "--dir", str(root)])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert out.splitlines()[0] == f"leader: {leader}" and out.count("alive") == 3

    cluster.kill(leader)
    assert not cluster.alive(leader) and cluster.roles()[leader] == "down"
    new_leader = cluster.wait_leader(exclude=leader)
    assert new_leader != leader
    cluster.start(leader)
    with cluster.client() as c:
        assert c.get("launcher/k")["value"] == b"v"
    with pytest.raises(RuntimeError):
        cluster.start(leader)  # already running
    cluster.stop(new_leader)  # SIGTERM, bounded wait
    assert not cluster.alive(new_leader)
    with pytest.raises(RuntimeError):
        LocalCluster(root).up(3)  # the directory holds a cluster

    pids = [n.pid for n in cluster.nodes.values()]
    cluster.down(purge=True)
    assert not root.exists()
    for pid in pids:
        assert pid is not None and not launcher.pid_alive(pid)


def test_eval_up_down_via_the_console_script(tmp_path: Path) -> None:
    d = tmp_path / "c"
    up = subprocess.run([sys.executable, "-m", "deploy.launcher", "up", "--nodes", "1", "--dir", str(d)],
                        capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        env = dict(os.environ)
        out = subprocess.run(["bash", "-c", f'eval "{up.stdout}"; echo "$ASPEN_CLUSTER $ASPEN_COOKIE"'],
                             capture_output=True, text=True, env=env).stdout.split()
        c = LocalCluster(d)
        assert out == [c.endpoints, c.cookie]
    finally:
        subprocess.run([sys.executable, "-m", "deploy.launcher", "down", "--dir", str(d)], timeout=60)
    for n in LocalCluster(d).nodes.values():
        if n.pid and launcher.pid_alive(n.pid):  # belt and braces: never leave a node behind
            os.kill(n.pid, signal.SIGKILL)
            pytest.fail(f"node pid {n.pid} survived down")


def test_tls_clusters_pass_their_files_and_export_them(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "c", tls=True)
    c.nodes = {1: NodeSpec(1, 7001, 7101), 2: NodeSpec(2, 7002, 7102, host="10.0.0.2", netns="h2")}
    cmd = c.command(2)
    i = cmd.index("--cert-file")
    assert cmd[i : i + 7] == [
        "--cert-file",
        str(c.tls_dir / "node2.pem"),
        "--key-file",
        str(c.tls_dir / "node2.key"),
        "--trusted-ca-file",
        str(c.tls_dir / "ca.pem"),
        "--client-cert-auth",
    ]
    assert "--insecure-plaintext" not in cmd
    c.root.mkdir(parents=True)
    launcher.write_cookie_file(c.cookie_path, "a-cookie-for-the-test-0123456789")
    assert c.exports().splitlines()[2:] == [f"export ASPEN_CACERT={c.tls_dir / 'ca.pem'}",
                                            f"export ASPEN_CERT={c.tls_dir / 'client.pem'}",
                                            f"export ASPEN_KEY={c.tls_dir / 'client.key'}"]
    c._save()
    assert LocalCluster(tmp_path / "c").tls  # kept in cluster.json


def test_plaintext_netns_hosts_say_so(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "c")
    c.nodes = {1: NodeSpec(1, 7701, 7801, host="10.0.0.1", netns="h1"), 2: NodeSpec(2, 7002, 7102)}
    assert "--insecure-plaintext" in c.command(1) and "--insecure-plaintext" not in c.command(2)
    assert "--cert-file" not in c.command(1) and c.client_tls() == {}


def test_aspen_cluster_commands_on_a_missing_dir_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `down --dir typo` was silent and exited 0.
    for argv in (
        ["down", "--dir", str(tmp_path / "typo")],
        ["status", "--dir", str(tmp_path / "typo")],
        ["kill", "--dir", str(tmp_path / "typo"), "2"],
    ):
        with pytest.raises(SystemExit) as e:
            launcher.main(argv)
        err = capsys.readouterr().err
        assert (
            e.value.code == 1 and err.startswith("error: NOT_FOUND: no cluster in ") and err.count("\n") == 1
        )


def test_aspen_cluster_version_and_help_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    with pytest.raises(SystemExit) as e:
        launcher.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("aspen-cluster ")
    ap = launcher.build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        assert parser.description, name
