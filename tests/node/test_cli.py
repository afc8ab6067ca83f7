"""aspen-cli and aspen-cluster as a user runs them: real processes, the environment variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from deploy.launcher import LocalCluster

BIN = Path(sys.executable).parent


def cli(cluster: LocalCluster, *args: str, cookie: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASPEN_CLUSTER": cluster.endpoints, "ASPEN_COOKIE": cookie or cluster.cookie}
    return subprocess.run(
        [str(BIN / "aspen-cli"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_kv_commands(shared_cluster: LocalCluster) -> None:
    assert cli(shared_cluster, "kv", "set", "cli/a", "hello").returncode == 0
    r = cli(shared_cluster, "kv", "get", "cli/a")
    assert r.returncode == 0 and r.stdout.strip() == "hello"
    r = cli(shared_cluster, "--json", "kv", "get", "cli/a")
    assert json.loads(r.stdout)["value"] == "hello"
    assert cli(shared_cluster, "kv", "cas", "cli/a", "--expected", "hello", "--new", "bye").returncode == 0
    r = cli(shared_cluster, "kv", "cas", "cli/a", "--expected", "hello", "--new", "x")
    assert r.returncode == 1 and r.stderr.startswith("error: CAS_FAILED")
    assert cli(shared_cluster, "kv", "batch", "set:cli/b=1", "set:cli/c=2", "del:cli/a").returncode == 0
    r = cli(shared_cluster, "kv", "scan", "cli/")
    assert r.stdout.split("\n")[:2] == ["cli/b\t1", "cli/c\t2"]
    r = cli(shared_cluster, "kv", "get", "cli/a")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr
    r = cli(shared_cluster, "kv", "get", "cli/a", cookie="wrong-cookie-wrong-cookie")
    assert r.returncode == 1 and r.stderr.strip() == "error: AUTH_FAILED: wrong or missing cluster cookie"


def test_blob_and_status_commands(shared_cluster: LocalCluster, tmp_path: Path) -> None:
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(5000))
    r = cli(shared_cluster, "--json", "blob", "put", str(f))
    h = json.loads(r.stdout)["hash"]
    out = tmp_path / "back.bin"
    assert cli(shared_cluster, "blob", "get", h, "-o", str(out)).returncode == 0
    assert out.read_bytes() == f.read_bytes()
    assert cli(shared_cluster, "blob", "has", h).stdout.strip() == "yes"
    st = json.loads(cli(shared_cluster, "--json", "cluster", "status").stdout)
    assert st["leader_id"] in (1, 2, 3) and len(st["nodes"]) == 3


def test_aspen_cluster_eval_workflow(tmp_path: Path) -> None:
    d = tmp_path / "c"
    up = subprocess.run([str(BIN / "aspen-cluster"), "up", "--nodes", "3", "--dir", str(d)],
                        capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        env = dict(os.environ)
        for line in up.stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value
        assert env["ASPEN_CLUSTER"].count(",") == 2 and env["ASPEN_COOKIE"]
        r = subprocess.run(
            [str(BIN / "aspen-cli"), "kv", "set", "k", "v"], env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        st = subprocess.run(
            [str(BIN / "aspen-cluster"), "status", "--dir", str(d)], capture_output=True, text=True
        )
        leader = int(st.stdout.splitlines()[0].split(": ")[1])
        kill = subprocess.run(
            [str(BIN / "aspen-cluster"), "kill", "--dir", str(d), str(leader)], capture_output=True, text=True
        )
        assert kill.returncode == 0 and kill.stdout == f"node {leader} killed\n"  # it printed nothing
        start = subprocess.run(
            [str(BIN / "aspen-cluster"), "start", "--dir", str(d), str(leader)],
            capture_output=True,
            text=True,
        )
        assert start.returncode == 0 and start.stdout == f"node {leader} started\n"
        r = subprocess.run(
            [str(BIN / "aspen-cli"), "kv", "get", "k"], env=env, capture_output=True, text=True, timeout=60
        )
        assert r.stdout.strip() == "v"
    finally:
        subprocess.run([str(BIN / "aspen-cluster"), "down", "--dir", str(d), "--purge"], timeout=60)
    assert not d.exists()
