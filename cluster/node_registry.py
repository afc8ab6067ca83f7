"""The `nodes` meta table, typed: each member's id -> where it listens (Raft and client port).

The node writes it (its own row at start, AddNode) and reads it (a peer's client address,
cluster status, membership); ReplicatedNode reads it to name a Raft address's node id. The row
is a msgpack map; it is encoded and decoded here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from storage.state import StateMachine

TABLE = "nodes"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    raft_addr: str | None
    client_addr: str | None

    def encode(self) -> bytes:
        return msgpack.packb(
            {"raft_addr": self.raft_addr, "client_addr": self.client_addr}, use_bin_type=True
        )

    @classmethod
    def decode(cls, raw: bytes) -> NodeRecord | None:
        """The row, or None when it is not a map (a field that is not a string reads as None)."""
        try:
            info = msgpack.unpackb(raw, raw=False)
        except Exception:
            return None
        if not isinstance(info, dict):
            return None
        return cls(raft_addr=_text(info.get("raft_addr")), client_addr=_text(info.get("client_addr")))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def node_ids(state: StateMachine) -> set[int]:
    return {int(key) for key, _ in state.meta_items(TABLE)}


def records(state: StateMachine) -> dict[int, NodeRecord]:
    """Every row that decodes, by node id."""
    out = {}
    for key, raw in state.meta_items(TABLE):
        record = NodeRecord.decode(raw)
        if record is not None:
            out[int(key)] = record
    return out


def record(state: StateMachine, node_id: int) -> NodeRecord | None:
    raw = state.meta_get(TABLE, str(node_id))
    return None if raw is None else NodeRecord.decode(raw)


def raw_record(state: StateMachine, node_id: int) -> bytes | None:
    """The row as stored (to tell whether a write would change it)."""
    return state.meta_get(TABLE, str(node_id))


def node_id_of(state: StateMachine, raft_addr: str) -> int | None:
    for node_id, rec in records(state).items():
        if rec.raft_addr == raft_addr:
            return node_id
    return None


def put_op(node_id: int, rec: NodeRecord) -> list[Any]:
    return ["meta_put", TABLE, str(node_id), rec.encode()]


def delete_op(node_id: int) -> list[Any]:
    return ["meta_del", TABLE, str(node_id)]
