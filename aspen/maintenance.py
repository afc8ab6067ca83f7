"""Maintenance requests etcd users expect: DeleteRange, MoveLeader, and snapshots streamed
from a node (SnapshotBegin, then SnapshotChunk until its size), plus the restore of such a
snapshot into an empty data dir (aspen-node --restore FILE).

A snapshot is storage/snapshot.py's file, taken under the state lock (one applied index,
never half an entry) after a read barrier (so it holds every write acknowledged before the
request), and checked end to end: the file ends with a BLAKE3 of its body, and SnapshotBegin
names the BLAKE3 of the whole file, which the CLI checks before it keeps the file. A node holds
at most SNAPSHOTS_HELD_MAX snapshots in memory, each for SNAPSHOT_HOLD_S after its last read.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from aspen import fields as p
from aspen.plugins import namespaces
from aspen.server import RequestHandler
from aspen.services import NodeServices
from cluster import node_registry
from cluster.config import RaftConfig
from cluster.raft import write_initial_snapshot
from storage import snapshot as state_snapshot
from storage.limits import DELETE_RANGE_MAX, KEY_MAX_BYTES
from storage.state import StateMachine
from wire.errors import AspenError, ErrorCode

MOVE_LEADER_TIMEOUT_S = 10.0
SNAPSHOTS_HELD_MAX = 2  # per node; a newer one evicts the oldest
SNAPSHOT_HOLD_S = 120.0  # after its last chunk was read
SNAPSHOT_CHUNK_MAX_BYTES = 4 * 1024 * 1024  # under the client's frame bound with room to spare
SNAPSHOT_ID_BYTES = 16


@dataclass(slots=True)
class HeldSnapshot:
    data: bytes
    blake3_hex: str
    applied_index: int
    revision: int
    keys: int
    last_used_s: float  # time.monotonic()


class MaintenanceHandlers:
    def __init__(
        self, services: NodeServices, protected_prefixes: Callable[[], dict[str, tuple[str, ...]]]
    ) -> None:
        """protected_prefixes: the KV namespaces DeleteRange must not reach into, by owner
        (plugins own theirs: their keys change through them)."""
        self.services = services
        self.replicated = services.replicated  # move-leader is a Raft operation of this node
        self._protected = protected_prefixes
        self._held: OrderedDict[str, HeldSnapshot] = OrderedDict()
        self.table: dict[str, RequestHandler] = {
            "DeleteRange": self.delete_range,
            "MoveLeader": self.move_leader,
            "SnapshotBegin": self.snapshot_begin,
            "SnapshotChunk": self.snapshot_chunk,
        }

    # -- DeleteRange -----------------------------------------------------------------------

    async def delete_range(self, req: dict[str, Any]) -> dict[str, Any]:
        """Delete up to `limit` keys with `prefix` (one log entry, one revision); `more` says
        whether keys with the prefix remain: the client repeats until it is false."""
        prefix = req.get("prefix")
        if not isinstance(prefix, str):
            raise AspenError(ErrorCode.INVALID_REQUEST, "prefix: must be a string (empty: every key)")
        if len(prefix) > KEY_MAX_BYTES:  # before any work; the op's check measures UTF-8 bytes
            raise AspenError(ErrorCode.KEY_TOO_LARGE, f"prefix: over {KEY_MAX_BYTES} bytes")
        limit = p.optional_int(req, "limit", DELETE_RANGE_MAX, 1, DELETE_RANGE_MAX)
        for owner, prefixes in sorted(self._protected().items()):
            for theirs in prefixes:
                if theirs.startswith(prefix) or prefix.startswith(theirs):
                    raise AspenError(
                        namespaces.PREFIX_CONFLICT,
                        f"prefix {prefix!r} reaches into {theirs!r}, which belongs to "
                        f"{owner}: delete those keys through it, or use a longer prefix",
                        other=owner,
                        other_prefix=theirs,
                    )
        body = await self.services.commit(["delrange", prefix, limit])
        return {"type": "DeleteRangeResult", **body}

    # -- MoveLeader ------------------------------------------------------------------------

    async def move_leader(self, req: dict[str, Any]) -> dict[str, Any]:
        target = p.require_int(req, "node_id", 1, 2**31)
        timeout_s = min(self.services.timeout_s, MOVE_LEADER_TIMEOUT_S)
        await self.replicated.transfer_leadership_to(target, timeout_s)
        return {"type": "MoveLeaderResult", "leader_id": target}

    # -- snapshots -------------------------------------------------------------------------

    def _expire(self, now_s: float) -> None:
        for sid in [sid for sid, h in self._held.items() if now_s - h.last_used_s > SNAPSHOT_HOLD_S]:
            del self._held[sid]

    async def snapshot_begin(self, req: dict[str, Any]) -> dict[str, Any]:
        if not p.optional_bool(req, "stale", False):
            await self.services.barrier()

        def take() -> tuple[bytes, int, int, int]:
            return self.services.read(
                lambda s: (state_snapshot.dump(s), s.applied_index, s.revision, len(s.kv))
            )

        # Encoding a large state takes a while: off the event loop (the state lock is held for
        # it, as for pysyncobj's own snapshots).
        data, applied_index, revision, keys = await asyncio.get_running_loop().run_in_executor(None, take)
        now_s = time.monotonic()
        self._expire(now_s)
        while len(self._held) >= SNAPSHOTS_HELD_MAX:
            self._held.popitem(last=False)
        sid = secrets.token_hex(SNAPSHOT_ID_BYTES)
        held = HeldSnapshot(data, blake3.blake3(data).hexdigest(), applied_index, revision, keys, now_s)
        self._held[sid] = held
        return {
            "type": "SnapshotBeginResult",
            "snapshot_id": sid,
            "node_id": self.services.node_id,
            "size_bytes": len(data),
            "blake3": held.blake3_hex,
            "applied_index": applied_index,
            "revision": revision,
            "keys": keys,
            "chunk_max_bytes": SNAPSHOT_CHUNK_MAX_BYTES,
        }

    async def snapshot_chunk(self, req: dict[str, Any]) -> dict[str, Any]:
        sid = p.optional_str(req, "snapshot_id", 2 * SNAPSHOT_ID_BYTES)
        if not sid:
            raise AspenError(ErrorCode.INVALID_REQUEST, "snapshot_id: the id SnapshotBegin returned")
        now_s = time.monotonic()
        self._expire(now_s)
        held = self._held.get(sid)
        if held is None:
            raise AspenError(
                ErrorCode.NOT_FOUND,
                f"node {self.services.node_id} holds no snapshot {sid} (expired after "
                f"{SNAPSHOT_HOLD_S:g}s unread, evicted by newer ones, or taken on another node)",
            )
        offset = p.require_int(req, "offset", 0, len(held.data))
        limit = p.optional_int(req, "limit_bytes", SNAPSHOT_CHUNK_MAX_BYTES, 1, SNAPSHOT_CHUNK_MAX_BYTES)
        held.last_used_s = now_s
        data = held.data[offset : offset + limit]
        if offset + len(data) >= len(held.data):
            self._held.pop(sid, None)  # read to the end: free it now
        return {
            "type": "SnapshotChunkResult",
            "offset": offset,
            "data": data,
            "done": offset + len(data) >= len(held.data),
        }


# -- restore (aspen-node --restore FILE) --------------------------------------------------

# The snapshot becomes the Raft snapshot of a new log: the state at index RESTORED_INDEX_MIN
# or the file's own applied index, whichever is larger, behind two no-op entries of term 0
# (below any real term). Every member restored from the same file holds the same log prefix,
# so they agree as Raft requires; members started empty catch up from it.
RESTORED_INDEX_MIN = 2
RESTORED_TERM = 0


def load_snapshot_file(path: Path) -> StateMachine:
    """The state in an `aspen-cli snapshot save` file, its BLAKE3 checked: SNAPSHOT_CORRUPT
    for a file that is not one, truncated or changed (an OSError when it cannot be read)."""
    try:
        return state_snapshot.load(path.read_bytes())
    except state_snapshot.SnapshotError as exc:
        raise AspenError(ErrorCode.SNAPSHOT_CORRUPT, f"{os.fsdecode(path)}: {exc.message}") from None


def restore_into(cfg: RaftConfig, snapshot_path: Path) -> StateMachine:
    """Install a saved snapshot as this member's Raft snapshot; the data dir must hold no log."""
    if cfg.journal_path.exists() or cfg.snapshot_path.exists():
        raise AspenError(
            ErrorCode.INVALID_REQUEST,
            f"--restore wants a data dir without a Raft log; "
            f"{cfg.journal_path.parent} already holds one (restore into an empty dir)",
        )
    state = load_snapshot_file(snapshot_path)
    index = max(state.applied_index, RESTORED_INDEX_MIN)
    # The saved cluster's node registry (addresses) is not the new cluster's: each member
    # registers itself once it runs. Every member restored from the file drops it alike.
    meta = {t: dict(state.meta_items(t)) for t in state.meta_tables() if t != node_registry.TABLE}
    restored = StateMachine.restore(state.kv, meta, dict(state.blob_records()), state.revision, index)
    data = state_snapshot.dump(restored)
    write_initial_snapshot(
        cfg.snapshot_path, data, index, RESTORED_TERM, [cfg.raft_addr, *cfg.peers.values()]
    )
    return restored
