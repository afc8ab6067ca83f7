"""State machine snapshots: a versioned msgpack body with a BLAKE3 checksum."""

from __future__ import annotations

import blake3
import msgpack

from storage.errors import AspenError, ErrorCode
from storage.kv import Entry
from storage.state import BlobRecord, StateMachine

MAGIC = b"ASPNSTAT"
FORMAT_VERSION = 1
_CHECKSUM_BYTES = 32


def dump(state: StateMachine) -> bytes:
    body = msgpack.packb(
        {
            "revision": state.revision,
            "applied_index": state.applied_index,
            "kv": [[k, e.value, e.version, e.create_revision, e.mod_revision] for k, e in state.kv.items()],
            "meta": state.meta,
            "blobs": [[h, r.size, sorted(r.holders)] for h, r in sorted(state.blobs.items())],
        },
        use_bin_type=True,
    )
    return MAGIC + bytes([FORMAT_VERSION]) + blake3.blake3(body).digest() + body


def load(data: bytes) -> StateMachine:
    header = len(MAGIC) + 1
    if data[: len(MAGIC)] != MAGIC or len(data) < header + _CHECKSUM_BYTES:
        raise AspenError(ErrorCode.INTERNAL, "snapshot: not an Aspen state snapshot")
    if data[len(MAGIC)] != FORMAT_VERSION:
        raise AspenError(ErrorCode.INTERNAL, f"snapshot: format {data[len(MAGIC)]} is not {FORMAT_VERSION}")
    checksum, body = data[header : header + _CHECKSUM_BYTES], data[header + _CHECKSUM_BYTES :]
    if blake3.blake3(body).digest() != checksum:
        raise AspenError(ErrorCode.INTERNAL, "snapshot: checksum mismatch (corrupt file)")
    raw = msgpack.unpackb(body, raw=False, strict_map_key=False)
    state = StateMachine()
    state.revision = raw["revision"]
    state.applied_index = raw["applied_index"]
    state.kv.load([(k, Entry(v, ver, cr, mr)) for k, v, ver, cr, mr in raw["kv"]])
    state.meta = {t: dict(rows) for t, rows in raw["meta"].items()}
    state.blobs = {h: BlobRecord(size, frozenset(holders)) for h, size, holders in raw["blobs"]}
    return state
