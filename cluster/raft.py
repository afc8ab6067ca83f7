"""The pysyncobj member: one replicated method, snapshots in our own file format.

pysyncobj is the Raft engine (log, elections, replication, membership); this module only
adapts it. Every log entry is one msgpack-encoded batch of ops (group commit), applied by
the callable given at construction on pysyncobj's own thread.

Security: pysyncobj unpickles whatever arrives on its port. The transport is opened only with
`password` set, so every frame is Fernet-authenticated (HMAC) before anything is unpickled;
a peer without the cookie is disconnected at its first frame.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.monotonic import monotonic as raft_clock
from pysyncobj.node import TCPNode

from cluster.config import RaftConfig
from storage.durable import write_durably

log = logging.getLogger("aspen.cluster")
JOINING_MARKER = "joining"  # in the journal's directory while an empty member waits (RaftCore)

SNAPSHOT_MAGIC = b"ASPNSNAP"
SNAPSHOT_FORMAT_VERSION = 1

Applier = Callable[[bytes, int, int], Any]


class SnapshotFile:
    """Reads and writes pysyncobj's full dump as: magic, version, msgpack body.

    pysyncobj hands us (last entry, previous entry, cluster members) and expects them back;
    the state machine's own bytes come from `dump_state` and go to `load_state`.
    """

    def __init__(self, dump_state: Callable[[], bytes], load_state: Callable[[bytes], None]) -> None:
        self._dump_state = dump_state
        self._load_state = load_state

    def write(self, path: str, raft_data: tuple[Any, Any, Any]) -> None:
        last, prev, members = raft_data
        body = msgpack.packb(
            {
                "last": list(last),
                "prev": list(prev),
                "members": sorted(node.address for node in members),
                "state": self._dump_state(),
            },
            use_bin_type=True,
        )
        with open(path, "wb") as f:
            f.write(SNAPSHOT_MAGIC + bytes([SNAPSHOT_FORMAT_VERSION]) + body)
            f.flush()
            os.fsync(f.fileno())

    def read(self, path: str) -> tuple[Any, Any, Any]:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[: len(SNAPSHOT_MAGIC)] != SNAPSHOT_MAGIC or raw[len(SNAPSHOT_MAGIC)] != SNAPSHOT_FORMAT_VERSION:
            raise ValueError(f"{path}: not an Aspen snapshot of format {SNAPSHOT_FORMAT_VERSION}")
        body = msgpack.unpackb(raw[len(SNAPSHOT_MAGIC) + 1 :], raw=False)
        self._load_state(body["state"])
        last = tuple(body["last"])
        prev = tuple(body["prev"])
        return last, prev, {TCPNode(addr) for addr in body["members"]}


class RaftCore(SyncObj):
    def __init__(
        self,
        cfg: RaftConfig,
        applier: Applier,
        snapshot: SnapshotFile,
        on_state_changed: Callable[[int, int], None] | None = None,
    ) -> None:
        Path(cfg.journal_path).parent.mkdir(parents=True, exist_ok=True)
        conf = SyncObjConf(
            password=cfg.cookie,
            journalFile=str(cfg.journal_path),
            fullDumpFile=str(cfg.snapshot_path),
            serializer=snapshot.write,
            deserializer=snapshot.read,
            # Send each entry at once instead of waiting for the next heartbeat period
            # (~100 ms per write otherwise); batching is done by our proposer instead.
            appendEntriesUseBatch=False,
            raftMinTimeout=cfg.election_min_timeout_s,
            raftMaxTimeout=cfg.election_max_timeout_s,
            appendEntriesPeriod=cfg.heartbeat_period_s,
            connectionRetryTime=cfg.reconnect_period_s,
            connectionTimeout=max(1.0, cfg.election_max_timeout_s),
            dynamicMembershipChange=True,
            logCompactionMinEntries=cfg.compaction_min_entries,
            logCompactionMinTime=cfg.compaction_min_time_s,
            commandsQueueSize=cfg.commands_queue_max,
            onStateChanged=on_state_changed,
            # Serialization with a custom serializer never forks; keep it explicit.
            useFork=False,
        )
        self._applier = applier
        # An empty member of a cluster with data (RaftConfig.join_existing) does not campaign
        # until it has caught up with a leader. Decided before pysyncobj starts its tick thread
        # (inside __init__). "Empty" is no journal and no snapshot, on the first start only:
        # pysyncobj creates the journal at once, so a restart before catching up would look
        # like a member with data; the marker file keeps the wait across restarts until then.
        self._joining_marker = Path(cfg.journal_path).parent / JOINING_MARKER
        joining = cfg.join_existing and bool(cfg.peers)
        if joining and not Path(cfg.journal_path).exists() and not Path(cfg.snapshot_path).exists():
            write_durably(self._joining_marker, b"waiting to catch up with a leader before campaigning\n")
        self._await_leader = joining and self._joining_marker.exists()
        if self._await_leader:
            log.info("joining a cluster with data from an empty log: no campaigning until caught up with a leader")
        super().__init__(cfg.raft_addr, list(cfg.peers.values()), conf)

    def _onTick(self, timeToWait: float = 0.0) -> None:
        if self._await_leader:
            if self._caught_up():
                self._await_leader = False
                self._joining_marker.unlink(missing_ok=True)
                log.info("caught up with the leader at index %d: an ordinary member now", self.raftLastApplied)
            else:
                # Keep the election deadline ahead: no campaign. It still votes.
                self._SyncObj__raftElectionDeadline = raft_clock() + 3600  # type: ignore[attr-defined]
        super()._onTick(timeToWait)

    def _caught_up(self) -> bool:
        """A leader is heard, this member has applied up to what the leader says is committed,
        and that entry is of the leader's own term. The last part matters: a new leader holds
        entries of older terms that it has not counted as committed yet (its commit index
        starts from what it persisted), and only once an entry of its own term (the no-op it
        appends on election) is committed is everything before it committed, and here."""
        if self._SyncObj__raftLeader is None:  # type: ignore[attr-defined]
            return False
        commit = self._SyncObj__leaderCommitIndex  # type: ignore[attr-defined]
        if commit is None or self.raftLastApplied < commit:
            return False
        entries = self._SyncObj__getEntries(commit, 1)
        return bool(entries) and entries[0][2] == self.raftCurrentTerm

    # --- Raft's log-matching rule on followers -------------------------------------------
    #
    # pysyncobj's follower (SyncObj.__onMessageReceived, "append_entries") deletes every entry
    # after prevLogIdx whenever it holds more than that, then re-adds the message's entries,
    # even when they are the very entries it already has. After a leader rewinds nextIndex it
    # resends from an older index in size-bounded batches, so a batch (or heartbeat) shorter
    # than the follower's log made it drop entries it had already acknowledged, entries the
    # leader may have counted toward a commit. Raft truncates only on a conflict (same index,
    # different term) and keeps a matching tail. We get that by editing the message before
    # pysyncobj sees it (site-packages stays untouched: CI installs pysyncobj from PyPI).

    # prevLogIdx of the append_entries being handled whose matching tail must be kept, for the
    # duration of that one call only (pysyncobj handles messages on its single tick thread).
    _keep_tail_after: int | None = None

    def _SyncObj__onMessageReceived(self, node: Any, message: dict[str, Any]) -> None:
        base = super()._SyncObj__onMessageReceived  # type: ignore[misc]
        if not self._is_current_append_entries(message):
            base(node, message)
            return
        message = dict(message)  # never edit the transport's object
        if message.get("transmission") == "finish":
            # An entry of appendEntriesBatchSizeBytes (64 KiB) or more, which group commit
            # makes common, comes in chunks; the last one completes it. Reassemble it as
            # pysyncobj would (same authenticated bytes) so it gets the same matching below.
            # In pysyncobj's order: buffer the chunk first, then unpickle. The leader labels
            # chunks by the entry's size, not the pickle's (24 bytes longer), so an entry just
            # under a multiple of 64 KiB gets two "finish" chunks: the first fails to unpickle
            # (raised, as pysyncobj raises) and the second, appended to it, completes it.
            self._SyncObj__recvTransmission += message.pop("data")  # type: ignore[attr-defined]
            entry = pickle.loads(self._SyncObj__recvTransmission)  # type: ignore[attr-defined]
            self._SyncObj__recvTransmission = ""
            del message["transmission"]
            message["entries"] = [entry]
        elif "transmission" in message or "entries" not in message:
            base(node, message)  # an earlier chunk: pysyncobj only buffers it
            return
        entries = list(message["entries"])
        prev_idx, prev_term = message["prevLogIdx"], message["prevLogTerm"]
        ours = self._SyncObj__getEntries(prev_idx, len(entries) + 1)  # type: ignore[attr-defined]
        if not ours or ours[0][2] != prev_term:
            base(node, message)  # pysyncobj's own rejection (reset) path, unchanged
            return
        # Drop the leading entries we already hold with the same (index, term): by log
        # matching they are identical. What is left starts at the first conflict or past our
        # end, and there pysyncobj's "delete after prevLogIdx, append" is exactly Raft's rule.
        same = 0
        for theirs, mine in zip(entries, ours[1:], strict=False):
            if theirs[1] != mine[1] or theirs[2] != mine[2]:
                break
            same += 1
        if same:
            prev_idx, prev_term = entries[same - 1][1], entries[same - 1][2]
            message.update(entries=entries[same:], prevLogIdx=prev_idx, prevLogTerm=prev_term)
        if same < len(entries) or self._SyncObj__getCurrentLogIndex() <= prev_idx:  # type: ignore[attr-defined]
            base(node, message)
            return
        # Everything the message carries is already here and we hold more beyond it. That tail
        # is unverified by this message (it may even be stale, from an older term), so: keep it
        # (no delete, no rollback of membership changes in it; see _SyncObj__getEntries) but
        # never commit it on this message's word: Raft's commit is min(leaderCommit, index of
        # the last new entry). The success reply still names prev_idx + 1, the message's end.
        leader_commit = message["commit_index"]
        message["commit_index"] = min(leader_commit, prev_idx)
        self._keep_tail_after = prev_idx
        try:
            base(node, message)
        finally:
            self._keep_tail_after = None
        # What the leader says is committed, for pysyncobj's readiness check and status.
        self._SyncObj__leaderCommitIndex = leader_commit

    def _SyncObj__getEntries(
        self, fromIDx: int | None, count: int | None = None, maxSizeBytes: int | None = None
    ) -> Any:
        entries = super()._SyncObj__getEntries(fromIDx, count, maxSizeBytes)  # type: ignore[misc]
        if self._keep_tail_after is not None and fromIDx == self._keep_tail_after and count is None:
            # pysyncobj's follower reads "prevLogIdx onward" and truncates/rolls back whatever
            # follows prevLogIdx; showing it only the prevLogIdx entry keeps the matching tail
            # (and spares a false "truncating already-applied log entries" CRITICAL).
            return entries[:1]
        return entries

    def _is_current_append_entries(self, message: dict[str, Any]) -> bool:
        """An append_entries (entries, heartbeat or chunk) pysyncobj will act on; no snapshot."""
        return (
            message.get("type") == "append_entries"
            and "prevLogIdx" in message
            and message["term"] >= self.raftCurrentTerm
        )

    @replicated
    def apply_entry(self, payload: bytes) -> Any:
        # pysyncobj applies entries in order and bumps raftLastApplied after each one,
        # so the entry being applied is the next index.
        return self._applier(payload, self.raftLastApplied + 1, self.raftCurrentTerm)
