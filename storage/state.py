"""The replicated state machine: KV, meta tables and the blob index, changed only by ops.

Ops are msgpack-decoded lists (docs/DESIGN.md). Apply is deterministic and never raises on
bad input: a malformed op gets an error result and changes nothing, because a bad entry in
the Raft log must not stop a node.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import blake3
import msgpack

from storage.errors import Error, ErrorCode
from storage.kv import Entry, KvStore, ScanPage
from storage.limits import (
    BATCH_OPS_MAX,
    BLOB_MAX_BYTES,
    CONDITIONS_MAX,
    KEY_MAX_BYTES,
    RESERVED_KEY_PREFIX,
    VALUE_MAX_BYTES,
)

Result = tuple[Any, ...]  # ("ok", dict) | ("err", code, message, details)

META_TABLE_MAX_CHARS = 64
_HASH_RE = re.compile(r"[0-9a-f]{64}\Z")
_OK_EMPTY: Result = ("ok", {})


@dataclass(frozen=True, slots=True)
class CommitEvent:
    kind: str  # kv.write_committed | kv.delete_committed | meta.put | meta.delete
    key: str | None
    index: int
    term: int
    revision: int


@dataclass(frozen=True, slots=True)
class BlobRecord:
    size: int
    holders: frozenset[int]


def _err(code: ErrorCode, message: str, **details: Any) -> Result:
    return ("err", str(code), message, details)


# -- validation (shared by the edge and by apply) ------------------------------------------


def _bad_key(key: Any, what: str = "key") -> Result | None:
    if type(key) is not str:
        return _err(ErrorCode.INVALID_REQUEST, f"{what}: must be a string")
    if not key:
        return _err(ErrorCode.INVALID_REQUEST, f"{what}: must not be empty")
    # Four bytes per character at most: skip the encode for short keys.
    if len(key) * 4 > KEY_MAX_BYTES and len(key.encode()) > KEY_MAX_BYTES:
        return _err(ErrorCode.KEY_TOO_LARGE, f"{what}: over {KEY_MAX_BYTES} UTF-8 bytes")
    if key.startswith(RESERVED_KEY_PREFIX):
        return _err(ErrorCode.RESERVED_KEY, f"{what}: {RESERVED_KEY_PREFIX!r} is reserved for the cluster")
    return None


def _bad_value(value: Any, what: str = "value") -> Result | None:
    if type(value) is not bytes:
        return _err(ErrorCode.INVALID_REQUEST, f"{what}: must be bytes")
    if len(value) > VALUE_MAX_BYTES:
        return _err(ErrorCode.VALUE_TOO_LARGE, f"{what}: over {VALUE_MAX_BYTES} bytes")
    return None


def _bad_arity(op: list[Any], n: int) -> Result | None:
    if len(op) != n:
        return _err(ErrorCode.INVALID_REQUEST, f"op {op[0]!r}: expected {n - 1} arguments, got {len(op) - 1}")
    return None


def _bad_batch_ops(ops: Any) -> Result | None:
    if type(ops) is not list:
        return _err(ErrorCode.INVALID_REQUEST, "ops: must be a list")
    if len(ops) > BATCH_OPS_MAX:
        return _err(ErrorCode.INVALID_REQUEST, f"ops: at most {BATCH_OPS_MAX} per batch")
    for i, sub in enumerate(ops):
        if type(sub) is not list or not sub:
            return _err(ErrorCode.INVALID_REQUEST, f"ops[{i}]: must be a non-empty list")
        if sub[0] == "put" and len(sub) == 3:
            bad = _bad_key(sub[1], f"ops[{i}].key") or _bad_value(sub[2], f"ops[{i}].value")
        elif sub[0] == "del" and len(sub) == 2:
            bad = _bad_key(sub[1], f"ops[{i}].key")
        else:
            bad = _err(ErrorCode.INVALID_REQUEST, f"ops[{i}]: must be [put, key, value] or [del, key]")
        if bad is not None:
            return bad
    return None


def _bad_conditions(conds: Any) -> Result | None:
    if type(conds) is not list:
        return _err(ErrorCode.INVALID_REQUEST, "conditions: must be a list")
    if len(conds) > CONDITIONS_MAX:
        return _err(ErrorCode.INVALID_REQUEST, f"conditions: at most {CONDITIONS_MAX}")
    for i, c in enumerate(conds):
        if type(c) is not list or not c:
            return _err(ErrorCode.INVALID_REQUEST, f"conditions[{i}]: must be a non-empty list")
        if c[0] == "eq" and len(c) == 3:
            bad = _bad_key(c[1], f"conditions[{i}].key") or _bad_value(c[2], f"conditions[{i}].value")
        elif c[0] in ("exists", "absent") and len(c) == 2:
            bad = _bad_key(c[1], f"conditions[{i}].key")
        else:
            bad = _err(ErrorCode.INVALID_REQUEST, f"conditions[{i}]: must be [eq,k,v], [exists,k] or [absent,k]")
        if bad is not None:
            return bad
    return None


def _bad_meta(table: Any, key: Any) -> Result | None:
    if type(table) is not str or not 0 < len(table) <= META_TABLE_MAX_CHARS:
        return _err(ErrorCode.INVALID_REQUEST, f"table: a string of 1 to {META_TABLE_MAX_CHARS} characters")
    if type(key) is not str or not key or len(key.encode()) > KEY_MAX_BYTES:
        return _err(ErrorCode.INVALID_REQUEST, f"meta key: a string of 1 to {KEY_MAX_BYTES} bytes")
    return None


def _bad_optional_value(value: Any, what: str) -> Result | None:
    return None if value is None else _bad_value(value, what)


def _invalid(op: Any) -> Result | None:
    """Why this op cannot be applied, or None. The single validator for edge and apply."""
    if type(op) is not list or not op or type(op[0]) is not str:
        return _err(ErrorCode.INVALID_REQUEST, "op: must be a non-empty list starting with its name")
    name = op[0]
    if name == "put":
        return _bad_arity(op, 3) or _bad_key(op[1]) or _bad_value(op[2])
    if name == "del":
        return _bad_arity(op, 2) or _bad_key(op[1])
    if name == "cas":
        return _bad_arity(op, 4) or _bad_key(op[1]) or _bad_optional_value(op[2], "expected") or _bad_value(op[3], "new_value")
    if name == "cad":
        return _bad_arity(op, 3) or _bad_key(op[1]) or _bad_value(op[2], "expected")
    if name == "batch":
        return _bad_arity(op, 2) or _bad_batch_ops(op[1])
    if name == "cbatch":
        return _bad_arity(op, 3) or _bad_conditions(op[1]) or _bad_batch_ops(op[2])
    if name == "noop":
        return _bad_arity(op, 1)
    if name == "meta_put":
        return _bad_arity(op, 4) or _bad_meta(op[1], op[2]) or _bad_value(op[3])
    if name == "meta_del":
        return _bad_arity(op, 3) or _bad_meta(op[1], op[2])
    if name == "meta_cas":
        return (
            _bad_arity(op, 5)
            or _bad_meta(op[1], op[2])
            or _bad_optional_value(op[3], "expected")
            or _bad_optional_value(op[4], "new")
        )
    if name == "blob_add":
        if bad := _bad_arity(op, 4):
            return bad
        if type(op[1]) is not str or not _HASH_RE.match(op[1]):
            return _err(ErrorCode.INVALID_REQUEST, "hash: 64 lowercase hex characters")
        if type(op[2]) is not int or not 0 <= op[2] <= BLOB_MAX_BYTES:
            return _err(ErrorCode.INVALID_REQUEST, f"size: 0 to {BLOB_MAX_BYTES}")
        if type(op[3]) is not int or op[3] <= 0:
            return _err(ErrorCode.INVALID_REQUEST, "holder: a positive node id")
        return None
    return _err(ErrorCode.INVALID_REQUEST, f"unknown op {name!r}")


def validate_op(op: Any) -> Error | None:
    bad = _invalid(op)
    if bad is None:
        return None
    return Error(ErrorCode(bad[1]), bad[2], bad[3])


def validate_key(key: Any, what: str = "key") -> Error | None:
    bad = _bad_key(key, what)
    return None if bad is None else Error(ErrorCode(bad[1]), bad[2], bad[3])


# -- the state machine -----------------------------------------------------------------------


class StateMachine:
    def __init__(self) -> None:
        self.kv = KvStore()
        self.meta: dict[str, dict[str, bytes]] = {}
        self.blobs: dict[str, BlobRecord] = {}
        self.revision = 0
        self.applied_index = 0
        self._apply: dict[str, Callable[[list[Any], list[CommitEvent], int, int], Result]] = {
            "put": self._put,
            "del": self._del,
            "cas": self._cas,
            "cad": self._cad,
            "batch": self._batch,
            "cbatch": self._cbatch,
            "noop": lambda op, ev, i, t: _OK_EMPTY,
            "meta_put": self._meta_put,
            "meta_del": self._meta_del,
            "meta_cas": self._meta_cas,
            "blob_add": self._blob_add,
        }

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        return self.kv.get(key)

    def scan(self, prefix: str, limit: int, after: str | None = None) -> ScanPage:
        return self.kv.scan(prefix, limit, after)

    def meta_get(self, table: str, key: str) -> bytes | None:
        return self.meta.get(table, {}).get(key)

    def meta_items(self, table: str) -> list[tuple[str, bytes]]:
        return sorted(self.meta.get(table, {}).items())

    def blob_record(self, blob_hash: str) -> BlobRecord | None:
        return self.blobs.get(blob_hash)

    def blob_records(self) -> Iterator[tuple[str, BlobRecord]]:
        return iter(sorted(self.blobs.items()))

    def state_hash(self) -> str:
        h = blake3.blake3()
        h.update(msgpack.packb(self.revision))
        for key, e in self.kv.items():
            h.update(msgpack.packb([key, e.value, e.version, e.create_revision, e.mod_revision], use_bin_type=True))
        for table in sorted(self.meta):
            for key, value in sorted(self.meta[table].items()):
                h.update(msgpack.packb([table, key, value], use_bin_type=True))
        for blob_hash, rec in sorted(self.blobs.items()):
            h.update(msgpack.packb([blob_hash, rec.size, sorted(rec.holders)]))
        return h.hexdigest()

    # -- apply -----------------------------------------------------------------------------

    def apply_ops(self, ops: list[Any], index: int, term: int) -> tuple[list[Result], list[CommitEvent]]:
        results: list[Result] = []
        events: list[CommitEvent] = []
        table = self._apply
        for op in ops:
            bad = _invalid(op)
            if bad is not None:
                results.append(bad)
                continue
            results.append(table[op[0]](op, events, index, term))
        self.applied_index = index
        return results, events

    def _written(self, key: str, entry: Entry, events: list[CommitEvent], index: int, term: int) -> dict[str, Any]:
        events.append(CommitEvent("kv.write_committed", key, index, term, self.revision))
        return {
            "revision": self.revision,
            "version": entry.version,
            "create_revision": entry.create_revision,
            "mod_revision": entry.mod_revision,
        }

    def _put(self, op: list[Any], events: list[CommitEvent], index: int, term: int) -> Result:
        self.revision += 1
        return ("ok", self._written(op[1], self.kv.put(op[1], op[2], self.revision), events, index, term))

    def _del(self, op: list[Any], events: list[CommitEvent], index: int, term: int) -> Result:
        if self.kv.get(op[1]) is None:
            return ("ok", {"deleted": False, "revision": self.revision})
        self.revision += 1
        self.kv.delete(op[1])
        events.append(CommitEvent("kv.delete_committed", op[1], index, term, self.revision))
        return ("ok", {"deleted": True, "revision": self.revision})

    def _mismatch(self, key: str) -> Result:
        current = self.kv.get(key)
        return _err(
            ErrorCode.CAS_FAILED,
            f"{key!r} does not hold the expected value",
            actual_found=current is not None,
            actual_value=None if current is None else current.value,
        )

    def _cas(self, op: list[Any], events: list[CommitEvent], index: int, term: int) -> Result:
        _, key, expected, new = op
        current = self.kv.get(key)
        if (None if current is None else current.value) != expected:
            return self._mismatch(key)
        return self._put(["put", key, new], events, index, term)

    def _cad(self, op: list[Any], events: list[CommitEvent], index: int, term: int) -> Result:
        current = self.kv.get(op[1])
        if current is None or current.value != op[2]:
            return self._mismatch(op[1])
        return self._del(["del", op[1]], events, index, term)

    def _write_all(self, ops: list[list[Any]], events: list[CommitEvent], index: int, term: int) -> None:
        # One revision for the whole batch: it is one write request (etcd txn semantics).
        self.revision += 1
        for sub in ops:
            if sub[0] == "put":
                entry = self.kv.put(sub[1], sub[2], self.revision)
                events.append(CommitEvent("kv.write_committed", sub[1], index, term, self.revision))
                del entry
            elif self.kv.delete(sub[1]):
                events.append(CommitEvent("kv.delete_committed", sub[1], index, term, self.revision))

    def _batch(self, op: list[Any], events: list[CommitEvent], index: int, term: int) -> Result:
        if op[1]:
            self._write_all(op[1], events, index, term)
        return ("ok", {"revision": self.revision, "count": len(op[1])})

    def _cbatch(self, op: list[Any], events: list[CommitEvent], index: int, term: int) -> Result:
        for i, cond in enumerate(op[1]):
            current = self.kv.get(cond[1])
            kind = cond[0]
            holds = (
                (current is not None and current.value == cond[2])
                if kind == "eq"
                else (current is not None) == (kind == "exists")
            )
            if not holds:
                return ("ok", {"success": False, "failed_condition_index": i, "revision": self.revision})
        if op[2]:
            self._write_all(op[2], events, index, term)
        return ("ok", {"success": True, "failed_condition_index": None, "revision": self.revision})

    def _meta_put(self, op: list[Any], events: list[CommitEvent], index: int, term: int) -> Result:
        _, table, key, value = op
        self.meta.setdefault(table, {})[key] = value
        events.append(CommitEvent("meta.put", f"{table}/{key}", index, term, self.revision))
        return _OK_EMPTY

    def _meta_del(self, op: list[Any], events: list[CommitEvent], index: int, term: int) -> Result:
        _, table, key = op
        existed = self.meta.get(table, {}).pop(key, None) is not None
        if existed:
            events.append(CommitEvent("meta.delete", f"{table}/{key}", index, term, self.revision))
        return ("ok", {"existed": existed})

    def _meta_cas(self, op: list[Any], events: list[CommitEvent], index: int, term: int) -> Result:
        _, table, key, expected, new = op
        current = self.meta.get(table, {}).get(key)
        if current != expected:
            return _err(
                ErrorCode.CAS_FAILED,
                f"{table}/{key} does not hold the expected value",
                actual_found=current is not None,
                actual_value=current,
            )
        if new is None:
            return self._meta_del(["meta_del", table, key], events, index, term)
        return self._meta_put(["meta_put", table, key, new], events, index, term)

    def _blob_add(self, op: list[Any], events: list[CommitEvent], index: int, term: int) -> Result:
        _, blob_hash, size, holder = op
        old = self.blobs.get(blob_hash)
        if old is not None and old.size != size:
            return _err(ErrorCode.BLOB_CORRUPT, f"blob {blob_hash} recorded with size {old.size}, not {size}")
        holders = frozenset([holder]) if old is None else old.holders | {holder}
        self.blobs[blob_hash] = BlobRecord(size, holders)
        return _OK_EMPTY
