"""BLAKE3 content hashes: computing them and checking that a string is one."""

from __future__ import annotations

import re

import blake3

from storage.errors import StorageCode, StorageError

HASH_HEX_CHARS = 64
_HASH_RE = re.compile(r"[0-9a-f]{64}\Z")
# Below this, starting BLAKE3's worker threads costs more than hashing on one core.
_PARALLEL_HASH_MIN_BYTES = 1 << 20


def blob_hash(data: bytes | bytearray | memoryview) -> str:
    big = memoryview(data).nbytes > _PARALLEL_HASH_MIN_BYTES
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO if big else 1).hexdigest()


def is_blob_hash(value: object) -> bool:
    return type(value) is str and _HASH_RE.match(value) is not None


def check_hash(value: object) -> str:
    """The value as a hash, or StorageError(INVALID_REQUEST): 64 lowercase hex characters."""
    if not is_blob_hash(value):
        raise StorageError(StorageCode.INVALID_REQUEST, "hash: must be 64 lowercase hex characters (BLAKE3)")
    assert isinstance(value, str)
    return value
