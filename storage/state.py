"""The replicated state machine: KV, meta tables and the blob index, changed only by ops.

Ops are msgpack-decoded lists (docs/DESIGN.md has the table). Apply is deterministic and never
raises on bad input: a malformed op gets an error result and changes nothing, because a bad
entry in the Raft log must not stop a node. Every op is checked in full before it writes
anything, which is what makes a batch all-or-nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import blake3
import msgpack

from storage import codec
from storage.errors import StorageCode
from storage.kv import Entry, KvStore, ScanPage
from storage.limits import LEASE_KEYS_MAX, LEASES_MAX
from storage.ops import (
    Result,
    check_batch,
    check_blob_add,
    check_cad,
    check_cas,
    check_cbatch,
    check_del,
    check_delrange,
    check_lease_grant,
    check_lease_revoke,
    check_lput,
    check_meta_cas,
    check_meta_cas_all,
    check_meta_del,
    check_meta_put,
    check_noop,
    check_op,
    check_put,
    check_tagged,
    err,
    op_name,
    validate_key,
    validate_op,
)

__all__ = [
    "BlobRecord",
    "CommitEvent",
    "Result",
    "StateMachine",
    "validate_key",
    "validate_op",
]

log = logging.getLogger("aspen.storage")

KV_WRITE = "kv.write_committed"
KV_DELETE = "kv.delete_committed"
META_PUT = "meta.put"
META_DELETE = "meta.delete"

_OK_EMPTY: Result = ("ok", {})
# Leases live in two meta tables (so snapshots and state hashes hold them): LEASES maps a lease
# id (decimal) to msgpack {"ttl_s", "keys": [attached keys, sorted]}, LEASE_OF maps an attached
# key to its lease id. When a lease expires is not state: the leader decides, and revokes it
# through the log (aspen/leases.py).
LEASES = "leases"
LEASE_OF = "lease_of"
LEASE_NOT_FOUND = StorageCode.LEASE_NOT_FOUND
LEASE_LIMIT = StorageCode.LEASE_LIMIT

Events = list["CommitEvent"]
OpApply = Callable[[Any, Events, int, int], Result]


@dataclass(frozen=True, slots=True, init=False)
class CommitEvent:
    kind: str  # kv.write_committed | kv.delete_committed | meta.put | meta.delete
    key: str | None  # the KV key, or "table/key" for meta events
    index: int
    term: int
    revision: int  # the KV revision after the write (meta writes do not move it)
    origin: str | None  # the plugin that made the write (a "tagged" op), the same on every node
    depth: int  # the hook depth that write was made at
    # A KV write's new value and the key's version and create revision after it (watches
    # stream them: aspen/watch.py); None and 0 for deletes and meta events.
    value: bytes | None
    version: int
    create_revision: int

    # Hand-written for the same reason as Entry's: one event per write is on the hot path.
    def __init__(self, kind: str, key: str | None, index: int, term: int, revision: int,
                 origin: str | None = None, depth: int = 0, value: bytes | None = None, version: int = 0,
                 create_revision: int = 0) -> None:
        _set_kind(self, kind)
        _set_key(self, key)
        _set_index(self, index)
        _set_term(self, term)
        _set_revision(self, revision)
        _set_origin(self, origin)
        _set_depth(self, depth)
        _set_value(self, value)
        _set_version(self, version)
        _set_create_revision(self, create_revision)


_set_kind = CommitEvent.__dict__["kind"].__set__
_set_key = CommitEvent.__dict__["key"].__set__
_set_index = CommitEvent.__dict__["index"].__set__
_set_term = CommitEvent.__dict__["term"].__set__
_set_revision = CommitEvent.__dict__["revision"].__set__
_set_origin = CommitEvent.__dict__["origin"].__set__
_set_depth = CommitEvent.__dict__["depth"].__set__
_set_value = CommitEvent.__dict__["value"].__set__
_set_version = CommitEvent.__dict__["version"].__set__
_set_create_revision = CommitEvent.__dict__["create_revision"].__set__


@dataclass(frozen=True, slots=True)
class BlobRecord:
    size: int  # bytes
    holders: frozenset[int]  # node ids that have stored the blob


class StateMachine:
    def __init__(self) -> None:
        self._kv = KvStore()
        self._meta: dict[str, dict[str, bytes]] = {}  # empty tables are dropped, so equal states look equal
        self._blobs: dict[str, BlobRecord] = {}
        self._revision = 0
        self._applied_index = 0
        self._handlers: dict[str, OpApply] = {
            "put": self._put,
            "del": self._del,
            "delrange": self._delrange,
            "lease_grant": self._lease_grant,
            "lease_revoke": self._lease_revoke,
            "lput": self._lput,
            "cas": self._cas,
            "cad": self._cad,
            "batch": self._batch,
            "cbatch": self._cbatch,
            "noop": self._noop,
            "meta_put": self._meta_put,
            "meta_del": self._meta_del,
            "meta_cas": self._meta_cas,
            "meta_cas_all": self._meta_cas_all,
            "blob_add": self._blob_add,
            "tagged": self._tagged,
        }

    @classmethod
    def restore(
        cls,
        kv: KvStore,
        meta: dict[str, dict[str, bytes]],
        blobs: dict[str, BlobRecord],
        revision: int,
        applied_index: int,
    ) -> StateMachine:
        """A state machine holding exactly these parts (for snapshots)."""
        state = cls()
        state._kv = kv
        state._meta = {table: rows for table, rows in meta.items() if rows}
        state._blobs = blobs
        state._revision = revision
        state._applied_index = applied_index
        return state

    # -- reads -----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def applied_index(self) -> int:
        """The index last passed to apply_ops (0 before any)."""
        return self._applied_index

    @property
    def kv(self) -> KvStore:
        return self._kv

    def get(self, key: str) -> Entry | None:
        return self._kv.get(key)

    def scan(self, prefix: str, limit: int, after: str | None = None) -> ScanPage:
        return self._kv.scan(prefix, limit, after)

    def meta_get(self, table: str, key: str) -> bytes | None:
        rows = self._meta.get(table)
        return None if rows is None else rows.get(key)

    def meta_items(self, table: str) -> list[tuple[str, bytes]]:
        return sorted(self._meta.get(table, {}).items())

    def meta_tables(self) -> list[str]:
        return sorted(self._meta)

    def blob_record(self, blob_hash: str) -> BlobRecord | None:
        return self._blobs.get(blob_hash)

    def blob_records(self) -> list[tuple[str, BlobRecord]]:
        return sorted(self._blobs.items())

    def canonical_chunks(self) -> Iterator[bytes]:
        """The canonical encoding (storage.codec) of everything apply changes but the index."""
        return codec.encode_state(self._revision, self._kv, self._meta, self._blobs)

    def state_hash(self) -> str:
        """BLAKE3 hex of the canonical encoding: equal on nodes that applied the same log."""
        hasher = blake3.blake3()
        for chunk in self.canonical_chunks():
            hasher.update(chunk)
        return hasher.hexdigest()

    # -- apply -----------------------------------------------------------------------------

    def apply_ops(self, ops: Any, index: int, term: int) -> tuple[list[Result], list[CommitEvent]]:
        """Apply one log entry's ops in order: one result per op, and the commit events."""
        results: list[Result] = []
        events: list[CommitEvent] = []
        if type(ops) is not list and type(ops) is not tuple:
            log.error("log entry %d holds %s, not a list of ops; skipped", index, type(ops).__name__)
            ops = ()
        handlers = self._handlers
        for op in ops:
            name = op_name(op)
            handler = None if name is None else handlers.get(name)
            if handler is None:
                results.append(check_op(op))
                continue
            try:
                results.append(handler(op, events, index, term))
            except Exception:  # a bug, not bad input (ops are checked first); keep the node alive
                log.exception("applying op %s at index %d failed", name, index)
                results.append(err(StorageCode.INTERNAL, f"applying {name} failed; see the node's log"))
        self._applied_index = index
        return results, events

    def _noop(self, op: Any, events: Events, index: int, term: int) -> Result:
        return check_noop(op) or _OK_EMPTY

    def _write(self, key: str, value: bytes, events: Events, index: int, term: int) -> Result:
        if LEASE_OF in self._meta:  # a write without a lease takes the key off its lease (etcd)
            self._detach(key)
        self._revision = revision = self._revision + 1
        entry = self._kv.put(key, value, revision)
        events.append(CommitEvent(KV_WRITE, key, index, term, revision, None, 0, value, entry.version,
                                  entry.create_revision))
        return (
            "ok",
            {
                "revision": revision,
                "version": entry.version,
                "create_revision": entry.create_revision,
                "mod_revision": revision,
            },
        )

    def _remove(self, key: str, events: Events, index: int, term: int) -> Result:
        if not self._kv.delete(key):  # nothing changed, so no new revision (etcd)
            return ("ok", {"deleted": False, "revision": self._revision})
        if LEASE_OF in self._meta:
            self._detach(key)
        self._revision = revision = self._revision + 1
        events.append(CommitEvent(KV_DELETE, key, index, term, revision))
        return ("ok", {"deleted": True, "revision": revision})

    def _put(self, op: Any, events: Events, index: int, term: int) -> Result:
        return check_put(op) or self._write(op[1], op[2], events, index, term)

    def _del(self, op: Any, events: Events, index: int, term: int) -> Result:
        return check_del(op) or self._remove(op[1], events, index, term)

    def _delrange(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_delrange(op):
            return bad
        _, prefix, limit = op
        page = self._kv.scan(prefix, limit)
        if not page.entries:  # nothing changed, so no new revision (as a del of a missing key)
            return ("ok", {"deleted": 0, "more": False, "revision": self._revision})
        self._revision = revision = self._revision + 1
        leased = LEASE_OF in self._meta
        for key, _ in page.entries:
            self._kv.delete(key)
            if leased:
                self._detach(key)
            events.append(CommitEvent(KV_DELETE, key, index, term, revision))
        return ("ok", {"deleted": len(page.entries), "more": page.next_after is not None,
                       "revision": revision})

    # -- leases ----------------------------------------------------------------------------

    def lease(self, lease_id: int) -> dict[str, Any] | None:
        """{"ttl_s", "keys"} of a granted lease, or None."""
        raw = self.meta_get(LEASES, str(lease_id))
        return None if raw is None else msgpack.unpackb(raw, raw=False)

    def _set_lease(self, lease_id: int, ttl_s: int, keys: list[str]) -> None:
        self._meta.setdefault(LEASES, {})[str(lease_id)] = msgpack.packb({"ttl_s": ttl_s, "keys": keys})

    def _drop_row(self, table: str, key: str) -> None:
        rows = self._meta.get(table)
        if rows is not None and rows.pop(key, None) is not None and not rows:
            del self._meta[table]  # empty tables are dropped, so equal states look equal

    def _detach(self, key: str) -> None:
        owner = self._meta.get(LEASE_OF, {}).get(key)
        if owner is None:
            return
        self._drop_row(LEASE_OF, key)
        lease = self.lease(int(owner))
        if lease is not None:
            self._set_lease(int(owner), lease["ttl_s"], [k for k in lease["keys"] if k != key])

    def _lease_grant(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_lease_grant(op):
            return bad
        _, lease_id, ttl_s = op
        if self.lease(lease_id) is not None:
            return err(StorageCode.INVALID_REQUEST, f"lease {lease_id} exists already")
        if len(self._meta.get(LEASES, ())) >= LEASES_MAX:
            return ("err", LEASE_LIMIT, f"{LEASES_MAX} leases are granted already: revoke some", {})
        self._set_lease(lease_id, ttl_s, [])
        return ("ok", {"lease_id": lease_id, "ttl_s": ttl_s})

    def _lease_revoke(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_lease_revoke(op):
            return bad
        lease_id = op[1]
        lease = self.lease(lease_id)
        if lease is None:
            return ("err", LEASE_NOT_FOUND, f"no lease {lease_id} (revoked, expired, or never granted)", {})
        self._drop_row(LEASES, str(lease_id))
        keys = lease["keys"]
        for key in keys:
            self._drop_row(LEASE_OF, key)
        deleted = [key for key in keys if self._kv.delete(key)]
        if deleted:  # one write, one revision, like a batch of deletes
            self._revision = revision = self._revision + 1
            events.extend(CommitEvent(KV_DELETE, key, index, term, revision) for key in deleted)
        return ("ok", {"lease_id": lease_id, "deleted": len(deleted), "revision": self._revision})

    def _lput(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_lput(op):
            return bad
        _, key, value, lease_id = op
        lease = self.lease(lease_id)
        if lease is None:
            return ("err", LEASE_NOT_FOUND, f"no lease {lease_id} (revoked, expired, or never granted)", {})
        keys: list[str] = lease["keys"]
        attached = self._meta.get(LEASE_OF, {}).get(key) == str(lease_id).encode()
        if not attached and len(keys) >= LEASE_KEYS_MAX:
            return ("err", LEASE_LIMIT, f"lease {lease_id} holds {LEASE_KEYS_MAX} keys already", {})
        result = self._write(key, value, events, index, term)  # takes the key off any lease it had
        keys = self.lease(lease_id)["keys"]  # type: ignore[index]  # fresh: _write may have changed it
        self._set_lease(lease_id, lease["ttl_s"], sorted([*keys, key]))
        self._meta.setdefault(LEASE_OF, {})[key] = str(lease_id).encode()
        return result

    def _mismatch(self, key: str, current: Entry | None) -> Result:
        return err(
            StorageCode.CAS_FAILED,
            "the key does not hold the expected value",
            actual_found=current is not None,
            actual_value=None if current is None else current.value,
        )

    def _cas(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_cas(op):
            return bad
        _, key, expected, new = op
        current = self._kv.get(key)
        if (None if current is None else current.value) != expected:
            return self._mismatch(key, current)
        return self._write(key, new, events, index, term)

    def _cad(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_cad(op):
            return bad
        _, key, expected = op
        current = self._kv.get(key)
        if current is None or current.value != expected:
            return self._mismatch(key, current)
        return self._remove(key, events, index, term)

    def _write_all(self, ops: Any, events: Events, index: int, term: int) -> None:
        """Apply checked [put|del] sub-ops in order as one write: one revision for all."""
        kv = self._kv
        revision = self._revision + 1
        changed = False
        leased = LEASE_OF in self._meta
        for sub in ops:
            key = sub[1]
            if leased:
                self._detach(key)
            if sub[0] == "put":
                entry = kv.put(key, sub[2], revision)
                events.append(
                    CommitEvent(
                        KV_WRITE,
                        key,
                        index,
                        term,
                        revision,
                        None,
                        0,
                        sub[2],
                        entry.version,
                        entry.create_revision,
                    )
                )
                changed = True
            elif kv.delete(key):
                events.append(CommitEvent(KV_DELETE, key, index, term, revision))
                changed = True
        if changed:  # deletes of missing keys alone change nothing, like a single del
            self._revision = revision

    def _batch(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_batch(op):
            return bad
        self._write_all(op[1], events, index, term)
        return ("ok", {"revision": self._revision, "count": len(op[1])})

    def _cbatch(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_cbatch(op):
            return bad
        kv = self._kv
        for i, cond in enumerate(op[1]):
            current = kv.get(cond[1])
            kind = cond[0]
            if kind == "eq":
                holds = current is not None and current.value == cond[2]
            else:
                holds = (current is not None) == (kind == "exists")
            if not holds:
                return ("ok", {"success": False, "failed_condition_index": i, "revision": self._revision})
        self._write_all(op[2], events, index, term)
        return ("ok", {"success": True, "failed_condition_index": None, "revision": self._revision})

    def _meta_set(self, table: str, key: str, value: bytes, events: Events, index: int, term: int) -> None:
        rows = self._meta.get(table)
        if rows is None:
            rows = self._meta[table] = {}
        rows[key] = value
        events.append(CommitEvent(META_PUT, f"{table}/{key}", index, term, self._revision))

    def _meta_remove(self, table: str, key: str, events: Events, index: int, term: int) -> bool:
        rows = self._meta.get(table)
        if rows is None or rows.pop(key, None) is None:
            return False
        if not rows:
            del self._meta[table]
        events.append(CommitEvent(META_DELETE, f"{table}/{key}", index, term, self._revision))
        return True

    def _meta_put(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_meta_put(op):
            return bad
        self._meta_set(op[1], op[2], op[3], events, index, term)
        return _OK_EMPTY

    def _meta_del(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_meta_del(op):
            return bad
        return ("ok", {"existed": self._meta_remove(op[1], op[2], events, index, term)})

    def _meta_cas(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_meta_cas(op):
            return bad
        _, table, key, expected, new = op
        current = self.meta_get(table, key)
        if current != expected:
            return err(
                StorageCode.CAS_FAILED,
                f"{table}/{key} does not hold the expected value",
                actual_found=current is not None,
                actual_value=current,
            )
        if new is not None:
            self._meta_set(table, key, new, events, index, term)
        else:
            self._meta_remove(table, key, events, index, term)
        return _OK_EMPTY

    def _meta_cas_all(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_meta_cas_all(op):
            return bad
        items = op[1]
        for i, (table, key, expected, _) in enumerate(items):
            current = self.meta_get(table, key)
            if current != expected:
                return err(
                    StorageCode.CAS_FAILED,
                    f"{table}/{key} does not hold the expected value",
                    failed_index=i,
                    actual_found=current is not None,
                )
        for table, key, _, new in items:
            if new is not None:
                self._meta_set(table, key, new, events, index, term)
            else:
                self._meta_remove(table, key, events, index, term)
        return _OK_EMPTY

    def _tagged(self, op: Any, events: Events, index: int, term: int) -> Result:
        bad = check_tagged(op)
        if bad is not None:
            return bad
        _, origin, depth, inner = op
        mine: Events = []
        result = self._handlers[inner[0]](inner, mine, index, term)
        events.extend(
            CommitEvent(
                e.kind,
                e.key,
                e.index,
                e.term,
                e.revision,
                origin,
                depth,
                e.value,
                e.version,
                e.create_revision,
            )
            for e in mine
        )
        return result

    def _blob_add(self, op: Any, events: Events, index: int, term: int) -> Result:
        if bad := check_blob_add(op):
            return bad
        _, blob_hash, size_bytes, holder = op
        old = self._blobs.get(blob_hash)
        if old is None:
            self._blobs[blob_hash] = BlobRecord(size_bytes, frozenset((holder,)))
        elif old.size != size_bytes:
            # Same hash, other size: one of the two reports is wrong; keep the first.
            return err(
                StorageCode.BLOB_CORRUPT,
                f"blob {blob_hash} is recorded with size {old.size}, not {size_bytes}",
            )
        elif holder not in old.holders:
            self._blobs[blob_hash] = BlobRecord(size_bytes, old.holders | {holder})
        return _OK_EMPTY
