"""ReplicatedNode: the state machine, the blob store and pysyncobj, put together.

Threads: pysyncobj applies entries on its own thread; the node's event loop proposes and
reads. One lock guards the state machine, taken for a whole entry on apply and for each
read, so a reader never sees half of a batch.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import msgpack
from pysyncobj import FAIL_REASON

from cluster import node_registry
from cluster.blobsync import BlobSync
from cluster.config import RaftConfig
from cluster.errors import ClusterCode, ClusterError
from cluster.events import ClusterEvent, EventBus
from cluster.journal import DurabilityLost, SyncTimes
from cluster.proposer import Proposer, failure_error
from cluster.raft import RaftCore, SnapshotFile
from storage import snapshot as state_snapshot
from storage.blobs import BlobStore
from storage.errors import StorageCode
from storage.state import StateMachine
from wire.deadline import with_deadline

log = logging.getLogger("aspen.cluster")

T = TypeVar("T")
FetchBlob = Callable[[int, str], Awaitable[bytes]]

LEADER_POLL_PERIOD_S = 0.05
SNAPSHOT_LOADED = "cluster.snapshot_loaded"
UNPACK_LIMITS = {"max_bin_len": 64 * 1024 * 1024, "max_str_len": 16 * 1024 * 1024}


class ReplicatedNode:
    def __init__(self, cfg: RaftConfig, blobs: BlobStore, fetch_blob: FetchBlob) -> None:
        self.cfg = cfg
        self.node_id = cfg.node_id
        self.blobs = blobs
        self.events = EventBus()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._state = StateMachine()
        self._applied_index = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._waiter_seq = itertools.count()
        self._addr_to_id: dict[str, int] = {cfg.raft_addr: cfg.node_id}
        self._addr_to_id.update({addr: nid for nid, addr in cfg.peers.items()})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._raft: RaftCore | None = None
        self._proposer: Proposer | None = None
        self._reads_this_turn: list[asyncio.Future[int]] = []  # read_index, one request per loop turn
        self._leader_task: asyncio.Task[None] | None = None
        # Set when the journal's fdatasync failed (fail-stop, cluster/raft.py): whoever runs
        # this node stops it (aspen/node.py's serve exits with EXIT_STORAGE_FAILED).
        self.failure: DurabilityLost | None = None
        self.failed = asyncio.Event()
        self._last_leader: int | None = None
        self._last_members: frozenset[str] | None = None
        self.blob_sync = BlobSync(
            node_id=cfg.node_id,
            store=blobs,
            fetch=fetch_blob,
            holders_of=self._holders_of,
            record_holder=self._record_blob_holder,
            missing=self._missing_blobs,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.blob_sync.start(loop)
        snapshot = SnapshotFile(self._dump_state, self._load_state)
        self._raft = RaftCore(self.cfg, self._apply, snapshot, on_read_index=self._on_read_index,
                              on_applied=self._on_log_applied, on_durability_lost=self._on_durability_lost)
        raft = self._raft
        self._proposer = Proposer(
            loop,
            raft.submit,
            entries_in_flight_max=self.cfg.entries_in_flight_max,
            entry_ops_max=self.cfg.entry_ops_max,
            entry_bytes_max=self.cfg.entry_bytes_max,
            entry_max_bytes=self.cfg.entry_max_bytes,
            pending_ops_max=self.cfg.pending_ops_max,
        )
        self._leader_task = loop.create_task(self._watch_leader())

    async def stop(self) -> None:
        if self._leader_task is not None:
            self._leader_task.cancel()
        await self.blob_sync.stop()
        if self._proposer is not None:
            self._proposer.fail_all(
                ClusterError(ClusterCode.UNAVAILABLE, "node is shutting down", applied="no")
            )
        if self._raft is not None:
            raft = self._raft
            self._raft = None
            await asyncio.get_running_loop().run_in_executor(None, raft.destroy_synchronous)

    # -- apply (pysyncobj thread) ----------------------------------------------------------

    def _apply(self, payload: bytes, index: int, term: int) -> tuple[int, list[Any]]:
        try:
            ops = msgpack.unpackb(payload, raw=False, **UNPACK_LIMITS)
            if not isinstance(ops, list):
                raise ValueError("entry is not an array of ops")
        except Exception as exc:  # a corrupt entry must not stop the node
            log.error("log entry %d is not decodable: %s", index, exc)
            return index, []
        with self._lock:
            results, events = self._state.apply_ops(ops, index, term)
            self._applied_index = index
        self.events.publish(events)
        for op, result in zip(ops, results, strict=False):
            if op and op[0] == "blob_add" and result[0] == "ok":
                self.blob_sync.notice(op[1])
        if self._waiters:
            self._wake_waiters(index)
        return index, results

    def _on_log_applied(self, index: int) -> None:
        """pysyncobj's thread: the log is applied up to `index`, entries of its own included."""
        if index > self._applied_index:
            with self._lock:
                self._applied_index = max(self._applied_index, index)
        if self._waiters:
            self._wake_waiters(index)

    def _wake_waiters(self, index: int) -> None:
        ready: list[asyncio.Future[None]] = []
        with self._waiters_lock:
            while self._waiters and self._waiters[0][0] <= index:
                ready.append(heapq.heappop(self._waiters)[2])
        if ready and self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve_all, ready)

    def _dump_state(self) -> bytes:
        if os.getpid() != self._pid:
            # In pysyncobj's forked snapshot child: the only thread there, forked by the tick
            # thread between two applies, so the state is whole; a lock some other thread held
            # at the fork would stay held forever here.
            return state_snapshot.dump(self._state)
        with self._lock:
            return state_snapshot.dump(self._state)

    def _load_state(self, data: bytes) -> None:
        state = state_snapshot.load(data)
        with self._lock:
            self._state = state
            self._applied_index = state.applied_index
        # The state jumped without commit events: who keeps a history of them (aspen/watch.py)
        # must know it has a gap up to this revision.
        self.events.publish([ClusterEvent(SNAPSHOT_LOADED, None, state.applied_index, 0, state.revision)])
        self.blob_sync.reconcile_soon()

    # -- writes and reads (event loop) -----------------------------------------------------

    def propose(self, op: list[Any]) -> asyncio.Future[Any]:
        """Future of (result, index); result is ("ok", dict) or ("err", code, message, details)."""
        if self._proposer is None:
            raise ClusterError(ClusterCode.UNAVAILABLE, "node is not started", applied="no")
        return self._proposer.propose(op)

    async def barrier(self, timeout_s: float) -> None:
        """Linearizable-read barrier: ReadIndex (cluster/readindex.py), then wait until this
        node has applied up to the confirmed index. No log entry, no fsync."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        index = await self.read_index(timeout_s)
        await self.wait_applied(index, max(0.001, deadline - loop.time()))

    async def read_index(self, timeout_s: float) -> int:
        self.raft_core()  # raises when not started
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        # The reads of one loop turn (a burst from 64 clients, say) ask for one read index
        # together: one round of pings for all, where the first used to start a round alone.
        if not self._reads_this_turn:
            loop.call_soon(self._request_reads)
        self._reads_this_turn.append(fut)
        return await with_deadline(fut, timeout_s, partial(ClusterError, ClusterCode.TIMEOUT,
                                                            f"read index not confirmed within {timeout_s}s"))

    def _request_reads(self) -> None:
        futures, self._reads_this_turn = self._reads_this_turn, []
        futures = [f for f in futures if not f.done()]  # timed out or cancelled meanwhile
        if not futures:
            return
        try:
            if self.raft_core().request_reads(futures):
                return
            error = ClusterError(ClusterCode.OVERLOADED, "too many linearizable reads waiting; retry later")
        except ClusterError as refused:  # the node is stopping (its disk failed)
            error = refused
        for fut in futures:
            fut.set_exception(error)

    def _on_durability_lost(self, exc: DurabilityLost) -> None:
        # pysyncobj's thread, once. `failure` at once: a stop in progress reads it after the
        # tick thread is done (aspen/node.py's serve); the event wakes the loop.
        self.failure = exc
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.failed.set)

    def _on_read_index(self, results: list[tuple[Any, int | None, str | None]]) -> None:
        # pysyncobj's thread: one hand-over to the loop per confirmed batch, not per read.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(_settle_reads, results)

    async def wait_applied(self, index: int, timeout_s: float) -> None:
        if self._applied_index >= index:
            return
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        with self._waiters_lock:
            heapq.heappush(self._waiters, (index, next(self._waiter_seq), fut))
        if self._applied_index >= index:  # applied between the check and the push
            self._wake_waiters(self._applied_index)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise ClusterError(
                ClusterCode.TIMEOUT, f"index {index} not applied within {timeout_s}s"
            ) from None

    def read(self, fn: Callable[[StateMachine], T]) -> T:
        with self._lock:
            return fn(self._state)

    # -- cluster state ---------------------------------------------------------------------

    @property
    def applied_index(self) -> int:
        return self._applied_index

    def is_leader(self) -> bool:
        return self._raft is not None and self._raft.is_leader()

    def leader_id(self) -> int | None:
        raft = self._raft
        leader = raft.leader_address() if raft is not None else None
        if leader is None:
            return None
        return self.node_id_of(leader)

    def node_id_of(self, raft_addr: str) -> int | None:
        nid = self._addr_to_id.get(raft_addr)
        if nid is None:
            nid = self.read(lambda s: node_registry.node_id_of(s, raft_addr))
            if nid is not None:
                self._addr_to_id[raft_addr] = nid
        return nid

    def journal_sync_times(self) -> SyncTimes:
        """How long this node's Raft journal fdatasyncs took (the metrics' histogram)."""
        return self.raft_core().journal_sync_times()

    def status(self) -> dict[str, Any]:
        raft = self._raft
        if raft is None:
            raise ClusterError(ClusterCode.UNAVAILABLE, "node is not started")
        st = raft.raft_status()
        members: list[dict[str, Any]] = [
            {"raft_addr": self.cfg.raft_addr, "node_id": self.node_id, "connected": True, "self": True}
        ]
        for addr, peer in st.peers.items():
            member: dict[str, Any] = {"raft_addr": addr, "node_id": self.node_id_of(addr),
                                      "connected": peer.connected, "self": False}
            if st.role == "leader":  # the leader's replication progress for each member
                member["next_index"] = peer.next_index
                member["match_index"] = peer.match_index
            members.append(member)
        return {
            "node_id": self.node_id,
            "leader_id": self.leader_id(),
            "role": st.role,
            "term": st.term,
            "commit_index": st.commit_index,
            "applied_index": self._applied_index,
            "has_quorum": st.has_quorum,
            "log_len": st.log_len,
            "members": members,
        }

    # -- membership (one change at a time, on the leader) ---------------------------------

    async def change_membership(self, action: str, raft_addr: str, timeout_s: float) -> None:
        """Add or remove a member through pysyncobj's dynamic membership (a log entry)."""
        raft = self.raft_core()
        if not raft.is_leader():
            raise ClusterError(ClusterCode.NOT_LEADER, "membership changes are made on the leader",
                             leader_id=self.leader_id())
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()

        def done(_: Any, err: int) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(err))

        if action == "add":
            raft.addNodeToCluster(raft_addr, callback=done)
        else:
            raft.removeNodeFromCluster(raft_addr, callback=done)
        try:
            err = await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise ClusterError(ClusterCode.TIMEOUT, f"{action} {raft_addr} not committed within {timeout_s}s",
                             applied="unknown") from None
        if err == FAIL_REASON.REQUEST_DENIED:
            raise ClusterError(
                ClusterCode.MEMBERSHIP_CHANGE_IN_PROGRESS,
                f"pysyncobj refused to {action} {raft_addr}: another membership change has not committed yet "
                f"(or the node is already {'a member' if action == 'add' else 'gone'}); retry when it has",
            )
        if err != FAIL_REASON.SUCCESS:
            raise failure_error(err)

    async def transfer_leadership(self, timeout_s: float) -> int:
        """Hand leadership to the most caught-up follower; returns the new leader's id.

        pysyncobj only transfers to a follower whose log matches the leader's to the last
        entry, which under write load holds only for moments: retry, bounded by timeout_s.
        """
        raft = self.raft_core()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        err = FAIL_REASON.REQUEST_DENIED
        # As for move-leader: no new entries while a follower catches up and wins the election.
        raft.hold_appends(timeout_s)
        try:
            while loop.time() < deadline and raft.is_leader():
                fut: asyncio.Future[int] = loop.create_future()
                raft.transferLeadership(callback=lambda _res, e, fut=fut: loop.call_soon_threadsafe(
                    lambda: fut.done() or fut.set_result(e)))
                err = await asyncio.wait_for(fut, max(0.1, deadline - loop.time()))
                if err == FAIL_REASON.SUCCESS:
                    break
                await asyncio.sleep(0.005)
            while loop.time() < deadline:
                leader = self.leader_id()
                if leader is not None and leader != self.node_id:
                    return leader
                await asyncio.sleep(0.02)
        finally:
            raft.release_appends()
        raise ClusterError(
            ClusterCode.UNAVAILABLE, f"leadership transfer did not happen (pysyncobj reason {err}); retry"
        )

    async def transfer_leadership_to(self, target_id: int, timeout_s: float) -> None:
        """Make node target_id the leader (etcd's move-leader), from the leader.

        Raft's TimeoutNow, through pysyncobj's transferLeadership(node): the leader sends it
        only once the target's log matches its own to the last entry (else REQUEST_DENIED),
        so the target wins the election it starts at once. Under write load that match holds
        for moments only: ask again, bounded by timeout_s. Success is the target seen as
        leader; another node winning instead (the target crashed meanwhile) is an error."""
        raft = self.raft_core()
        if not raft.is_leader():
            raise ClusterError(ClusterCode.NOT_LEADER, "move-leader is made on the leader",
                               leader_id=self.leader_id())
        members = self.status()["members"]
        target = next((m for m in members if m["node_id"] == target_id), None)
        if target is None:
            known = ", ".join(str(nid) for nid in sorted(m["node_id"] or 0 for m in members))
            raise ClusterError(ClusterCode.NOT_FOUND, f"node {target_id} is not a member (members: {known})")
        if target["self"]:
            return  # already the leader: nothing to move
        if not target["connected"]:
            raise ClusterError(
                ClusterCode.UNAVAILABLE,
                f"node {target_id} is not connected to the leader (down or "
                "partitioned): it could not win an election now",
            )
        # No new entries while the target catches up and campaigns: else under write load the
        # other follower is often ahead of the target, refuses its vote, and the election fails
        # (moves under a write loop often timed out or elected another node before).
        raft.hold_appends(timeout_s)
        try:
            await self._move_leadership(raft, target_id, target["raft_addr"], timeout_s)
        finally:
            raft.release_appends()

    async def _move_leadership(
        self, raft: RaftCore, target_id: int, target_addr: str, timeout_s: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # A TimeoutNow that was sent but lost (or a target that lost its vote) is sent again
        # once an election should have been over.
        resend_after_s = 2 * self.cfg.election_max_timeout_s
        sent_at: float | None = None
        err = FAIL_REASON.REQUEST_DENIED
        while loop.time() < deadline:
            leader = self.leader_id()
            if leader == target_id:
                return
            if leader is not None and leader != self.node_id:
                raise ClusterError(
                    ClusterCode.UNAVAILABLE, f"node {leader} was elected instead of node {target_id}; retry"
                )
            if raft.is_leader() and (sent_at is None or loop.time() - sent_at > resend_after_s):
                fut: asyncio.Future[int] = loop.create_future()
                raft.transferLeadership(
                    target_addr,
                    callback=lambda _r, e, fut=fut: loop.call_soon_threadsafe(
                        lambda: fut.done() or fut.set_result(e)
                    ),
                )
                try:
                    err = await asyncio.wait_for(fut, max(0.1, deadline - loop.time()))
                except TimeoutError:
                    break
                if err == FAIL_REASON.SUCCESS:
                    sent_at = loop.time()
            await asyncio.sleep(0.01)  # denied: the target is catching up, its next ack may match
        raise ClusterError(
            ClusterCode.TIMEOUT,
            f"node {target_id} did not become leader within {timeout_s}s (pysyncobj reason {err}); retry",
        )

    def raft_core(self) -> RaftCore:
        if self._raft is None:
            raise ClusterError(ClusterCode.UNAVAILABLE, "node is not started")
        return self._raft

    async def _watch_leader(self) -> None:
        # pysyncobj has no leader-change callback for followers, so poll (cheap: attribute reads).
        while True:
            leader = self.leader_id()
            if leader is not None and leader != self._last_leader:
                self._last_leader = leader
                raft = self._raft
                term = raft.raftCurrentTerm if raft is not None else 0
                log.info("leader is node %s (term %s)", leader, term)
                self.events.publish(
                    [ClusterEvent("cluster.leader_elected", str(leader), self._applied_index, term)]
                )
                self.blob_sync.reconcile_soon()
            self._watch_members()
            await asyncio.sleep(LEADER_POLL_PERIOD_S)

    def _watch_members(self) -> None:
        """Publish cluster.membership_changed on every node when its member set changes
        (pysyncobj applies membership entries internally, with no callback on followers)."""
        raft = self._raft
        if raft is None:
            return
        members = frozenset(raft.raft_status().peers) | {self.cfg.raft_addr}
        if self._last_members is not None and members != self._last_members:
            log.info("members are now %s", ", ".join(sorted(members)))
            self.events.publish(
                [
                    ClusterEvent(
                        "cluster.membership_changed",
                        ",".join(sorted(members)),
                        self._applied_index,
                        raft.raftCurrentTerm,
                    )
                ]
            )
            self.blob_sync.reconcile_soon()
        self._last_members = members

    # -- blob bookkeeping for BlobSync -----------------------------------------------------

    def _holders_of(self, blob_hash: str) -> list[int]:
        record = self.read(lambda s: s.blob_record(blob_hash))
        if record is None:
            return []
        return sorted(record.holders)

    def _missing_blobs(self) -> list[str]:
        records = self.read(lambda s: list(s.blob_records()))
        return [h for h, rec in records if self.node_id not in rec.holders or not self.blobs.has(h)]

    async def _record_blob_holder(self, blob_hash: str, size: int) -> None:
        result, _ = await self.propose(["blob_add", blob_hash, size, self.node_id])
        if result[0] != "ok":
            raise ClusterError(StorageCode(result[1]), result[2])


def _settle_reads(results: list[tuple[asyncio.Future[int], int | None, str | None]]) -> None:
    for fut, index, error in results:
        if fut.done():  # timed out meanwhile
            continue
        if index is None:
            fut.set_exception(ClusterError(ClusterCode.UNAVAILABLE, error or "read index refused"))
        else:
            fut.set_result(index)


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)
