"""The pysyncobj member: one replicated method, snapshots in our own file format.

pysyncobj is the Raft engine (log, elections, replication, membership); this module only
adapts it. Every log entry is one msgpack-encoded batch of ops (group commit), applied by
the callable given at construction on pysyncobj's own thread.

What replaces pysyncobj's own parts: the transport (cluster/transport.py: bound to the
member's host, cookie-authenticated, sealed, msgpack frames, bounded before authentication),
the journal (cluster/journal.py: pysyncobj's format, fsynced once per tick before any
acknowledgement; see _make_durable) and the follower's log-matching rule (below).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.monotonic import monotonic as raft_clock
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _COMMAND_TYPE
from pysyncobj.version import VERSION as PYSYNCOBJ_VERSION

from cluster.config import RaftConfig
from cluster.errors import ClusterCode, ClusterError
from cluster.journal import Durability, DurabilityLost, DurableJournal, SyncTimes
from cluster.readindex import MESSAGE_TYPES as READ_MESSAGES
from cluster.readindex import ReadIndex, Ready
from cluster.transport import RaftTransport, TransportSettings, derive_key
from storage.durable import ensure_private_dir, fsync_dir, write_durably

log = logging.getLogger("aspen.cluster")

# RaftCore overrides and reads pysyncobj's private members; a release that renames one would
# fail at some later moment in a way that looks like a Raft bug. Refuse to import instead.
PYSYNCOBJ_WRITTEN_FOR = "0.3.17"
_PRIVATE_METHODS = ("_SyncObj__onMessageReceived", "_SyncObj__getEntries", "_SyncObj__sendNextNodeIdx",
                    "_SyncObj__onBecomeLeader", "_SyncObj__applyLogEntries", "_applyCommand", "_getFuncName",
                    "_isLeader", "_getLeader", "_checkCommandsToApply", "_SyncObj__sendAppendEntries",
                    "_doDestroy")
if PYSYNCOBJ_VERSION != PYSYNCOBJ_WRITTEN_FOR or not all(hasattr(SyncObj, m) for m in _PRIVATE_METHODS):
    raise ImportError(f"cluster/raft.py relies on pysyncobj {PYSYNCOBJ_WRITTEN_FOR}'s internals; "
                      f"pysyncobj {PYSYNCOBJ_VERSION} is installed (pyproject.toml pins the version)")
JOINING_MARKER = "joining"  # in the journal's directory while an empty member waits (RaftCore)

SNAPSHOT_MAGIC = b"ASPNSNAP"
SNAPSHOT_FORMAT_VERSION = 1

Applier = Callable[[bytes, int, int], Any]
# A command is pickle((method id, (payload,)), protocol 5) behind pysyncobj's type byte.
COMMAND_OVERHEAD_BYTES = 64
_REGULAR_TYPE_BYTE = bytes([_COMMAND_TYPE.REGULAR])
# How long a new commit index may wait for an append_entries to ride on (RaftCore, "telling the
# followers what is committed"): well under a heartbeat, over a client's turn-around.
COMMIT_NOTICE_DELAY_S = 0.002


_ROLES = {0: "follower", 1: "candidate", 2: "leader"}  # pysyncobj's _RAFT_STATE
# getStatus() names each member's entries by these prefixes and the member's address.
_PEER_CONNECTED, _PEER_NEXT_INDEX, _PEER_MATCH_INDEX = (
    "partner_node_status_server_", "next_node_idx_server_", "match_idx_server_")


@dataclass(frozen=True, slots=True)
class PeerStatus:
    connected: bool
    next_index: int | None  # the leader's replication progress for this member; None elsewhere
    match_index: int | None


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """pysyncobj's getStatus(), read once (RaftCore.raft_status)."""

    role: str  # "follower", "candidate", "leader" or "unknown"
    term: int
    commit_index: int
    has_quorum: bool
    log_len: int
    peers: dict[str, PeerStatus]  # by Raft address, the other voting members


class SnapshotFile:
    """Reads and writes pysyncobj's full dump as: magic, version, msgpack body.

    pysyncobj hands us (last entry, previous entry, cluster members) and expects them back;
    the state machine's own bytes come from `dump_state` and go to `load_state`.

    pysyncobj forks for a snapshot only with its own serializer, and calls a custom one on its
    tick thread, where dumping a large state stopped heartbeats for seconds. `write_in_child`
    (the serializer pysyncobj is given) forks itself: the child writes the whole file and
    renames it into place, the tick thread goes on at once, and `check` (pysyncobj's
    serializeChecker) reports the child's outcome; only then does pysyncobj compact the log.
    """

    def __init__(self, dump_state: Callable[[], bytes], load_state: Callable[[bytes], None]) -> None:
        self._dump_state = dump_state
        self._load_state = load_state
        self._child_pid = 0

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

    def write_in_child(self, tmp_path: str, raft_data: tuple[Any, Any, Any]) -> None:
        assert tmp_path.endswith(".tmp") and self._child_pid == 0
        final = tmp_path[: -len(".tmp")]
        # pysyncobj renames tmp_path over the snapshot as soon as this returns; with no such
        # file that step fails (and is ignored: `check` decides), so never leave one behind.
        Path(tmp_path).unlink(missing_ok=True)
        pid = os.fork()
        if pid == 0:  # the child: the tick thread's copy of the process, nothing else runs here
            code = 1
            try:
                # Not the parent's sockets: a connection the parent closes must close for its
                # peer now, not when this child exits.
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                # Below the node's own threads: on a small machine the dump must not take the
                # CPU the heartbeats need.
                os.nice(10)
                own_tmp = final + ".child.tmp"
                self.write(own_tmp, raft_data)
                os.replace(own_tmp, final)
                fsync_dir(Path(final).parent)
                code = 0
            finally:
                os._exit(code)
        self._child_pid = pid

    def check(self) -> int:
        if self._child_pid == 0:
            return SERIALIZER_STATE.NOT_SERIALIZING
        try:
            done, status = os.waitpid(self._child_pid, os.WNOHANG)
        except ChildProcessError:
            log.error("snapshot child %d was reaped by someone else: snapshot not confirmed", self._child_pid)
            self._child_pid = 0
            return SERIALIZER_STATE.FAILED
        if done == 0:
            return SERIALIZER_STATE.SERIALIZING
        self._child_pid = 0
        if os.waitstatus_to_exitcode(status) != 0:
            log.error("writing a snapshot failed (child exit status %d); the log is kept", status)
            return SERIALIZER_STATE.FAILED
        return SERIALIZER_STATE.SUCCESS

    def read(self, path: str) -> tuple[Any, Any, Any]:
        with open(path, "rb") as f:
            raw = f.read()
        if (
            raw[: len(SNAPSHOT_MAGIC)] != SNAPSHOT_MAGIC
            or raw[len(SNAPSHOT_MAGIC)] != SNAPSHOT_FORMAT_VERSION
        ):
            raise ValueError(f"{path}: not an Aspen snapshot of format {SNAPSHOT_FORMAT_VERSION}")
        body = msgpack.unpackb(raw[len(SNAPSHOT_MAGIC) + 1 :], raw=False)
        self._load_state(body["state"])
        last = tuple(body["last"])
        prev = tuple(body["prev"])
        return last, prev, {TCPNode(addr) for addr in body["members"]}


def write_initial_snapshot(path: Path, state: bytes, index: int, term: int, member_addrs: list[str]) -> None:
    """A Raft snapshot for a member that starts from a restored state instead of a log: the state
    at `index`, the two pysyncobj no-op entries it expects at the top of a snapshot, and the
    members. Written to a temporary file, fsynced, renamed in, the directory fsynced."""
    noop = bytes([_COMMAND_TYPE.NO_OP])
    members = {TCPNode(addr) for addr in member_addrs}
    ensure_private_dir(path.parent)
    tmp = path.with_suffix(".restore.tmp")
    SnapshotFile(lambda: state, lambda _state: None).write(  # fsyncs the file
        str(tmp), ((noop, index, term), (noop, index - 1, term), members))
    tmp.replace(path)
    fsync_dir(path.parent)


class _TickPoller:
    """pysyncobj's poller, changed in two ways. Its poll() lets go of RaftCore's tick lock while
    it waits (and every callback it runs takes the lock), so the event loop's thread can append
    and send a write itself meanwhile (RaftCore.submit). And poll() also returns when RaftCore
    owes the followers a message (RaftCore._commit_notice_due): pysyncobj picks the wait before
    the tick's work decides that."""

    def __init__(self, inner: Any, core: RaftCore) -> None:
        self._inner = inner
        self._core = core

    def subscribe(self, descr: int, callback: Callable[[int, int], None], event_mask: int) -> None:
        core = self._core

        def locked(descr: int, event: int) -> None:
            core.take_tick()
            try:
                callback(descr, event)
            finally:
                core.release_tick()

        self._inner.subscribe(descr, locked, event_mask)

    def unsubscribe(self, descr: int) -> None:
        self._inner.unsubscribe(descr)

    def poll(self, timeout: float) -> None:
        core = self._core
        due = core._commit_notice_due
        if due:
            timeout = max(0.0, min(timeout, due - raft_clock()))
        if not core.in_tick():
            self._inner.poll(timeout)
            return
        core.release_tick()
        try:
            self._inner.poll(timeout)
        finally:
            core.take_tick()


class RaftCore(SyncObj):
    def __init__(
        self,
        cfg: RaftConfig,
        applier: Applier,
        snapshot: SnapshotFile,
        on_state_changed: Callable[[int, int], None] | None = None,
        on_read_index: Ready | None = None,
        on_applied: Callable[[int], None] | None = None,
        on_durability_lost: Callable[[DurabilityLost], None] | None = None,
    ) -> None:
        journal_path, snapshot_path = Path(cfg.journal_path), Path(cfg.snapshot_path)
        self._on_durability_lost = on_durability_lost
        self._durability_lost: DurabilityLost | None = None
        fresh = not journal_path.exists() and not snapshot_path.exists()
        # Every file pysyncobj or we create here must be private: the journal holds every value.
        ensure_private_dir(journal_path.parent)
        self._journal = DurableJournal(
            journal_path, Durability(fsync=cfg.fsync, shadow=cfg.synced_shadow),
            version=PYSYNCOBJ_VERSION.encode(), sync_before_truncate=snapshot_path,
        )
        if not cfg.fsync:
            log.warning("--unsafe-no-fsync: the Raft log is NOT fsynced; a power loss of a majority "
                        "can lose acknowledged writes")
        self._held_acks: list[tuple[Any, dict[str, Any]]] = []
        self._entry_max_bytes = cfg.entry_max_bytes
        self._append_batch_bytes = cfg.append_batch_bytes
        # Read by RaftTransport, which pysyncobj constructs itself inside SyncObj.__init__.
        self.transport_settings = TransportSettings(
            key=derive_key(cfg.cookie),
            frame_max_bytes=2 * (cfg.entry_max_bytes + cfg.append_batch_bytes),
            send_buffer_max_bytes=4 * (cfg.entry_max_bytes + cfg.append_batch_bytes),
            idle_timeout_s=max(1.0, cfg.election_max_timeout_s),
            reconnect_period_s=cfg.reconnect_period_s,
        )
        conf = SyncObjConf(
            # The journal is ours (self._journal, see _SyncObj__raftLog); the transport is
            # ours too and does its own authentication and encryption.
            journalFile=None,
            password=None,
            fullDumpFile=str(snapshot_path),
            serializer=snapshot.write_in_child,
            serializeChecker=snapshot.check,
            deserializer=snapshot.read,
            # Send each entry at once instead of waiting for the next heartbeat period
            # (~100 ms per write otherwise); batching is done by our proposer instead.
            appendEntriesUseBatch=False,
            # pysyncobj splits an entry of this size or more into chunks it labels by the
            # entry's length instead of the bytes it sends, which stalled followers on binary
            # values; no entry reaches this size (submit() refuses it), so nothing is split:
            # the transport streams a large entry as one frame. Batches of entries are capped
            # at append_batch_bytes by _SyncObj__getEntries.
            appendEntriesBatchSizeBytes=cfg.entry_max_bytes + COMMAND_OVERHEAD_BYTES,
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
            # pysyncobj's own fork applies only to its own serializer; ours forks itself
            # (SnapshotFile.write_in_child).
            useFork=False,
        )
        self._applier = applier
        # An empty member of a cluster with data (RaftConfig.join_existing) does not campaign
        # until it has caught up with a leader. Decided before pysyncobj starts its tick thread
        # (inside __init__). "Empty" is no journal and no snapshot, on the first start only:
        # the journal exists from the first start on, so a restart before catching up would
        # look like a member with data; the marker file keeps the wait across restarts.
        self._joining_marker = journal_path.parent / JOINING_MARKER
        joining = cfg.join_existing and bool(cfg.peers)
        if joining and fresh:
            write_durably(self._joining_marker, b"waiting to catch up with a leader before campaigning\n")
        self._await_leader = joining and self._joining_marker.exists()
        if self._await_leader:
            log.info(
                "joining a cluster with data from an empty log: no campaigning until caught up with a leader"
            )
        self._tick_lock = threading.Lock()  # before SyncObj.__init__ makes the poller
        self._reads = ReadIndex(self, on_read_index or (lambda _results: None))
        self._on_applied = on_applied
        self._reported_applied = 0
        super().__init__(cfg.raft_addr, list(cfg.peers.values()), conf, transportClass=RaftTransport)
        # Also just before each tick's poll: the leader's entries appended during this tick go to
        # disk while they travel to the followers, not after their acknowledgements come back.
        self.addOnTickCallback(self._make_durable)
        self._apply_id: int = self._methodToID[self._getFuncName("apply_entry")]

    # pysyncobj keeps its log in self.__raftLog, built in SyncObj.__init__ from journalFile
    # (None: a MemoryJournal). This property puts our DurableJournal in its place.
    @property
    def _SyncObj__raftLog(self) -> DurableJournal:
        return self._journal

    @_SyncObj__raftLog.setter
    def _SyncObj__raftLog(self, _memory_journal: Any) -> None:
        pass

    # pysyncobj makes its poller in SyncObj.__init__; this wraps it (see _TickPoller).
    @property
    def _poller(self) -> _TickPoller:
        return self.__dict__["_tick_poller"]

    @_poller.setter
    def _poller(self, inner: Any) -> None:
        self.__dict__["_tick_poller"] = _TickPoller(inner, self)

    # --- the tick lock --------------------------------------------------------------------
    #
    # pysyncobj's state is its tick thread's. A write used to wait for that thread to wake
    # (a pipe, a thread switch, the GIL: 50-100 us on a loaded 2-core machine) before it was
    # appended and sent. Now the tick holds _tick_lock except while it waits in poll(), and
    # submit() on the event loop's thread, finding the lock free, appends and sends the
    # write itself; otherwise it queues it and wakes the tick as before. Whoever holds the
    # lock is the only thread in pysyncobj's state and the transport's links.

    _tick_owner = 0  # threading.get_ident() of the holder of _tick_lock; 0: nobody

    def in_tick(self) -> bool:
        return self._tick_owner == threading.get_ident()

    def take_tick(self) -> None:
        self._tick_lock.acquire()
        self._tick_owner = threading.get_ident()

    def try_take_tick(self) -> bool:
        """take_tick(), unless another thread holds the lock: then False at once."""
        if not self._tick_lock.acquire(blocking=False):
            return False
        self._tick_owner = threading.get_ident()
        return True

    def release_tick(self) -> None:
        self._tick_owner = 0
        self._tick_lock.release()

    def _doDestroy(self) -> None:
        # pysyncobj's tick thread closes the links and the journal outside a tick: not while
        # submit() sends on the event loop's thread.
        self.take_tick()
        try:
            super()._doDestroy()
        except DurabilityLost as exc:  # the journal's last sync, at a stop: still a failed disk
            self._lose_durability(exc)
        finally:
            self.release_tick()

    def submit(self, payload: bytes, callback: Callable[[Any, int], None]) -> None:
        """Propose one entry; callback(result, FAIL_REASON) on pysyncobj's thread.

        What @replicated would do, but pickled with protocol 5, which stores bytes as they
        are (pysyncobj's protocol 2 spells every byte >= 0x80 in two), so the log and the wire
        carry a binary value at its own size."""
        if len(payload) > self._entry_max_bytes:
            raise ValueError(f"log entry of {len(payload)} bytes is over {self._entry_max_bytes}")
        self._refuse_if_stopped()
        command = pickle.dumps((self._apply_id, (payload,)), protocol=5)
        if not self.try_take_tick():
            with contextlib.suppress(BlockingIOError):  # queued; only the wake-up pipe was full
                self._applyCommand(command, callback, _COMMAND_TYPE.REGULAR)
            return
        try:
            self._refuse_if_stopped()  # again, under the lock: the tick may have stopped meanwhile
            try:  # what _applyCommand does, but no wake-up: this thread does the tick's part
                self._SyncObj__commandsQueue.put_nowait((_REGULAR_TYPE_BYTE + command, callback))
            except queue.Full:
                callback(None, FAIL_REASON.QUEUE_FULL)
                return
            self._checkCommandsToApply()
        finally:
            self.release_tick()

    # -- ReadIndex (cluster/readindex.py): RaftView over pysyncobj's state, tick lock held ---

    def request_reads(self, tokens: list[Any]) -> bool:
        """Ask for a read index for each token, from any thread; `on_read_index` gets
        (token, index, error). False (nothing queued) when too many are pending.

        With the tick idle and no round of ReadIndex in flight, this thread starts the round
        itself (as submit() does a write). While one is in flight, reads queue for the tick,
        which starts one round for all of them: one round per read would multiply the pings."""
        self._refuse_if_stopped()
        if self._reads.idle() and self.try_take_tick():
            try:
                self._refuse_if_stopped()
                return self._reads.request_now(tokens)
            finally:
                self.release_tick()
        return self._reads.request(tokens)

    def is_leader(self) -> bool:
        return self._isLeader()

    def leader_address(self) -> str | None:
        """The last leader this member heard of (pysyncobj's view: it may be stale)."""
        leader = self._getLeader()
        return None if leader is None else leader.address

    def raft_status(self) -> RaftStatus:
        st = self.getStatus()
        peers = {
            key[len(_PEER_CONNECTED):]: PeerStatus(
                connected=value == 2,
                next_index=st.get(_PEER_NEXT_INDEX + key[len(_PEER_CONNECTED):]),
                match_index=st.get(_PEER_MATCH_INDEX + key[len(_PEER_CONNECTED):]),
            )
            for key, value in st.items() if key.startswith(_PEER_CONNECTED)
        }
        return RaftStatus(role=_ROLES.get(st["state"], "unknown"), term=st["raft_term"],
                          commit_index=st["commit_idx"], has_quorum=bool(st["has_quorum"]),
                          log_len=st["log_len"], peers=peers)

    def term(self) -> int:
        return self.raftCurrentTerm

    def commit_index(self) -> int:
        return self.raftCommitIndex

    def committed_in_own_term(self) -> bool:
        entries = self._SyncObj__getEntries(self.raftCommitIndex, 1)
        return bool(entries) and entries[0][2] == self.raftCurrentTerm

    def leader(self) -> Any:
        return self._SyncObj__raftLeader  # type: ignore[attr-defined]

    def voters(self) -> list[Any]:
        return list(self._SyncObj__otherNodes)  # type: ignore[attr-defined]

    def send(self, node: Any, message: dict[str, Any]) -> None:
        self._SyncObj__transport.send(node, message)  # type: ignore[attr-defined]

    def tell_commit_index(self) -> None:
        """Send the commit notice owed to the followers now (see _commit_notice_due)."""
        if self._commit_notice_due and self._isLeader():
            self._SyncObj__sendAppendEntries()

    def wake(self) -> None:
        notifier = getattr(self, "_SyncObj__pipeNotifier", None)  # made late in SyncObj.__init__
        if notifier is not None:
            with contextlib.suppress(BlockingIOError):  # a full pipe: the tick thread wakes anyway
                notifier.notify()

    # -- leadership transfer ----------------------------------------------------------------

    _appends_held_until = 0.0  # raft_clock(); set from the loop thread, read on the tick thread

    def hold_appends(self, timeout_s: float) -> None:
        """Append no command (this node's or one forwarded to it) for at most timeout_s, or
        until release_appends(): the commands wait in pysyncobj's bounded queue. etcd's leader
        drops proposals while it transfers leadership; here they wait instead, so the target
        can match the leader's log and win the election TimeoutNow starts."""
        self._appends_held_until = raft_clock() + timeout_s

    def release_appends(self) -> None:
        self._appends_held_until = 0.0
        self.wake()

    def _checkCommandsToApply(self) -> None:
        if raft_clock() < self._appends_held_until:
            return
        super()._checkCommandsToApply()

    # -- durability: group commit, once per tick -------------------------------------------

    def _make_durable(self) -> None:
        """fsync what this member appended since the last call, then send the acknowledgements
        held back meanwhile. Runs first in every tick, before pysyncobj counts the leader's own
        copy toward a commit, so neither a follower's ack nor the leader's own vote covers an
        entry that a power loss could take away; and last, before the tick's poll."""
        if self._journal.dirty:
            self._journal.sync()
        if self._held_acks:
            held, self._held_acks = self._held_acks, []
            send = super()._SyncObj__sendNextNodeIdx  # type: ignore[misc]
            for node, kwargs in held:
                send(node, **kwargs)

    def _SyncObj__sendNextNodeIdx(
        self, node: Any, reset: bool = False, nextNodeIdx: int | None = None, success: bool = False
    ) -> None:
        if nextNodeIdx is None:  # what pysyncobj would compute now, not at the later send
            nextNodeIdx = self._journal[-1][1] + 1
        if success:
            self._matched = (self.raftCurrentTerm, nextNodeIdx - 1)
        elif reset:
            nextNodeIdx = min(nextNodeIdx, self._agreed_index() + 1)
        if self._journal.dirty or self._held_acks:  # in order, behind the ones already held
            self._held_acks.append((node, {"reset": reset, "nextNodeIdx": nextNodeIdx, "success": success}))
            return
        super()._SyncObj__sendNextNodeIdx(node, reset=reset, nextNodeIdx=nextNodeIdx, success=success)  # type: ignore[misc]

    # --- where a rejected leader should resume ----------------------------------------------
    #
    # pysyncobj's follower answers a rejected append_entries with "resume at prevLogIdx" (its
    # entry there has another term) or "resume after my last entry" (it has no entry there).
    # The leader pipelines: one send round carries many 1 MiB batches, each rejected on its own,
    # and the last answer wins. A deposed leader holding stale entries of its own term, healed,
    # got "resume at k" for the first batch and "resume after my (stale) last entry" for every
    # later one, so the leader resumed past the conflict every round, and never repaired the
    # log (seen in the chaos suite: a node 35 s behind, links up, no error). With small values
    # the first answer only walked back one index per heartbeat (350 stale entries: 35 s).
    # Every rejection now names the same safe place: just after what this member knows it
    # shares with the current leader (its commit index, or the end of the last append_entries
    # of this term it accepted). Raft's log matching makes everything before it equal, and
    # RaftCore's handling above drops the entries it already holds when the leader resends.

    _matched: tuple[int, int] = (0, 0)  # (term, index): the last success answer this member sent

    def _agreed_index(self) -> int:
        term, index = self._matched
        agreed = self.raftCommitIndex
        if term == self.raftCurrentTerm:
            agreed = max(agreed, index)
        return agreed

    # --- telling the followers what is committed -------------------------------------------
    #
    # pysyncobj's leader sends append_entries to every follower as soon as it applies a commit,
    # only to carry the new commit index. On a loaded machine those sends, and the followers'
    # work on them (receive, apply, answer), ran exactly while the leader answered the client
    # whose write had just committed, and cost every write two more messages each way. The
    # index now rides on the next append_entries when one follows within COMMIT_NOTICE_DELAY_S
    # (the next write, under load), and goes alone at that deadline otherwise. Only the
    # followers' view waits: a commit is decided on the leader, and a follower's linearizable
    # read gets the notice ahead of its read index (tell_commit_index).

    _commit_notice_due = 0.0  # raft_clock() by which followers must hear the commit index; 0: none owed

    def _SyncObj__applyLogEntries(self) -> bool:
        need_send = super()._SyncObj__applyLogEntries()  # type: ignore[misc]
        # pysyncobj's own entries (its no-ops, membership changes) never reach our applier, but
        # a read index may name one: report how far the log is applied, whatever it held.
        applied = self.raftLastApplied
        if applied > self._reported_applied and self._on_applied is not None:
            self._reported_applied = applied
            self._on_applied(applied)
        # Followers report need_send too: only a leader owes anyone a commit index.
        if need_send and not self._commit_notice_due and self._isLeader():
            self._commit_notice_due = raft_clock() + COMMIT_NOTICE_DELAY_S
        return False

    def _SyncObj__sendAppendEntries(self) -> None:
        self._commit_notice_due = 0.0  # every append_entries carries the commit index
        # The leader's fdatasync of what it just appended starts before the same entries go
        # to the followers, and runs while they travel; _make_durable waits for it before the
        # leader counts its own copy. Synced after the sends, it often finished after both
        # followers had answered, on every write's critical path.
        self._journal.start_sync()
        super()._SyncObj__sendAppendEntries()  # type: ignore[misc]

    def _SyncObj__onBecomeLeader(self) -> None:
        super()._SyncObj__onBecomeLeader()  # type: ignore[misc]
        # Its no-op entry: a lone member counts itself a majority within this same tick.
        self._journal.sync()

    def _onTick(self, timeToWait: float = 0.0) -> None:
        if self._durability_lost is not None:  # fail-stop: nothing more, until the node exits
            time.sleep(max(timeToWait, 0.01))
            return
        self.take_tick()  # let go of in _TickPoller.poll while it waits
        try:
            self._tick(timeToWait)
        except DurabilityLost as exc:
            # Fail-stop, as etcd does: a member that cannot promise its log is on disk must
            # neither acknowledge, nor vote, nor lead. pysyncobj would log and retry every tick.
            self._lose_durability(exc)
        finally:
            self.release_tick()

    def _lose_durability(self, exc: DurabilityLost) -> None:
        if self._durability_lost is not None:
            return
        self._durability_lost = exc
        log.critical("%s: this node stops; it can no longer promise that what it acknowledges "
                     "is on disk", exc)
        if self._on_durability_lost is not None:
            self._on_durability_lost(exc)

    def _refuse_if_stopped(self) -> None:
        if self._durability_lost is not None:
            raise ClusterError(ClusterCode.UNAVAILABLE, f"this node is stopping: {self._durability_lost}",
                               applied="no")

    def journal_sync_times(self) -> SyncTimes:
        return self._journal.sync_times()

    def _tick(self, timeToWait: float) -> None:
        due = self._commit_notice_due
        if due and raft_clock() >= due:
            if self._isLeader():
                self._SyncObj__newAppendEntriesTime = 0.0  # pysyncobj sends one this tick
            else:
                self._commit_notice_due = 0.0  # deposed meanwhile: nothing to tell
        self._make_durable()
        self._reads.on_tick()
        if self._await_leader:
            if self._caught_up():
                self._await_leader = False
                self._joining_marker.unlink(missing_ok=True)
                log.info(
                    "caught up with the leader at index %d: an ordinary member now", self.raftLastApplied
                )
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
        if message.get("type") in READ_MESSAGES:
            self._reads.on_message(node, message)
            return
        if not self._is_current_append_entries(message):
            base(node, message)
            return
        if "transmission" in message:
            # Our leaders never split an entry (see appendEntriesBatchSizeBytes above); a chunk
            # can only come from a member running pysyncobj's own transport, which could not
            # have authenticated here: refuse it rather than reassemble a guess.
            log.error("append_entries chunk from %s refused: entries are never split in Aspen", node)
            return
        if "entries" not in message:
            base(node, message)  # a heartbeat
            return
        message = dict(message)  # never edit the transport's object
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
        if maxSizeBytes is not None:  # only the leader's send path asks by size
            maxSizeBytes = min(maxSizeBytes, self._append_batch_bytes)
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
    def apply_entry(self, payload: bytes) -> Any:  # called through submit()
        # pysyncobj applies entries in order and bumps raftLastApplied after each one,
        # so the entry being applied is the next index.
        return self._applier(payload, self.raftLastApplied + 1, self.raftCurrentTerm)
