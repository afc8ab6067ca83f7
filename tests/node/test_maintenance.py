"""kv delete --prefix, cluster move-leader, snapshot save and restore, against real node
processes on 127.0.0.1 (issue 16, item 8). Every bound is crossed: DeleteRange's 1,000 keys
per entry, the 4 MiB snapshot chunk, the snapshots a node holds, the restore's empty data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aspen.maintenance import SNAPSHOT_CHUNK_MAX_BYTES, SNAPSHOTS_HELD_MAX
from deploy.launcher import LocalCluster
from storage.limits import DELETE_RANGE_MAX
from tests.node.test_cli import BIN, cli
from wire.errors import AspenError


def code_of(c: object, rtype: str, **fields: object) -> str:
    with pytest.raises(AspenError) as err:
        c.request(rtype, **fields)  # type: ignore[attr-defined]
    return str(err.value.code)


def test_delete_prefix_crosses_the_per_entry_bound(shared_cluster: LocalCluster) -> None:
    total = 2 * DELETE_RANGE_MAX + 500
    with shared_cluster.client() as c:
        for start in range(0, total, 1000):
            c.batch(
                [
                    {"op": "Set", "key": f"delp/{i:05d}", "value": b"v"}
                    for i in range(start, min(total, start + 1000))
                ]
            )
        c.put("delp", b"not under the prefix")
        c.put("delq/1", b"another prefix")
        before = c.get("delq/1")["mod_revision"]
        r = cli(shared_cluster, "kv", "delete", "--prefix", "delp/", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        # Three log entries (1,000 + 1,000 + 500 keys), one revision each.
        assert out["deleted"] == total and out["rounds"] == 3 and out["revision"] == before + 3
        assert c.scan("delp/")["entries"] == []
        assert c.get("delp")["was_found"] and c.get("delq/1")["was_found"]
        # Nothing left: status 1, as for one missing key, with and without --json.
        r = cli(shared_cluster, "kv", "delete", "--prefix", "delp/")
        assert r.returncode == 1 and r.stderr.startswith("error: NOT_FOUND: no keys with prefix 'delp/'"), (
            r.stderr
        )
        r = cli(shared_cluster, "kv", "delete", "--prefix", "delp/", "--json")
        assert r.returncode == 1 and json.loads(r.stdout)["deleted"] == 0
        r = cli(shared_cluster, "kv", "delete", "--prefix", "delq/")
        assert (r.returncode, r.stdout) == (0, "deleted 1\n")
        # The request's own bounds, and the namespaces it must not reach into.
        assert code_of(c, "DeleteRange", prefix="delp", limit=DELETE_RANGE_MAX + 1) == "INVALID_REQUEST"
        assert code_of(c, "DeleteRange", prefix="delp", limit=0) == "INVALID_REQUEST"
        assert code_of(c, "DeleteRange", prefix=b"delp") == "INVALID_REQUEST"
        assert code_of(c, "DeleteRange") == "INVALID_REQUEST"
        assert code_of(c, "DeleteRange", prefix="k" * 1025) == "KEY_TOO_LARGE"
        assert code_of(c, "DeleteRange", prefix="__aspen/") == "RESERVED_KEY"
        assert code_of(c, "DeleteRange", prefix="__plugin:counter:") == "PREFIX_CONFLICT"
        assert code_of(c, "DeleteRange", prefix="") == "PREFIX_CONFLICT"  # every key: plugins' too
        assert c.get("delp")["was_found"]
        r = c.request("DeleteRange", prefix="delp", limit=1)  # "delp" itself, the last key with that prefix
        assert (r["type"], r["deleted"], r["more"], r["revision"]) == (
            "DeleteRangeResult",
            1,
            False,
            before + 5,
        )


def _other(cluster: LocalCluster, leader: int) -> list[int]:
    return [i for i in cluster.nodes if i != leader]


def test_move_leader_under_writes_and_refusals(cluster: LocalCluster) -> None:
    leader = cluster.wait_leader()
    stop = threading.Event()
    written: list[int] = []

    def write_load() -> None:
        with cluster.client() as c:
            i = 0
            while not stop.is_set() and i < 100_000:
                try:
                    c.put(f"load/{i % 50}", b"x" * 100)
                    written.append(i)
                except AspenError:
                    pass  # an election in the middle: the move is what is tested
                i += 1

    writer = threading.Thread(target=write_load, daemon=True)
    writer.start()
    try:
        for target in [*_other(cluster, leader), leader]:
            r = cli(cluster, "cluster", "move-leader", str(target))
            assert (r.returncode, r.stdout, r.stderr) == (0, f"leader is node {target}\n", "")
            assert cluster.wait_leader() == target
    finally:
        stop.set()
        writer.join(30)
    assert written, "the write load never got a write in"
    # Already the leader: nothing to do.
    assert cli(cluster, "cluster", "move-leader", str(leader)).returncode == 0
    r = cli(cluster, "cluster", "move-leader", "9")
    assert r.returncode == 1 and r.stderr == "error: NOT_FOUND: node 9 is not a member (members: 1, 2, 3)\n"
    r = cli(cluster, "cluster", "move-leader", "x")
    assert r.returncode == 2 and "invalid int value" in r.stderr
    with cluster.client() as c:
        for bad in (0, -1, "2", None, True):
            assert code_of(c, "MoveLeader", node_id=bad) == "INVALID_REQUEST"
    down = _other(cluster, leader)[0]
    cluster.kill(down)
    r = cli(cluster, "cluster", "move-leader", str(down))
    assert r.returncode == 3 and r.stderr.startswith(f"error: UNAVAILABLE: node {down} is not connected"), (
        r.stderr
    )
    assert cluster.wait_leader() == leader


def _snapshot_cli(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(cluster, "snapshot", *args)


def test_snapshot_save_restore(cluster: LocalCluster, tmp_path: Path) -> None:
    leader = cluster.wait_leader()
    follower = _other(cluster, leader)[0]
    big = os.urandom(1024 * 1024)
    with cluster.client() as c:
        for i in range(5):  # over 4 MiB: the file comes in more than one chunk
            c.put(f"snap/big{i}", big)
        c.put("snap/text", "hello")
        c.put("snap/gone", b"x")
        c.delete("snap/gone")
        text = c.get("snap/text")
    file = tmp_path / "backup.snap"
    r = _snapshot_cli(cluster, "save", str(file), "--node", str(follower), "--json")
    assert r.returncode == 0, r.stderr
    saved = json.loads(r.stdout)
    assert (
        saved["node_id"] == follower and saved["size_bytes"] == file.stat().st_size > SNAPSHOT_CHUNK_MAX_BYTES
    )
    assert (
        saved["revision"] == text["mod_revision"] + 2
        and saved["keys"] == 6
        and oct(file.stat().st_mode)[-3:] == "600"
    )
    assert not (tmp_path / "backup.snap.part").exists()
    r = _snapshot_cli(cluster, "status", str(file))
    assert r.returncode == 0 and f"ok, revision {saved['revision']}, 6 keys" in r.stdout, r.stdout
    # A changed byte or a cut file: refused with its code, by status and by a restore alike.
    data = file.read_bytes()
    flipped, cut = tmp_path / "flipped.snap", tmp_path / "cut.snap"
    flipped.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    cut.write_bytes(data[: len(data) // 2])
    for bad in (flipped, cut, tmp_path / "missing.snap"):
        r = _snapshot_cli(cluster, "status", str(bad))
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("error: SNAPSHOT_CORRUPT: " if bad.exists() else "error: IO_ERROR: "), (
            r.stderr
        )
    up = subprocess.run(
        [str(BIN / "aspen-cluster"), "up", "--dir", str(tmp_path / "bad"), "--restore", str(flipped)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 1 and up.stderr.startswith("error: SNAPSHOT_CORRUPT: "), up.stderr
    # The chunk protocol's bounds.
    with cluster.client() as c:
        begin = c.request("SnapshotBegin")
        sid = begin["snapshot_id"]
        assert (
            code_of(c, "SnapshotChunk", snapshot_id=sid, offset=begin["size_bytes"] + 1) == "INVALID_REQUEST"
        )
        assert code_of(c, "SnapshotChunk", snapshot_id=sid, offset=0, limit_bytes=0) == "INVALID_REQUEST"
        assert (
            code_of(c, "SnapshotChunk", snapshot_id=sid, offset=0, limit_bytes=SNAPSHOT_CHUNK_MAX_BYTES + 1)
            == "INVALID_REQUEST"
        )
        assert code_of(c, "SnapshotChunk", snapshot_id="0" * 32, offset=0) == "NOT_FOUND"
        assert code_of(c, "SnapshotChunk", offset=0) == "INVALID_REQUEST"
        assert len(c.request("SnapshotChunk", snapshot_id=sid, offset=0, limit_bytes=10)["data"]) == 10
        for _ in range(SNAPSHOTS_HELD_MAX):  # newer snapshots push the oldest out
            c.request("SnapshotBegin")
        assert code_of(c, "SnapshotChunk", snapshot_id=sid, offset=0) == "NOT_FOUND"
    # A new cluster from the file: every key, version and revision as saved.
    with LocalCluster(tmp_path / "restored") as restored:
        restored.up(3, restore=file)
        with restored.client() as c:
            for i in range(5):
                assert c.get(f"snap/big{i}")["value"] == big
            again = c.get("snap/text")
            assert {k: again[k] for k in ("value", "version", "create_revision", "mod_revision")} == {
                k: text[k] for k in ("value", "version", "create_revision", "mod_revision")
            }
            assert not c.get("snap/gone")["was_found"]
            assert c.put("snap/after", b"y")["revision"] == saved["revision"] + 1
            # Each member is found at its own address (the saved registry is dropped: test_restore_file.py).
            registry = restored.status_of(1)
            assert registry is not None and {n["node_id"]: n["client_addr"] for n in registry["nodes"]} == {
                i: spec.client_addr for i, spec in restored.nodes.items()
            }
        for node_id in restored.nodes:  # each member holds it on its own
            with restored.client([node_id], discover_leader=False) as one:
                assert _eventually(lambda one=one: one.get("snap/after", stale=True)["was_found"]), node_id
        restored.stop(1)
        # A data dir that holds a Raft log is never overwritten by a restore.
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "aspen.node",
                "--data-dir",
                str(restored.data_dir(1)),
                "--restore",
                str(file),
                "--listen",
                "127.0.0.1:1",
                "--raft",
                "127.0.0.1:2",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode != 0 and "already holds one" in r.stderr and "Traceback" not in r.stderr, r.stderr


def _eventually(check: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False
