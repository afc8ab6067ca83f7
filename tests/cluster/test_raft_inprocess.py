"""Replication through real pysyncobj members on 127.0.0.1, three in one process.

The node-process tests (tests/node/) cover the same paths end to end; these pin down the
cluster layer itself: group commit, barrier reads on followers, events, the sealed port.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from cluster import RaftConfig, ReplicatedNode
from cluster import raft as raft_module
from cluster.errors import ClusterCode, ClusterError
from cluster.raft import RaftCore
from deploy.launcher import free_ports
from storage.blobs import BlobStore

COOKIE = "test-cookie-0123456789"


async def _no_fetch(node_id: int, blob_hash: str) -> bytes:
    raise ClusterError(ClusterCode.BLOB_NOT_FOUND, "in-process test has no peer transport")


async def make_cluster(tmp: Path, size: int = 3, node_class: type[ReplicatedNode] = ReplicatedNode,
                       **cfg_overrides: Any) -> list[ReplicatedNode]:
    ports = free_ports(size)
    addrs = {i + 1: f"127.0.0.1:{ports[i]}" for i in range(size)}
    nodes = []
    for nid, addr in addrs.items():
        cfg = RaftConfig(
            node_id=nid,
            raft_addr=addr,
            peers={k: v for k, v in addrs.items() if k != nid},
            data_dir=tmp / f"n{nid}",
            cookie=COOKIE,
            **cfg_overrides,
        )
        node = node_class(cfg, BlobStore(tmp / f"n{nid}" / "blobs"), _no_fetch)
        await node.start()
        nodes.append(node)
    await wait_leader(nodes)
    return nodes


async def wait_leader(nodes: list[ReplicatedNode], timeout_s: float = 10.0) -> ReplicatedNode:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leaders = [n for n in nodes if n.is_leader()]
        if len(leaders) == 1 and all(n.leader_id() == leaders[0].node_id for n in nodes):
            return leaders[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no leader elected")


async def leader_core(nodes: list[ReplicatedNode]) -> tuple[ReplicatedNode, RaftCore]:
    leader = await wait_leader(nodes)
    raft = leader._raft
    assert raft is not None
    return leader, raft


async def stop_all(nodes: list[ReplicatedNode]) -> None:
    for n in nodes:
        await n.stop()


def test_group_commit_replicates_and_followers_read_linearizably(tmp_path: Path) -> None:
    async def run() -> None:
        nodes = await make_cluster(tmp_path)
        try:
            leader = await wait_leader(nodes)
            follower = next(n for n in nodes if n is not leader)
            # 200 concurrent writes through a follower (forwarded) and the leader.
            futs = [leader.propose(["put", f"k{i}", b"v%d" % i]) for i in range(100)]
            futs += [follower.propose(["put", f"f{i}", b"w%d" % i]) for i in range(100)]
            results = await asyncio.wait_for(asyncio.gather(*futs), 20)
            assert all(r[0][0] == "ok" for r in results)
            revisions = sorted(r[0][1]["revision"] for r in results)
            assert revisions == list(range(revisions[0], revisions[0] + 200))
            # Fewer entries than ops: writes were grouped.
            assert leader._proposer is not None and leader._proposer.entries_submitted < 100
            for node in nodes:
                await node.barrier(10)
                assert node.read(lambda s: s.get("f99")).value == b"w99"
            hashes = {n.read(lambda s: s.state_hash()) for n in nodes}
            assert len(hashes) == 1
        finally:
            await stop_all(nodes)

    asyncio.run(run())


def test_commit_events_reach_subscribers_with_index(tmp_path: Path) -> None:
    async def run() -> None:
        nodes = await make_cluster(tmp_path)
        try:
            leader = await wait_leader(nodes)
            subs = [n.events.subscribe(maxlen=16) for n in nodes]
            await leader.propose(["put", "ev", b"1"])
            await leader.propose(["del", "ev"])
            for node in nodes:
                await node.barrier(10)
            for sub in subs:
                kinds = [(e.kind, e.key) for e in sub.drain() if e.kind.startswith("kv.")]
                assert kinds == [("kv.write_committed", "ev"), ("kv.delete_committed", "ev")]
            # Bounded: a subscriber that never drains loses events, counted.
            slow = leader.events.subscribe(maxlen=2)
            await asyncio.gather(*[leader.propose(["put", f"s{i}", b"x"]) for i in range(10)])
            assert slow.pending() == 2 and slow.dropped == 8
        finally:
            await stop_all(nodes)

    asyncio.run(run())


def test_followers_hear_a_commit_without_waiting_for_a_heartbeat(tmp_path: Path) -> None:
    """The leader no longer sends append_entries for every commit at once (the commit index
    rides on the next append); with no next write it goes alone within COMMIT_NOTICE_DELAY_S.
    Heartbeats here are 1 s apart: a follower left to wait for one would apply a write 0.5 s
    later on average, and all five within 0.25 s with chance 0.25^5."""
    async def run() -> None:
        nodes = await make_cluster(tmp_path, heartbeat_period_s=1.0, election_min_timeout_s=3.1,
                                   election_max_timeout_s=3.5)
        try:
            leader = await wait_leader(nodes, timeout_s=20)
            followers = [n for n in nodes if n is not leader]
            for i in range(5):
                await asyncio.sleep(0.3)  # no write in flight: nothing to ride on
                (_, index) = await leader.propose(["put", f"k{i}", os.urandom(64)])
                deadline = time.monotonic() + 0.25
                while time.monotonic() < deadline and min(f.applied_index for f in followers) < index:
                    await asyncio.sleep(0.005)
                assert [f.applied_index >= index for f in followers] == [True, True], f"write {i}"
        finally:
            await stop_all(nodes)

    asyncio.run(run())


def test_a_follower_read_after_a_write_does_not_wait_for_the_commit_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower's linearizable read waits to have applied up to the leader's read index; the
    leader sends the commit index it owes ahead of the answer. With the notice pushed out to
    30 s and heartbeats 1 s apart, a follower left to wait for either would take 0.5 s on
    average: five reads, each within 0.25 s, pass by luck with chance 0.25^5."""
    monkeypatch.setattr(raft_module, "COMMIT_NOTICE_DELAY_S", 30.0)

    async def run() -> None:
        nodes = await make_cluster(tmp_path, heartbeat_period_s=1.0, election_min_timeout_s=3.1,
                                   election_max_timeout_s=3.5)
        try:
            leader = await wait_leader(nodes, timeout_s=20)
            follower = next(n for n in nodes if n is not leader)
            for i in range(5):
                await asyncio.sleep(0.3)
                (_, index) = await leader.propose(["put", f"r{i}", os.urandom(64)])
                await asyncio.wait_for(follower.barrier(10), 0.25)
                assert follower.applied_index >= index
        finally:
            await stop_all(nodes)

    asyncio.run(run())


def test_a_write_is_appended_by_the_submitting_thread_when_the_tick_is_idle(tmp_path: Path) -> None:
    """RaftCore.submit appends and sends on the caller's thread when the tick lock is free
    (no wake-up of pysyncobj's thread on a write's path), and queues for the tick when it is
    held; both commit."""
    async def run() -> None:
        nodes = await make_cluster(tmp_path)
        try:
            _, raft = await leader_core(nodes)
            loop = asyncio.get_running_loop()

            def submit_and_count() -> tuple[int, asyncio.Future[Any]]:
                done: asyncio.Future[Any] = loop.create_future()
                before = len(raft._journal)
                entry = msgpack.packb([["put", "fast", os.urandom(32)]])
                raft.submit(entry, lambda res, err: loop.call_soon_threadsafe(done.set_result, err))
                return len(raft._journal) - before, done

            appended_at_once = 0
            for _ in range(20):
                await asyncio.sleep(0.02)
                grew, done = submit_and_count()
                appended_at_once += grew
                await asyncio.wait_for(done, 10)
            assert appended_at_once >= 10  # the tick thread is idle in poll most of the time

            raft.take_tick()  # the tick is busy: the write waits in pysyncobj's queue
            try:
                grew, done = submit_and_count()
                assert grew == 0
            finally:
                raft.release_tick()
            assert await asyncio.wait_for(done, 10) == 0  # FAIL_REASON.SUCCESS
        finally:
            await stop_all(nodes)

    asyncio.run(run())


def test_a_read_starts_its_round_on_the_requesting_thread_when_the_tick_is_idle(tmp_path: Path) -> None:
    """RaftCore.request_reads sends the ReadIndex pings itself when the tick lock is free and no
    round is in flight; with the lock held the reads queue for the tick. Both confirm."""
    async def run() -> None:
        nodes = await make_cluster(tmp_path)
        try:
            leader, raft = await leader_core(nodes)
            await leader.barrier(10)  # the leader's first commit of its term is behind us

            async def read_started_its_round() -> bool:
                rounds = raft._reads.rounds
                waiter = asyncio.ensure_future(leader.read_index(10))
                await asyncio.sleep(0)  # read_index runs up to its await
                await asyncio.sleep(0)  # and the turn's reads are requested
                started_now = raft._reads.rounds > rounds
                await waiter
                return started_now

            started = 0
            for _ in range(20):
                await asyncio.sleep(0.02)
                started += await read_started_its_round()
            assert started >= 10  # the tick thread is idle in poll most of the time
            raft.take_tick()
            try:
                rounds = raft._reads.rounds
                waiter = asyncio.ensure_future(leader.read_index(10))
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                assert raft._reads.rounds == rounds  # queued for the tick
            finally:
                raft.release_tick()
            assert await asyncio.wait_for(waiter, 10) >= 1
        finally:
            await stop_all(nodes)

    asyncio.run(run())


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # what an attacker would send to an open pysyncobj port
        return (os.system, (f"touch {self.path}",))


def test_raft_port_refuses_pickles_without_the_cookie(tmp_path: Path) -> None:
    async def run() -> None:
        nodes = await make_cluster(tmp_path)
        marker = tmp_path / "pwned"
        try:
            host, port = nodes[0].cfg.raft_addr.split(":")
            payload = pickle.dumps(_Exploit(str(marker)))
            import zlib

            for body in (payload, zlib.compress(payload)):
                with socket.create_connection((host, int(port)), timeout=2) as s:
                    s.sendall(struct.pack("i", len(body)) + body)
                    s.settimeout(2)
                    try:
                        s.recv(1024)
                    except OSError:
                        pass
            await asyncio.sleep(0.5)
            assert not marker.exists(), "a pickle from a peer without the cookie was executed"
            # And the cluster still works.
            leader = await wait_leader(nodes)
            result, _ = await leader.propose(["put", "after", b"ok"])
            assert result[0] == "ok"
        finally:
            await stop_all(nodes)

    asyncio.run(run())


def test_restart_replays_journal(tmp_path: Path) -> None:
    async def run() -> None:
        nodes = await make_cluster(tmp_path)
        leader = await wait_leader(nodes)
        await asyncio.gather(*[leader.propose(["put", f"r{i}", b"x"]) for i in range(50)])
        for n in nodes:
            await n.barrier(10)
        before = leader.read(lambda s: s.state_hash())
        cfgs = [n.cfg for n in nodes]
        await stop_all(nodes)
        again = []
        for cfg in cfgs:
            node = ReplicatedNode(cfg, BlobStore(cfg.data_dir / "blobs"), _no_fetch)
            await node.start()
            again.append(node)
        try:
            await wait_leader(again)
            for n in again:
                await n.barrier(10)
                assert n.read(lambda s: s.get("r49")) is not None
            assert {n.read(lambda s: s.state_hash()) for n in again} == {before}
        finally:
            await stop_all(again)

    asyncio.run(run())


@pytest.mark.parametrize("reason", [1, 2, 3, 5])
def test_failures_map_to_explicit_codes(reason: int) -> None:
    from cluster.proposer import failure_error

    err = failure_error(reason)
    assert err.code in ("OVERLOADED", "UNAVAILABLE")
    assert err.details["applied"] in ("no", "unknown")
