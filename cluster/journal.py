"""The Raft log on disk, fsynced in groups, in pysyncobj's journal format.

pysyncobj's FileJournal writes through an mmap and never syncs it: an acknowledged entry
lived in the page cache only, and term and vote were renamed into place without an fsync.
This journal keeps pysyncobj's file format (a journal written by either reads in the other)
and its in-memory list, but:

- `add` only queues a record; `sync()` writes every queued record with one system call,
  fdatasyncs, and only then moves the header's end-of-records offset over them (and fdatasyncs
  again), so the header never covers a record that is not on disk. RaftCore calls `sync()`
  once per tick, before the leader counts its own copy toward a commit and before a follower
  acknowledges: group commit, one or two fdatasyncs for everything that arrived meanwhile;
- truncation and compaction are made durable before anything is written over the old bytes
  (compaction writes a new file and renames it);
- term and vote (the .meta file) are written durably before pysyncobj sends the vote;
- files are created 0600 in a 0700 directory, whatever the umask.

`fsync=False` (aspen-node --unsafe-no-fsync) skips every fsync; `shadow=True` is for tests:
each file also gets a `<name>.synced` twin holding exactly the bytes that were made durable,
which a test puts in place of the real files after killing every node, as a power loss would.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.durable import FILE_MODE, ensure_private_dir, fsync_dir

log = logging.getLogger("aspen.cluster.journal")

# pysyncobj's journal format (pysyncobj/journal.py): a 40-byte header, then records
#   u32 size | u64 idx | u64 term | command | u32 size      (size = 16 + len(command))
APP_NAME = b"PYSYNCOBJ"
NAME_BYTES = 24
VERSION_BYTES = 8
FORMAT_VERSION = 1
LAST_OFFSET_POS = NAME_BYTES + VERSION_BYTES + 4
FIRST_RECORD_OFFSET = NAME_BYTES + VERSION_BYTES + 4 + 4
SHADOW_SUFFIX = ".synced"

Entry = tuple[bytes, int, int]


@dataclass(frozen=True, slots=True)
class Durability:
    fsync: bool = True
    shadow: bool = False  # tests only: keep a copy of exactly the synced bytes


def _header(version: bytes) -> bytes:
    return (APP_NAME.ljust(NAME_BYTES, b"\0") + version[:VERSION_BYTES - 1].ljust(VERSION_BYTES, b"\0")
            + struct.pack("<II", FORMAT_VERSION, FIRST_RECORD_OFFSET))


def _record(command: bytes, idx: int, term: int) -> bytes:
    size = struct.pack("<I", 16 + len(command))
    return size + struct.pack("<QQ", idx, term) + command + size


class _File:
    """One file written at offsets; with shadow, a twin updated at each sync to what is durable."""

    def __init__(self, path: Path, durability: Durability) -> None:
        self.path = path
        self.durability = durability
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        os.fchmod(self.fd, FILE_MODE)
        self._unsynced: list[tuple[int, bytes]] = []
        self.shadow_fd = -1
        if durability.shadow:
            self.shadow_fd = os.open(str(path) + SHADOW_SUFFIX, os.O_RDWR | os.O_CREAT, FILE_MODE)

    def pwrite(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        done = 0
        while done < len(data):
            done += os.pwrite(self.fd, view[done:], offset + done)
        if self.shadow_fd >= 0:
            self._unsynced.append((offset, data))

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        if self.shadow_fd >= 0:
            self._unsynced.append((size, b""))  # a truncation marker: (size, empty)

    def sync(self) -> None:
        if not self.durability.fsync:
            self._unsynced.clear()  # never durable: the shadow does not get them
            return
        os.fdatasync(self.fd)
        if self.shadow_fd >= 0:
            for offset, data in self._unsynced:
                if data:
                    os.pwrite(self.shadow_fd, data, offset)
                else:
                    os.ftruncate(self.shadow_fd, offset)
            self._unsynced.clear()

    def close(self) -> None:
        os.close(self.fd)
        if self.shadow_fd >= 0:
            os.close(self.shadow_fd)


def write_file_durably(path: Path, data: bytes, durability: Durability) -> None:
    """Replace `path` by `data` atomically (temp file, fsync, rename, fsync of the directory)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, data)
        if durability.fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durability.fsync:
        fsync_dir(path.parent)
        if durability.shadow:
            shadow = path.with_name(path.name + SHADOW_SUFFIX)
            stmp = shadow.with_name(shadow.name + ".tmp")
            stmp.write_bytes(data)
            os.chmod(stmp, FILE_MODE)
            os.replace(stmp, shadow)


class DurableJournal:
    """pysyncobj's Journal interface (add, clear, deleteEntriesFrom/To, term, vote, commit)."""

    def __init__(
        self, path: Path, durability: Durability, *, version: bytes, sync_before_truncate: Path
    ) -> None:
        ensure_private_dir(path.parent)
        self._path = path
        self._durability = durability
        self._version = version
        self._snapshot_path = sync_before_truncate  # made durable before the log drops entries
        self._meta_path = path.with_name(path.name + ".meta")
        self._entries: list[Entry] = []
        self._pending: list[bytes] = []
        self._end = FIRST_RECORD_OFFSET  # where the next record goes
        self.syncs = 0
        created = not path.exists()
        self._file = _File(path, durability)
        if created or os.fstat(self._file.fd).st_size < FIRST_RECORD_OFFSET:
            self._file.truncate(0)
            self._file.pwrite(0, _header(version))
            self._file.sync()
            if durability.fsync:
                fsync_dir(path.parent)
        else:
            self._load()
        self._meta = self._read_meta()
        self._meta_dirty = False

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        size = os.fstat(self._file.fd).st_size
        with open(self._path, "rb") as f:
            raw = f.read(size)
        end = struct.unpack_from("<I", raw, LAST_OFFSET_POS)[0]
        if raw[:len(APP_NAME)] != APP_NAME or not FIRST_RECORD_OFFSET <= end <= len(raw):
            raise ValueError(f"{self._path}: not a Raft journal (or its header is damaged)")
        offset = FIRST_RECORD_OFFSET
        view = memoryview(raw)
        while offset < end:
            size_rec = struct.unpack_from("<I", raw, offset)[0]
            if size_rec < 16 or offset + 8 + size_rec > end:
                raise ValueError(f"{self._path}: damaged record at offset {offset}")
            idx, term = struct.unpack_from("<QQ", raw, offset + 4)
            self._entries.append((bytes(view[offset + 20:offset + 4 + size_rec]), idx, term))
            offset += size_rec + 8
        self._end = end

    def _read_meta(self) -> dict[str, Any]:
        try:
            raw = self._meta_path.read_bytes()
        except FileNotFoundError:
            return {}
        # Written by this process or pysyncobj: pickled {currentTerm, votedForNodeId, raftCommitIndex}
        # in our own data dir, next to the journal it describes.
        meta = pickle.loads(raw)
        return meta if isinstance(meta, dict) else {}

    # -- the log -----------------------------------------------------------------------------

    def add(self, command: bytes | str, idx: int, term: int) -> None:
        if isinstance(command, str):
            command = command.encode()
        self._entries.append((command, idx, term))
        self._pending.append(_record(command, idx, term))

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def dirty(self) -> bool:
        return bool(self._pending)

    def sync(self) -> None:
        """Write and make durable what add() queued (group commit), then the header over it."""
        if self._pending:
            records = b"".join(self._pending)
            self._pending = []
            self._file.pwrite(self._end, records)
            self._end += len(records)
            self._file.sync()  # the records first: the header must never cover bytes not on disk
            self._write_end(self._end)
            self.syncs += 1

    def _write_end(self, end: int) -> None:
        self._file.pwrite(LAST_OFFSET_POS, struct.pack("<I", end))
        self._file.sync()

    def deleteEntriesFrom(self, entry_from: int) -> None:
        """Drop entries [entry_from:] (a follower's conflict). Durable before new records overwrite them."""
        self.sync()
        del self._entries[entry_from:]
        end = FIRST_RECORD_OFFSET + sum(24 + len(e[0]) for e in self._entries)
        self._end = end
        self._write_end(end)

    def deleteEntriesTo(self, entry_to: int) -> None:
        """Drop entries [:entry_to] (compaction after a snapshot): a new file, renamed in."""
        self.sync()
        self._sync_snapshot()
        keep = self._entries[entry_to:]
        self._rewrite(keep)

    def clear(self) -> None:
        """Empty the log (pysyncobj loads a snapshot next and adds its last two entries)."""
        self.sync()
        self._sync_snapshot()
        self._rewrite([])

    def _rewrite(self, keep: list[Entry]) -> None:
        body = b"".join(_record(*e) for e in keep)
        end = FIRST_RECORD_OFFSET + len(body)
        header = _header(self._version)
        header = header[:LAST_OFFSET_POS] + struct.pack("<I", end)
        self._file.close()
        write_file_durably(self._path, header + body, self._durability)
        self._file = _File(self._path, self._durability)
        self._entries = list(keep)
        self._end = end

    def _sync_snapshot(self) -> None:
        # pysyncobj writes the snapshot with a rename (and receives one the same way) without
        # fsyncing it; the log must not lose the entries the snapshot replaces before it is durable.
        if not self._durability.fsync or not self._snapshot_path.exists():
            return
        fd = os.open(self._snapshot_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self._snapshot_path.parent)
        if self._durability.shadow:
            shadow = self._snapshot_path.with_name(self._snapshot_path.name + SHADOW_SUFFIX)
            shadow.write_bytes(self._snapshot_path.read_bytes())

    # -- term, vote, commit index ------------------------------------------------------------

    def setCurrentTerm(self, term: int, voted_for: Any) -> None:
        # Raft: term and vote are durable before any message that reflects them is sent.
        self._meta["currentTerm"] = term
        self._meta["votedForNodeId"] = voted_for
        self._store_meta()

    def getCurrentTerm(self) -> int:
        return int(self._meta.get("currentTerm", 0))

    def getVotedForNodeId(self) -> Any:
        return self._meta.get("votedForNodeId")

    def setRaftCommitIndex(self, index: int) -> None:
        # Not needed for safety (Raft's commit index is volatile): stored once a second at most.
        if self._meta.get("raftCommitIndex") != index:
            self._meta["raftCommitIndex"] = index
            self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:
        return int(self._meta.get("raftCommitIndex", 1))

    def _store_meta(self) -> None:
        write_file_durably(self._meta_path, pickle.dumps(self._meta, protocol=2), self._durability)
        self._meta_dirty = False

    def onOneSecondTimer(self) -> None:
        if self._meta_dirty:
            self._store_meta()

    def flush(self) -> None:
        self.sync()

    def _destroy(self) -> None:
        self.sync()
        self._file.close()
