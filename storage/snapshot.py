"""State machine snapshots: what Raft log compaction stores and sends to lagging followers.

    MAGIC (8) | FORMAT_VERSION (1) | msgpack {"applied_index": n} | codec stream | BLAKE3 (32)

The body is the canonical state encoding (storage.codec), so a snapshot round-trips to the
same state_hash. The checksum trails the body so a writer can stream; load checks it before
decoding anything.
"""

from __future__ import annotations

import blake3
import msgpack

from storage import codec
from storage.errors import StorageCode, StorageError
from storage.state import BlobRecord, StateMachine

MAGIC = b"ASPNSTAT"
FORMAT_VERSION = 2
_CHECKSUM_BYTES = 32
_HEADER_BYTES = len(MAGIC) + 1
_END = object()


class SnapshotError(StorageError):
    """A snapshot that cannot be loaded: wrong file, unknown format, or corrupt."""

    def __init__(self, message: str) -> None:
        super().__init__(StorageCode.INTERNAL, f"snapshot: {message}")


def dump(state: StateMachine) -> bytes:
    hasher = blake3.blake3()
    parts = [msgpack.packb({"applied_index": state.applied_index})]
    parts.extend(state.canonical_chunks())
    for part in parts:
        hasher.update(part)
    return b"".join([MAGIC, bytes([FORMAT_VERSION]), *parts, hasher.digest()])


def load(data: bytes | bytearray | memoryview) -> StateMachine:
    view = memoryview(data)
    if len(view) < _HEADER_BYTES + _CHECKSUM_BYTES or view[: len(MAGIC)] != MAGIC:
        raise SnapshotError("not an Aspen state snapshot")
    if view[len(MAGIC)] != FORMAT_VERSION:
        raise SnapshotError(f"format {view[len(MAGIC)]} is not {FORMAT_VERSION}")
    body, checksum = view[_HEADER_BYTES:-_CHECKSUM_BYTES], view[-_CHECKSUM_BYTES:]
    if blake3.blake3(body).digest() != checksum:
        raise SnapshotError("checksum mismatch (corrupt or truncated)")
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(body), 1))
    unpacker.feed(body)
    try:
        header = next(unpacker)
        if type(header) is not dict or type(header.get("applied_index")) is not int:
            raise SnapshotError("bad header")
        revision, kv, meta, blobs = codec.decode_state(unpacker)
    except codec.CodecError as exc:
        raise SnapshotError(str(exc)) from exc
    except (StopIteration, ValueError, msgpack.UnpackException) as exc:
        raise SnapshotError(f"undecodable: {exc}") from exc
    if next(unpacker, _END) is not _END:
        raise SnapshotError("trailing data after the state")
    return StateMachine.restore(
        kv=kv,
        meta=meta,
        blobs={h: BlobRecord(size, holders) for h, (size, holders) in blobs.items()},
        revision=revision,
        applied_index=header["applied_index"],
    )
