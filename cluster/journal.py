"""The Raft log on disk: fsynced in groups, one fdatasync per group.

pysyncobj's FileJournal writes through an mmap and never syncs it: an acknowledged entry
lived in the page cache only, and term and vote were renamed into place without an fsync.
This journal keeps pysyncobj's in-memory list and its file layout (a 40-byte header, then
records), in format 2, where each record ends with a CRC-32 of itself instead of repeating its
size. The CRC is what lets one fdatasync make a group durable:

- `add` only queues a record; `start_sync()` writes every queued record with one system call
  and hands one fdatasync to the journal's sync thread; `sync()` also waits for it. The
  leader starts its sync as it sends the same entries to the followers, so its own copy goes
  to disk while theirs travel (the tick thread waited for its own fdatasync after the sends
  before, on the critical path); RaftCore waits for it once per tick, before the leader
  counts its own copy toward a commit and before a follower acknowledges: group commit;
- the header's end-of-records offset is a lower bound that lags behind (written without an
  fsync of its own, and only ever over records already synced); a restart reads on past it
  while records are whole, carry a matching CRC and continue the index sequence, and cuts the
  file at the first one that does not (a record torn by the power loss, never acknowledged);
- truncation cuts the file itself, durably, before anything is written over the old bytes,
  so a stale record can never be read back past the header; compaction writes a new file and
  renames it;
- term and vote (the .meta file) are written durably before pysyncobj sends the vote;
- files are created 0600 in a 0700 directory, whatever the umask.

A format-1 journal (pysyncobj's own, written by older Aspen nodes) is read at start, with its
header as the end, and rewritten in format 2.

`fsync=False` (aspen-node --unsafe-no-fsync) skips every fsync; `shadow=True` is for tests:
each file also gets a `<name>.synced` twin holding exactly the bytes that were made durable,
which a test puts in place of the real files after killing every node, as a power loss would.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import pickle
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.durable import FILE_MODE, ensure_private_dir, fsync_dir

log = logging.getLogger("aspen.cluster.journal")

# pysyncobj's journal layout (pysyncobj/journal.py): a 40-byte header
#   name (24) | writer version (8) | u32 format | u32 end of records
# then records, in format 1 (pysyncobj's):  u32 size | u64 idx | u64 term | command | u32 size
#               in format 2 (ours):         u32 size | u64 idx | u64 term | command | u32 crc32
# where size = 16 + len(command) and the CRC covers everything before it in the record.
APP_NAME = b"PYSYNCOBJ"
NAME_BYTES = 24
VERSION_BYTES = 8
FORMAT_POS = NAME_BYTES + VERSION_BYTES
FORMAT_PYSYNCOBJ = 1
FORMAT_VERSION = 2
RECORD_OVERHEAD_BYTES = 24
LAST_OFFSET_POS = NAME_BYTES + VERSION_BYTES + 4
FIRST_RECORD_OFFSET = NAME_BYTES + VERSION_BYTES + 4 + 4
SHADOW_SUFFIX = ".synced"

Entry = tuple[bytes, int, int]


# fdatasync durations, for the metrics: etcd's wal_fsync_duration buckets (1 ms to 8 s), so
# dashboards and alerts written for etcd read ours the same way; past SLOW_FDATASYNC_S a sync is
# logged, as etcd logs "slow fdatasync" (an overloaded or failing disk, seen before it fails).
FDATASYNC_BUCKETS_S = tuple(0.001 * 2**i for i in range(14))
SLOW_FDATASYNC_S = 1.0


@dataclass(frozen=True, slots=True)
class SyncTimes:
    """How long the journal's fdatasyncs took: counts per bucket (upper bounds
    FDATASYNC_BUCKETS_S, then +Inf; not cumulative), their number and their sum."""

    counts: tuple[int, ...]
    count: int
    sum_s: float


class DurabilityLost(OSError):
    """An fdatasync of the journal failed: what it held may not be on disk, and no later sync
    can say otherwise (the kernel may have dropped the pages and cleared the error). Raised by
    that sync and every later one; the node stops on it (cluster/raft.py, fail-stop)."""


@dataclass(frozen=True, slots=True)
class Durability:
    fsync: bool = True
    shadow: bool = False  # tests only: keep a copy of exactly the synced bytes


def _header(version: bytes) -> bytes:
    return (APP_NAME.ljust(NAME_BYTES, b"\0") + version[:VERSION_BYTES - 1].ljust(VERSION_BYTES, b"\0")
            + struct.pack("<II", FORMAT_VERSION, FIRST_RECORD_OFFSET))


def _record(command: bytes, idx: int, term: int) -> bytes:
    head = struct.pack("<IQQ", 16 + len(command), idx, term)
    return head + command + struct.pack("<I", zlib.crc32(command, zlib.crc32(head)))


def _read_record(raw: bytes, offset: int, limit: int, fmt: int) -> tuple[Entry, int] | None:
    """The record at `offset` if it is whole before `limit` and checks out, and where the next
    one starts; None for anything else (a torn or zeroed tail, or damage)."""
    if offset + RECORD_OVERHEAD_BYTES > limit:
        return None
    size = struct.unpack_from("<I", raw, offset)[0]
    end = offset + 8 + size
    if size < 16 or end > limit:
        return None
    trailer = struct.unpack_from("<I", raw, end - 4)[0]
    check = size if fmt == FORMAT_PYSYNCOBJ else zlib.crc32(memoryview(raw)[offset:end - 4])
    if trailer != check:
        return None
    idx, term = struct.unpack_from("<QQ", raw, offset + 4)
    return (raw[offset + 20:end - 4], idx, term), end


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

    def take_unsynced(self) -> list[tuple[int, bytes]]:
        """The writes since the last call: what the next fdatasync makes durable."""
        taken, self._unsynced = self._unsynced, []
        return taken

    def apply_to_shadow(self, writes: list[tuple[int, bytes]]) -> None:
        for offset, data in writes:
            if data:
                os.pwrite(self.shadow_fd, data, offset)
            else:
                os.ftruncate(self.shadow_fd, offset)

    def close(self) -> None:
        os.close(self.fd)
        if self.shadow_fd >= 0:
            os.close(self.shadow_fd)


class _Syncer:
    """fdatasync on a thread of its own: request() returns at once with a ticket, wait(ticket)
    returns once everything written before that request is durable. Requests come from one
    thread at a time (the holder of RaftCore's tick lock); requests queued while an fdatasync
    runs share the next one. A file is only closed or cut after wait() (DurableJournal syncs
    first), so the thread never syncs a closed descriptor."""

    def __init__(self, durability: Durability) -> None:
        self._fsync = durability.fsync
        self._cond = threading.Condition()
        self._queued: list[tuple[_File, list[tuple[int, bytes]]]] = []
        self._requested = 0
        self.done = 0  # read without the lock by DurableJournal.dirty: an int, written under it
        self._error: OSError | None = None
        self._what = "fdatasync"  # what failed: the first failure's, kept
        self._stopping = False
        self._counts = [0] * (len(FDATASYNC_BUCKETS_S) + 1)  # under _cond
        self._sum_s = 0.0
        self._thread: threading.Thread | None = None

    def request(self, file: _File) -> int:
        writes = file.take_unsynced()
        if not self._fsync:  # never durable: the shadow does not get them
            self._requested += 1
            self.done = self._requested
            return self._requested
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="aspen-journal-sync", daemon=True)
                self._thread.start()
            self._queued.append((file, writes))
            self._requested += 1
            self._cond.notify()
            return self._requested

    @property
    def failed(self) -> bool:
        return self._error is not None

    def fail(self, exc: OSError, what: str) -> DurabilityLost:
        """A write to the journal's files failed (`what`): from now on, as after a failed
        fdatasync, every sync and wait raises (the first failure is the one reported)."""
        with self._cond:
            if self._error is None:
                self._error, self._what = exc, what
            self._cond.notify_all()
        return self.failure()

    def sync_now(self, file: _File) -> int:
        """fdatasync on the calling thread, after whatever the sync thread has in hand: for a
        caller with nothing to overlap (a follower about to acknowledge), no hand-off to the
        thread and back, which costs ~100 us on a loaded machine."""
        self.wait(self._requested)  # raises if an fdatasync failed before
        writes = file.take_unsynced()
        if self._fsync:
            started = time.monotonic()
            try:
                os.fdatasync(file.fd)
            except OSError as exc:
                raise self.fail(exc, "fdatasync") from exc
            self._took(time.monotonic() - started)
            if file.shadow_fd >= 0:
                file.apply_to_shadow(writes)
        with self._cond:
            self._requested += 1
            self.done = self._requested
            return self._requested

    def wait(self, ticket: int) -> None:
        if self.done >= ticket and self._error is None:
            return
        with self._cond:
            while self.done < ticket and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self.failure()

    def _took(self, seconds: float) -> None:
        with self._cond:
            self._counts[bisect.bisect_left(FDATASYNC_BUCKETS_S, seconds)] += 1
            self._sum_s += seconds
        if seconds >= SLOW_FDATASYNC_S:
            log.warning("slow fdatasync: %.3f s for the Raft journal (over %g s): the disk is overloaded "
                        "or failing (docs/OPERATIONS.md, \"A failed disk\")", seconds, SLOW_FDATASYNC_S)

    def times(self) -> SyncTimes:
        with self._cond:
            return SyncTimes(tuple(self._counts), sum(self._counts), self._sum_s)

    def failure(self) -> DurabilityLost:
        # The kernel may have dropped the unsynced pages: nothing written since the last good
        # sync can be trusted, so the node must not go on acknowledging.
        assert self._error is not None
        return DurabilityLost(self._error.errno, f"journal {self._what} failed: {self._error.strerror}")

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queued and not self._stopping:
                    self._cond.wait()
                if not self._queued:
                    return
                jobs, self._queued = self._queued, []
                target = self._requested
            try:
                synced: list[_File] = []
                for file, _ in jobs:
                    if file not in synced:
                        started = time.monotonic()
                        os.fdatasync(file.fd)
                        self._took(time.monotonic() - started)
                        synced.append(file)
                for file, writes in jobs:
                    if file.shadow_fd >= 0:
                        file.apply_to_shadow(writes)
            except OSError as exc:
                self.fail(exc, "fdatasync")
                return
            with self._cond:
                self.done = target
                self._cond.notify_all()


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
        self._header_end = FIRST_RECORD_OFFSET  # what the header's end offset says
        self.syncs = 0
        self._syncer = _Syncer(durability)
        self._ticket = 0  # the last sync requested
        created = not path.exists()
        self._file = _File(path, durability)
        if created or os.fstat(self._file.fd).st_size < FIRST_RECORD_OFFSET:
            self._file.truncate(0)
            self._file.pwrite(0, _header(version))
            self._sync_file()
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
        if raw[:len(APP_NAME)] != APP_NAME or len(raw) < FIRST_RECORD_OFFSET:
            raise ValueError(f"{self._path}: not a Raft journal (or its header is damaged)")
        fmt, end = struct.unpack_from("<II", raw, FORMAT_POS)
        if fmt not in (FORMAT_PYSYNCOBJ, FORMAT_VERSION) or not FIRST_RECORD_OFFSET <= end <= len(raw):
            raise ValueError(f"{self._path}: not a Raft journal of format 1 or 2 (or its header is damaged)")
        offset = FIRST_RECORD_OFFSET
        while offset < end:  # covered by the header: synced before it was written, must be whole
            found = _read_record(raw, offset, end, fmt)
            if found is None:
                raise ValueError(f"{self._path}: damaged record at offset {offset}")
            entry, offset = found
            self._entries.append(entry)
        self._header_end = end
        if fmt == FORMAT_PYSYNCOBJ:
            log.info("%s: rewriting a format-1 journal (%d entries) in format 2", self._path,
                     len(self._entries))
            self._rewrite(self._entries)
            return
        while True:  # past the header: what a group sync made durable, up to a torn tail
            found = _read_record(raw, offset, len(raw), fmt)
            if found is None:
                break
            entry, next_offset = found
            if self._entries and (entry[1] != self._entries[-1][1] + 1 or entry[2] < self._entries[-1][2]):
                break
            self._entries.append(entry)
            offset = next_offset
        self._end = offset
        if offset != len(raw):
            log.warning(
                "%s: %d bytes after the last whole record dropped (a write the power loss cut)",
                self._path,
                len(raw) - offset,
            )
            self._file.truncate(offset)
        if offset != end or offset != len(raw):
            self._write_end(offset)

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
        """Records were added that are not durable yet (queued, or their fdatasync runs)."""
        return bool(self._pending) or self._syncer.done < self._ticket or self._syncer.failed

    def start_sync(self) -> None:
        """Write what add() queued with one pwrite and start its fdatasync; do not wait."""
        if self._write_pending():
            self._ticket = self._syncer.request(self._file)

    def sync(self) -> None:
        """Make durable what add() queued (group commit): one pwrite, one fdatasync, on this
        thread; or wait for the sync thread if start_sync() already handed everything over."""
        if self._write_pending():
            self._ticket = self._syncer.sync_now(self._file)
        else:
            self._syncer.wait(self._ticket)

    def _write_pending(self) -> bool:
        """Write the queued records with one pwrite; False when there were none. Each write
        is followed by one sync (counted here). The records stay queued (`dirty`) until the
        write succeeded: a failed write (a full disk) must not look durable to the next sync."""
        if not self._pending:
            return False
        records = b"".join(self._pending)
        with self._storage("write"):
            self._file.pwrite(self._end, records)
        self._pending = []
        self._end += len(records)
        self.syncs += 1
        return True

    @contextlib.contextmanager
    def _storage(self, what: str) -> Iterator[None]:
        """Around every change to the journal's files: refused once one failed, and a failure
        (ENOSPC, EIO, ...) is DurabilityLost, sticky, as a failed fdatasync: the node stops
        (cluster/raft.py) instead of going on from a state its disk may not hold."""
        if self._syncer.failed:
            raise self._syncer.failure()
        try:
            yield
        except DurabilityLost:
            raise
        except OSError as exc:
            raise self._syncer.fail(exc, what) from exc

    def sync_times(self) -> SyncTimes:
        return self._syncer.times()

    def _sync_file(self) -> None:
        self._ticket = self._syncer.sync_now(self._file)

    def _write_end(self, end: int) -> None:
        with self._storage("header write"):
            self._file.pwrite(LAST_OFFSET_POS, struct.pack("<I", end))
        self._sync_file()
        self._header_end = end

    def _advance_header(self) -> None:
        # _end only ever moves over synced records, so whenever this page reaches the disk it
        # is true: no fsync of its own. It only shortens the scan at the next start.
        if self._header_end != self._end:
            with self._storage("header write"):
                self._file.pwrite(LAST_OFFSET_POS, struct.pack("<I", self._end))
            self._header_end = self._end

    def deleteEntriesFrom(self, entry_from: int) -> None:
        """Drop entries [entry_from:] (a follower's conflict). The file is cut, durably, before
        new records go where the old ones were: a restart reads past the header, and must not
        find a dropped record there."""
        self.sync()
        del self._entries[entry_from:]
        end = FIRST_RECORD_OFFSET + sum(RECORD_OVERHEAD_BYTES + len(e[0]) for e in self._entries)
        self._end = end
        with self._storage("truncation"):
            self._file.truncate(end)
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
        with self._storage("rewrite"):
            self._file.close()
            write_file_durably(self._path, header + body, self._durability)
            self._file = _File(self._path, self._durability)
        self._entries = list(keep)
        self._end = end
        self._header_end = end

    def _sync_snapshot(self) -> None:
        # pysyncobj writes the snapshot with a rename (and receives one the same way) without
        # fsyncing it; the log must not lose the entries the snapshot replaces before it is durable.
        if not self._durability.fsync or not self._snapshot_path.exists():
            return
        with self._storage("snapshot fsync"):
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
        with self._storage("term and vote write"):
            write_file_durably(self._meta_path, pickle.dumps(self._meta, protocol=2), self._durability)
        self._meta_dirty = False

    def onOneSecondTimer(self) -> None:
        if self._meta_dirty:
            self._store_meta()
        self._advance_header()

    def flush(self) -> None:
        self.sync()

    def _destroy(self) -> None:
        try:
            if not self._syncer.failed:  # after a failed fdatasync no sync can make anything durable
                self.sync()
        finally:
            self._syncer.close()
            self._file.close()
