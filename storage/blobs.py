"""Content-addressed blob store on disk, named by BLAKE3 hex.

Files live at root/ab/cdef...; writes go to a temporary file, are fsynced and renamed, so a
crash leaves either the whole blob or nothing. Bytes that do not hash to their name are never
returned: a corrupt file is removed and reported missing, so the node fetches it again.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from storage.errors import AspenError, ErrorCode
from storage.limits import BLOB_MAX_BYTES

log = logging.getLogger("aspen.blobs")
_HASH_RE = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True, slots=True)
class BlobRef:
    hash: str
    size: int


def blob_hash(data: bytes) -> str:
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO if len(data) > 1 << 20 else 1).hexdigest()


def check_hash(value: object) -> str:
    if not isinstance(value, str) or not _HASH_RE.match(value):
        raise AspenError(ErrorCode.INVALID_REQUEST, "hash: must be 64 lowercase hex characters (BLAKE3)")
    return value


class BlobStore:
    def __init__(self, root: Path, limit_bytes: int = BLOB_MAX_BYTES) -> None:
        self.root = root
        self.limit_bytes = limit_bytes
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, h: str) -> Path:
        return self.root / h[:2] / h[2:]

    def put(self, data: bytes) -> BlobRef:
        if len(data) > self.limit_bytes:
            raise AspenError(ErrorCode.BLOB_TOO_LARGE, f"blob of {len(data)} bytes is over {self.limit_bytes}")
        h = blob_hash(data)
        self._write(h, data)
        return BlobRef(h, len(data))

    def put_verified(self, expected_hash: str, data: bytes) -> BlobRef:
        check_hash(expected_hash)
        if len(data) > self.limit_bytes:
            raise AspenError(ErrorCode.BLOB_TOO_LARGE, f"blob of {len(data)} bytes is over {self.limit_bytes}")
        actual = blob_hash(data)
        if actual != expected_hash:
            raise AspenError(ErrorCode.BLOB_CORRUPT, f"bytes hash to {actual}, not {expected_hash}")
        self._write(actual, data)
        return BlobRef(actual, len(data))

    def _write(self, h: str, data: bytes) -> None:
        path = self._path(h)
        if path.exists():
            return
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, h: str) -> bytes | None:
        check_hash(h)
        try:
            data = self._path(h).read_bytes()
        except FileNotFoundError:
            return None
        if blob_hash(data) != h:
            log.error("blob %s is corrupt on disk; removing it so it is fetched again", h)
            self.delete(h)
            return None
        return data

    def has(self, h: str) -> bool:
        check_hash(h)
        return self._path(h).exists()

    def size(self, h: str) -> int | None:
        check_hash(h)
        try:
            return self._path(h).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, h: str) -> bool:
        check_hash(h)
        try:
            self._path(h).unlink()
            return True
        except FileNotFoundError:
            return False

    def iter_hashes(self) -> Iterator[str]:
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    name = sub.name + f.name
                    if _HASH_RE.match(name):
                        yield name
