"""The Raft journal's file format 2: one fdatasync per group, records checked by CRC on restart.

The header's end offset lags behind the synced records (it is written without an fsync of its
own), so a restart reads past it. These tests build the files a power loss can leave: torn
tails, zeroed tails, flipped bits, records that do not continue the log, a truncation whose new
records never reached the disk, and a format-1 journal written by pysyncobj's own FileJournal."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import struct
import threading
import time
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal

from cluster import journal as journal_mod
from cluster.journal import (
    FIRST_RECORD_OFFSET,
    FORMAT_POS,
    FORMAT_VERSION,
    LAST_OFFSET_POS,
    SHADOW_SUFFIX,
    Durability,
    DurabilityLost,
    DurableJournal,
)

VERSION = b"0.3.17"


def open_journal(path: Path, shadow: bool = False) -> DurableJournal:
    return DurableJournal(path, Durability(fsync=True, shadow=shadow), version=VERSION,
                          sync_before_truncate=path.with_name("snapshot.bin"))


def random_entries(count: int, first_idx: int = 1, term: int = 1) -> list[tuple[bytes, int, int]]:
    return [(os.urandom(1 + (i * 37) % 300) + b"\xff\x00", first_idx + i, term) for i in range(count)]


def fill(path: Path, entries: list[tuple[bytes, int, int]]) -> None:
    journal = open_journal(path)
    for entry in entries:
        journal.add(*entry)
    journal.sync()
    journal._destroy()


def eio(*_args: object) -> None:
    """A failing disk: what fdatasync or fsync raise on an I/O error."""
    raise OSError(errno.EIO, "Input/output error")


def header_end(path: Path) -> int:
    return struct.unpack_from("<I", path.read_bytes(), LAST_OFFSET_POS)[0]


def test_synced_records_come_back_although_the_header_lags(tmp_path: Path) -> None:
    path = tmp_path / "journal.bin"
    entries = random_entries(200)
    fill(path, entries)
    # The header was never moved over them: only the CRC-checked scan finds them.
    assert header_end(path) == FIRST_RECORD_OFFSET
    assert struct.unpack_from("<I", path.read_bytes(), FORMAT_POS)[0] == FORMAT_VERSION
    journal = open_journal(path)
    assert list(journal) == entries
    assert header_end(path) == path.stat().st_size  # the restart moved the header over them


def test_one_fdatasync_per_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = open_journal(tmp_path / "journal.bin")
    calls = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(journal_mod.os, "fdatasync", counting)
    for entry in random_entries(64):
        journal.add(*entry)
    journal.sync()
    assert len(calls) == 1
    journal.onOneSecondTimer()  # moves the header over synced records: no fsync of its own
    assert len(calls) == 1
    journal._destroy()


@pytest.mark.parametrize("tail", [
    pytest.param(lambda rec: rec[: len(rec) // 2], id="half-record"),
    pytest.param(lambda rec: rec[:-1], id="all-but-the-crc-byte"),
    pytest.param(lambda rec: b"\0" * len(rec), id="zeroed"),
    pytest.param(lambda rec: rec[:30] + bytes([rec[30] ^ 1]) + rec[31:], id="one-bit-flipped"),
    pytest.param(lambda rec: os.urandom(len(rec)), id="garbage"),
    pytest.param(lambda rec: struct.pack("<I", 0x7FFF_FFFF) + rec[4:], id="huge-size-claim"),
])
def test_a_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path, tail, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal.bin"
    entries = random_entries(20)
    fill(path, entries)
    last = journal_mod._record(b"never acknowledged" * 10, 21, 1)
    with open(path, "ab") as f:
        f.write(tail(last))
    with caplog.at_level(logging.WARNING, logger="aspen.cluster.journal"):
        journal = open_journal(path)
    assert list(journal) == entries
    assert "dropped" in caplog.text
    journal.add(b"next", 21, 2)
    journal.sync()
    journal._destroy()
    assert list(open_journal(path)) == [*entries, (b"next", 21, 2)]


@pytest.mark.parametrize("stray", [(b"gap", 9, 1), (b"older term", 6, 0), (b"repeat", 5, 1)],
                         ids=["index-gap", "term-going-back", "index-repeated"])
def test_a_record_that_does_not_continue_the_log_ends_the_scan(tmp_path: Path, stray) -> None:
    path = tmp_path / "journal.bin"
    entries = random_entries(5)
    fill(path, entries)
    with open(path, "ab") as f:  # whole and its CRC correct, but not the next entry of this log
        f.write(journal_mod._record(*stray) + journal_mod._record(b"after it", stray[1] + 1, stray[2]))
    assert list(open_journal(path)) == entries


def test_damage_under_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.bin"
    fill(path, random_entries(10))
    open_journal(path)._destroy()  # the restart moves the header over all ten
    raw = bytearray(path.read_bytes())
    raw[FIRST_RECORD_OFFSET + 30] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged record"):
        open_journal(path)


def test_truncated_records_never_come_back(tmp_path: Path) -> None:
    """A follower drops a conflicting suffix, appends the leader's shorter entries, and loses
    power before syncing them: the dropped records must not be read back past the header."""
    path = tmp_path / "journal.bin"
    journal = open_journal(path, shadow=True)
    old = random_entries(30, term=1)
    for entry in old:
        journal.add(*entry)
    journal.sync()
    journal.deleteEntriesFrom(10)  # entries at positions 10.. (indexes 11..30) conflict
    journal.add(b"new leader's entry", 11, 2)  # queued, never synced
    os.replace(str(path) + SHADOW_SUFFIX, path)  # the power loss: only synced bytes remain
    reopened = open_journal(path)
    assert list(reopened) == old[:10]
    reopened.add(b"after restart", 11, 2)
    reopened.sync()
    reopened._destroy()
    assert list(open_journal(path)) == [*old[:10], (b"after restart", 11, 2)]


def test_a_pysyncobj_format_1_journal_is_read_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "journal.bin"
    entries = random_entries(50, first_idx=7, term=3)
    legacy = FileJournal(str(path))  # pysyncobj's own writer: format 1, size at both ends
    for command, idx, term in entries:
        legacy.add(command, idx, term)
    legacy._destroy()
    assert struct.unpack_from("<I", path.read_bytes(), FORMAT_POS)[0] == 1
    journal = open_journal(path)
    assert list(journal) == entries
    assert struct.unpack_from("<I", path.read_bytes(), FORMAT_POS)[0] == FORMAT_VERSION
    journal.add(b"more", 57, 3)
    journal.sync()
    journal._destroy()
    copy = tmp_path / "copy.bin"
    shutil.copy(path, copy)
    assert list(open_journal(copy)) == [*entries, (b"more", 57, 3)]


def test_start_sync_does_not_wait_and_dirty_holds_until_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader starts its fdatasync before sending the entries and waits for it only before
    counting its own copy: until the sync thread is done, the journal must say dirty (so no
    acknowledgement goes out) and the shadow must not have the records."""
    path = tmp_path / "journal.bin"
    journal = open_journal(path, shadow=True)
    release = threading.Event()
    entered = threading.Event()
    real = os.fdatasync

    def slow(fd: int) -> None:
        entered.set()
        assert release.wait(10)
        real(fd)

    monkeypatch.setattr(journal_mod.os, "fdatasync", slow)
    entries = random_entries(5)
    for entry in entries:
        journal.add(*entry)
    journal.start_sync()  # returns with the fdatasync still blocked
    assert entered.wait(10)
    assert journal.dirty
    assert list(open_journal(Path(str(path) + SHADOW_SUFFIX))) == []  # nothing durable yet
    more = random_entries(3, first_idx=6)
    for entry in more:  # queued while the first sync runs: they share the next one
        journal.add(*entry)
    journal.start_sync()
    release.set()
    journal.sync()
    assert not journal.dirty
    os.replace(str(path) + SHADOW_SUFFIX, path)  # a power loss now keeps all of them
    assert list(open_journal(path)) == [*entries, *more]


def test_a_failed_fdatasync_is_raised_not_taken_for_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = open_journal(tmp_path / "journal.bin")

    monkeypatch.setattr(journal_mod.os, "fdatasync", eio)
    journal.add(b"entry", 1, 1)
    with pytest.raises(OSError, match="fdatasync failed"):
        journal.sync()
    assert journal.dirty
    with pytest.raises(OSError, match="fdatasync failed"):  # and on every later sync too
        journal.sync()


def test_a_failed_write_keeps_the_records_queued_and_stops_every_later_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (ENOSPC on the pwrite): the records are not taken for written, let alone
    durable (`dirty` holds, so no acknowledgement goes out), the failure is DurabilityLost like
    a failed fdatasync, and every later sync, write, term/vote write and truncation raises."""
    journal = open_journal(tmp_path / "journal.bin")
    journal.add(b"first", 1, 1)
    journal.sync()
    real = os.pwrite

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_mod.os, "pwrite", full)
    journal.add(b"second", 2, 1)
    with pytest.raises(DurabilityLost, match="journal write failed: No space left"):
        journal.sync()
    assert journal.dirty
    monkeypatch.setattr(journal_mod.os, "pwrite", real)  # the disk has room again: too late
    with pytest.raises(DurabilityLost, match="journal write failed"):
        journal.sync()
    with pytest.raises(DurabilityLost):
        journal.start_sync()
    with pytest.raises(DurabilityLost):
        journal.setCurrentTerm(2, None)
    with pytest.raises(DurabilityLost):
        journal.deleteEntriesFrom(1)
    assert journal.dirty
    journal._destroy()  # a stop after the failure: no sync that can only fail, no exception
    assert [e[:2] for e in open_journal(tmp_path / "journal.bin")] == [(b"first", 1)]


def test_a_failed_term_and_vote_write_is_durability_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = open_journal(tmp_path / "journal.bin")

    monkeypatch.setattr(journal_mod.os, "fsync", eio)  # write_file_durably's fsync
    with pytest.raises(DurabilityLost, match="journal term and vote write failed"):
        journal.setCurrentTerm(5, "node2")
    assert journal.dirty
    journal._destroy()


def test_a_stop_after_a_failed_fdatasync_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = open_journal(tmp_path / "journal.bin")

    monkeypatch.setattr(journal_mod.os, "fdatasync", eio)
    journal.add(b"entry", 1, 1)
    journal.start_sync()  # the sync thread's fdatasync fails
    with pytest.raises(DurabilityLost):
        journal.sync()
    journal._destroy()


def test_fdatasync_times_are_counted_and_a_slow_one_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    journal = open_journal(tmp_path / "journal.bin")
    real = os.fdatasync
    delay_s = {"value": 0.0}

    def timed(fd: int) -> None:
        time.sleep(delay_s["value"])
        real(fd)

    monkeypatch.setattr(journal_mod.os, "fdatasync", timed)
    monkeypatch.setattr(journal_mod, "SLOW_FDATASYNC_S", 0.05)
    before = journal.sync_times()  # the new file's own
    for i in range(3):  # inline syncs (a follower's)
        journal.add(b"fast", i + 1, 1)
        journal.sync()
    delay_s["value"] = 0.06
    journal.add(b"slow", 4, 1)
    journal.start_sync()  # the sync thread's (a leader's)
    with caplog.at_level(logging.WARNING, logger="aspen.cluster.journal"):
        journal.sync()
    times = journal.sync_times()
    assert times.count - before.count == 4 and times.count == sum(times.counts)
    assert times.counts[-1] == 0 and times.sum_s >= 0.06
    slow_bucket = next(i for i, le in enumerate(journal_mod.FDATASYNC_BUCKETS_S) if le >= 0.06)
    assert times.counts[slow_bucket] == 1  # 0.06 s lands in the 0.064 s bucket
    assert [r.message for r in caplog.records if "slow fdatasync" in r.message], caplog.text
    journal._destroy()
