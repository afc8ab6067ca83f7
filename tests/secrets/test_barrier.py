"""The barrier on real node processes: the first unseal creates the data key, a restarted node
is sealed until unsealed (by --seal-key-file or the CLI) and serves everything else meanwhile,
a wrong key is refused, rotation rewraps, and no unseal key or data key reaches a data dir."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.launcher import LocalCluster

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def cli(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASPEN_CLUSTER": cluster.endpoints, "ASPEN_COOKIE": cluster.cookie}
    return subprocess.run(
        [str(BIN / "aspen-cli"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def status(cluster: LocalCluster, node: int) -> dict[str, Any]:
    r = cli(cluster, "--json", "--node", str(node), "secrets", "status")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


def new_key(cluster: LocalCluster, tmp: Path, name: str) -> Path:
    path = tmp / name
    r = cli(cluster, "secrets", "new-unseal-key", "-o", str(path))
    assert r.returncode == 0, r.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    return path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "c") as c:
        c.up(3)
        yield c


def files_bytes(cluster: LocalCluster) -> list[tuple[Path, bytes]]:
    out = []
    for node in cluster.nodes:
        for path in cluster.data_dir(node).rglob("*"):
            if path.is_file():
                out.append((path, path.read_bytes()))
    return out


def test_unseal_restart_wrong_key_rotate(cluster: LocalCluster, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    key1 = new_key(cluster, keys, "unseal1")
    assert cli(cluster, "secrets", "new-unseal-key", "-o", str(key1)).returncode == 2  # never overwritten
    for node in cluster.nodes:
        assert status(cluster, node) | {"node_id": 0, "type": ""} == {
            "node_id": 0,
            "type": "",
            "sealed": True,
            "initialized": False,
            "unseal_key_id": None,
        }
    r = cli(cluster, "--json", "secrets", "unseal", "--key-file", str(key1))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["created"] is True and out["sealed"] is False
    assert all(p["ok"] and not p["sealed"] for p in out["peers"].values()) and len(out["peers"]) == 2
    kid = out["unseal_key_id"]
    for node in cluster.nodes:
        assert status(cluster, node) | {"node_id": 0, "type": ""} == {
            "node_id": 0,
            "type": "",
            "sealed": False,
            "initialized": True,
            "unseal_key_id": kid,
        }

    # A restarted node is sealed, and serves everything else.
    cluster.stop(2)
    cluster.start(2)
    eventually(lambda: status(cluster, 2)["initialized"])
    assert status(cluster, 2)["sealed"] is True
    assert cli(cluster, "--node", "2", "kv", "set", "plain", "value").returncode == 0
    assert cli(cluster, "--node", "2", "kv", "get", "plain").stdout.strip() == "value"

    # A wrong key is refused, clearly, and changes nothing.
    wrong = new_key(cluster, keys, "wrong")
    r = cli(cluster, "--node", "2", "secrets", "unseal", "--key-file", str(wrong), "--this-node-only")
    assert r.returncode != 0 and "UNSEAL_KEY_WRONG" in r.stderr and kid in r.stderr
    assert status(cluster, 2)["sealed"] is True
    bad = keys / "bad"
    bad.write_text("not hex\n")
    r = cli(cluster, "secrets", "unseal", "--key-file", str(bad))
    assert r.returncode == 2 and "64 hex characters" in r.stderr
    r = cli(cluster, "--node", "2", "secrets", "unseal", "--key-file", str(key1), "--this-node-only")
    assert r.returncode == 0 and "node 2: unsealed" in r.stdout, r.stderr

    # Rotation: the old key must be the current one; afterwards only the new key unseals.
    key2 = new_key(cluster, keys, "unseal2")
    r = cli(
        cluster, "secrets", "rotate-unseal-key", "--old-key-file", str(wrong), "--new-key-file", str(key2)
    )
    assert r.returncode != 0 and "UNSEAL_KEY_WRONG" in r.stderr
    r = cli(
        cluster,
        "--json",
        "secrets",
        "rotate-unseal-key",
        "--old-key-file",
        str(key1),
        "--new-key-file",
        str(key2),
    )
    assert r.returncode == 0, r.stderr
    kid2 = json.loads(r.stdout)["unseal_key_id"]
    assert kid2 != kid and all(not status(cluster, n)["sealed"] for n in cluster.nodes)  # nobody resealed
    # A node restarted with --seal-key-file unseals itself; with the old key it stays sealed.
    cluster.stop(3)
    cluster.node_args = ["--seal-key-file", str(key1)]
    cluster.start(3)
    eventually(lambda: "stays sealed" in cluster.log_path(3).read_text())
    assert status(cluster, 3)["sealed"] is True
    cluster.stop(3)
    cluster.node_args = ["--seal-key-file", str(key2)]
    cluster.start(3)
    eventually(lambda: not status(cluster, 3)["sealed"])
    assert status(cluster, 3)["unseal_key_id"] == kid2

    # Sealing on request drops the key everywhere.
    r = cli(cluster, "secrets", "seal")
    assert r.returncode == 0, r.stderr
    assert all(status(cluster, n)["sealed"] for n in cluster.nodes)

    # No unseal key, in any form, in any file of any data dir (logs included).
    needles = [k.read_text().strip().encode() for k in (key1, key2)] + [
        bytes.fromhex(k.read_text().strip()) for k in (key1, key2)
    ]
    for path, data in files_bytes(cluster):
        for needle in needles:
            assert needle not in data, f"an unseal key is in {path}"


def test_node_refuses_a_bad_seal_key_file(tmp_path: Path) -> None:
    bad = tmp_path / "k"
    bad.write_text("zz" * 32)
    r = subprocess.run(
        [str(BIN / "aspen-node"), "--data-dir", str(tmp_path / "d"), "--seal-key-file", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--seal-key-file" in r.stderr and "64 hex characters" in r.stderr
