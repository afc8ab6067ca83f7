"""Static configuration of one Raft member."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RaftConfig:
    node_id: int
    raft_addr: str  # "host:port" this node's Raft transport binds to
    peers: dict[int, str]  # the OTHER members: node id -> raft "host:port"
    data_dir: Path
    cookie: str  # keys pysyncobj's transport encryption; never empty
    # Election timing. pysyncobj picks a random timeout in [min, max] seconds; the failover
    # target is a new leader within 3 s of a SIGKILL, on a shared 2-core machine, so the
    # window stays well under that while leaving room for GIL pauses under load.
    election_min_timeout_s: float = 0.6
    election_max_timeout_s: float = 1.2
    heartbeat_period_s: float = 0.1
    reconnect_period_s: float = 0.3
    # Log compaction: snapshot the state machine once the journal holds this many entries.
    compaction_min_entries: int = 20_000
    compaction_min_time_s: float = 600.0
    # Group commit bounds (see cluster/proposer.py).
    entries_in_flight_max: int = 2
    entry_ops_max: int = 1024
    entry_bytes_max: int = 8 * 1024 * 1024
    pending_ops_max: int = 100_000
    commands_queue_max: int = 10_000
    # The largest log entry: over the largest op a 64 MiB client frame can carry. Raft frames
    # between members are bounded by twice this plus a batch (cluster/transport.py).
    entry_max_bytes: int = 80 * 1024 * 1024
    # How many bytes of entries one append_entries message carries at most (plus one entry).
    append_batch_bytes: int = 1024 * 1024
    # fsync the log before acknowledging (aspen-node --unsafe-no-fsync turns it off).
    fsync: bool = True
    # Tests only: keep `<file>.synced` twins holding exactly the bytes made durable, to
    # simulate a power loss (tests/cluster/test_power_loss.py).
    synced_shadow: bool = False
    # This member joins a cluster that already holds data (etcd's --initial-cluster-state
    # existing): starting with no log, it never campaigns and only follows a leader it hears
    # from. Without it, empty members started together are a majority that can elect a leader
    # with an empty log and overwrite a restored member's data.
    join_existing: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.node_id > 0, "node ids are positive integers"
        assert self.node_id not in self.peers, "peers lists the other members only"
        assert self.cookie, "a Raft port is never opened without the cluster secret"
        assert 0 < self.election_min_timeout_s < self.election_max_timeout_s
        assert self.entries_in_flight_max >= 1 and self.entry_ops_max >= 1
        assert 0 < self.entry_bytes_max <= self.entry_max_bytes and self.append_batch_bytes > 0

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "raft" / "journal.bin"

    @property
    def snapshot_path(self) -> Path:
        return self.data_dir / "raft" / "snapshot.bin"
