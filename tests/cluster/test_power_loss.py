"""A power loss of the whole cluster: every acknowledged write survives, because the log is
fsynced before any acknowledgement (cluster/journal.py, RaftCore._make_durable).

A SIGKILL keeps the page cache, so killing processes alone proves nothing about fsync. The nodes
run with --test-synced-shadow: every Raft file gets a `<name>.synced` twin holding exactly the
bytes that were fsynced. After SIGKILLing every node at once the test puts the twins in place
of the real files (what a power loss would leave) and restarts. The same run with
--unsafe-no-fsync must lose writes, or the test could not fail.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from aspen.client import AsyncClient
from cluster.journal import SHADOW_SUFFIX
from deploy.launcher import LocalCluster
from wire.errors import AspenError

WRITERS = 32
RUN_S = 2.0


async def write_until(cluster: LocalCluster, stop: threading.Event, acked: dict[str, bytes]) -> None:
    client = AsyncClient(cluster.endpoints.split(","), cluster.cookie, 5.0)

    async def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            key, value = f"pl/{w}/{i}", os.urandom(64 + (i * 997) % 4000)
            try:
                await client.put(key, value)
            except (AspenError, OSError, TimeoutError):
                return  # the cluster is being killed
            acked[key] = value
            i += 1

    try:
        await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    finally:
        await client.close()


def power_loss(cluster: LocalCluster) -> None:
    """SIGKILL every node at once, then leave on disk only what was fsynced."""
    for spec in cluster.nodes.values():
        assert spec.pid is not None
        os.kill(spec.pid, signal.SIGKILL)
    for node_id in cluster.nodes:
        assert cluster._wait_dead(node_id, 10)
        raft_dir = cluster.data_dir(node_id) / "raft"
        for path in list(raft_dir.iterdir()):
            if path.name.endswith(SHADOW_SUFFIX):
                continue
            twin = path.with_name(path.name + SHADOW_SUFFIX)
            if twin.exists():
                os.replace(twin, path)
            else:
                path.unlink()  # never fsynced: a power loss takes it


def run(tmp_path: Path, node_args: list[str]) -> tuple[int, int]:
    """(acknowledged writes, how many of them are missing after the power loss)"""
    acked: dict[str, bytes] = {}
    with LocalCluster(tmp_path / "c", node_args=["--test-synced-shadow", *node_args]) as cluster:
        cluster.up(3)
        stop = threading.Event()
        thread = threading.Thread(target=lambda: asyncio.run(write_until(cluster, stop, acked)))
        thread.start()
        time.sleep(RUN_S)
        snapshot_of_acked = dict(acked)  # acknowledged before the power went
        power_loss(cluster)
        stop.set()
        thread.join(30)
        for node_id in cluster.nodes:
            cluster.start(node_id, "new")
        cluster.wait_leader(30)
        with cluster.client(timeout_s=20) as c:
            stored = {e["key"]: e["value"] for e in c.scan_all("pl/")}
        missing = 0
        for key, value in snapshot_of_acked.items():
            if key not in stored:
                missing += 1
            else:
                assert stored[key] == value, f"{key} came back with other bytes"
        return len(snapshot_of_acked), missing


def test_every_acknowledged_write_survives_a_power_loss(tmp_path: Path) -> None:
    acked, missing = run(tmp_path, [])
    print(f"fsync on: {acked} acknowledged writes, {missing} missing after the power loss")
    assert acked > 100
    assert missing == 0


def test_without_fsync_a_power_loss_loses_writes(tmp_path: Path) -> None:
    acked, missing = run(tmp_path, ["--unsafe-no-fsync"])
    print(f"--unsafe-no-fsync: {acked} acknowledged writes, {missing} missing after the power loss")
    assert acked > 100
    assert missing > 0, "nothing was lost without fsync: this test could not tell"


@pytest.mark.parametrize("mode", [0o022, 0o000])
def test_data_files_are_private_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    old = os.umask(mode)
    try:
        with LocalCluster(tmp_path / "c") as cluster:
            cluster.up(1)
            with cluster.client() as c:
                c.put("private", os.urandom(100))
                c.put_blob(b"blob bytes")
            data = cluster.data_dir(1)
            assert data.stat().st_mode & 0o777 == 0o700
            for path in data.rglob("*"):
                if path.name == "node.log":  # written by the launcher, not the node
                    continue
                perm = path.stat().st_mode & 0o777
                assert perm & 0o077 == 0, f"{path} is mode {oct(perm)}"
    finally:
        os.umask(old)
