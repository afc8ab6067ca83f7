"""The pysyncobj member: one replicated method, snapshots in our own file format.

pysyncobj is the Raft engine (log, elections, replication, membership); this module only
adapts it. Every log entry is one msgpack-encoded batch of ops (group commit), applied by
the callable given at construction on pysyncobj's own thread.

Security: pysyncobj unpickles whatever arrives on its port. The transport is opened only with
`password` set, so every frame is Fernet-authenticated (HMAC) before anything is unpickled;
a peer without the cookie is disconnected at its first frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.node import TCPNode

from cluster.config import RaftConfig

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
        super().__init__(cfg.raft_addr, list(cfg.peers.values()), conf)

    @replicated
    def apply_entry(self, payload: bytes) -> Any:
        # pysyncobj applies entries in order and bumps raftLastApplied after each one,
        # so the entry being applied is the next index.
        return self._applier(payload, self.raftLastApplied + 1, self.raftCurrentTerm)
