"""Content-addressed blob store on disk, named by BLAKE3 hex.

A blob lives at root/ab/cdef... (the first two hex characters name the directory). Writes go
to a uniquely named temporary file in the same directory, are fsynced, renamed over the final
name and the directory fsynced, so a crash leaves the whole blob or nothing. Bytes that do not
hash to their name are never returned: a corrupt file is removed and reported missing, so the
node fetches a good copy from a peer.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from storage.durable import fsync_dir
from storage.errors import StorageCode, StorageError
from storage.hashing import blob_hash, check_hash, is_blob_hash
from storage.limits import BLOB_MAX_BYTES

__all__ = ["BlobRef", "BlobStore", "blob_hash", "check_hash"]

log = logging.getLogger("aspen.blobs")
_TMP_PREFIX = "."
_TMP_SUFFIX = ".tmp"
_HEX = frozenset("0123456789abcdef")

Bytes = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class BlobRef:
    hash: str
    size: int  # bytes


class BlobStore:
    def __init__(self, root: Path, limit_bytes: int = BLOB_MAX_BYTES) -> None:
        self.root = Path(root)
        self.limit_bytes = limit_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_tmp()

    def _path(self, h: str) -> Path:
        return self.root / h[:2] / h[2:]

    def _size_checked(self, data: Bytes) -> int:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StorageError(
                StorageCode.INVALID_REQUEST, f"blob data: must be bytes, not {type(data).__name__}"
            )
        size_bytes = memoryview(data).nbytes
        if size_bytes > self.limit_bytes:
            raise StorageError(
                StorageCode.BLOB_TOO_LARGE, f"blob of {size_bytes} bytes is over {self.limit_bytes}"
            )
        return size_bytes

    def put(self, data: Bytes) -> BlobRef:
        size_bytes = self._size_checked(data)
        h = blob_hash(data)
        self._write(h, data, size_bytes)
        return BlobRef(h, size_bytes)

    def put_verified(self, expected_hash: str, data: Bytes) -> BlobRef:
        """Store bytes that claim to be expected_hash (from a peer): BLOB_CORRUPT if not."""
        check_hash(expected_hash)
        size_bytes = self._size_checked(data)
        actual = blob_hash(data)
        if actual != expected_hash:
            raise StorageError(StorageCode.BLOB_CORRUPT, f"bytes hash to {actual}, not {expected_hash}")
        self._write(actual, data, size_bytes)
        return BlobRef(actual, size_bytes)

    def _write(self, h: str, data: Bytes, size_bytes: int) -> None:
        path = self._path(h)
        try:
            # Same name and size: the same bytes unless the disk flipped bits, which get()
            # catches; skipping saves rewriting a blob that clients upload again.
            if path.stat().st_size == size_bytes:
                return
        except FileNotFoundError:
            pass
        path.parent.mkdir(exist_ok=True)
        # A unique temporary name: the node stores from a thread pool, maybe the same blob twice.
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        fsync_dir(path.parent)

    def get(self, h: str) -> bytes | None:
        check_hash(h)
        path = self._path(h)
        try:
            with open(path, "rb") as f:
                data = f.read()
                inode = os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            return None
        if blob_hash(data) == h:
            return data
        log.error("blob %s is corrupt on disk; removing it so it is fetched again", h)
        try:
            # Only the file we read: a good copy may have been renamed in meanwhile.
            if path.stat().st_ino == inode:
                path.unlink()
        except FileNotFoundError:
            pass
        return None

    def has(self, h: str) -> bool:
        """Whether a file for h exists (cheap: not re-hashed; get() verifies)."""
        return self._path(check_hash(h)).is_file()

    def size(self, h: str) -> int | None:
        try:
            return self._path(check_hash(h)).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, h: str) -> bool:
        try:
            self._path(check_hash(h)).unlink()
            return True
        except FileNotFoundError:
            return False

    def iter_hashes(self) -> Iterator[str]:
        """Hashes of the stored blobs, ascending (temporary files and strays are skipped)."""
        for sub in sorted(self.root.iterdir()):
            if len(sub.name) != 2 or not _HEX.issuperset(sub.name) or not sub.is_dir():
                continue
            for f in sorted(sub.iterdir()):
                h = sub.name + f.name
                if is_blob_hash(h) and f.is_file():
                    yield h

    def _remove_stale_tmp(self) -> None:
        # Left by a crash between mkstemp and rename; nothing else writes these names.
        for sub in self.root.iterdir():
            if len(sub.name) == 2 and sub.is_dir():
                for f in sub.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
                    try:
                        f.unlink()
                    except FileNotFoundError:
                        pass
