"""KvStore: versions, deletes, and prefix scans with pagination."""

from __future__ import annotations

import dataclasses

import pytest

from storage.kv import Entry, KvStore, ScanPage


def _store(keys: list[str]) -> KvStore:
    kv = KvStore()
    for i, key in enumerate(keys, start=1):
        kv.put(key, key.encode(), i)
    return kv


def _scan_all(kv: KvStore, prefix: str, limit: int) -> list[str]:
    """Follow next_after until the scan ends, as a client with continuation tokens would."""
    out: list[str] = []
    after: str | None = None
    while True:
        page = kv.scan(prefix, limit, after)
        assert len(page.entries) <= limit
        out.extend(k for k, _ in page.entries)
        if page.next_after is None:
            return out
        assert page.next_after == page.entries[-1][0]
        after = page.next_after


def test_put_creates_then_bumps_version_and_keeps_create_revision() -> None:
    kv = KvStore()
    assert kv.put("a", b"1", 5) == Entry(b"1", 1, 5, 5)
    assert kv.put("a", b"2", 9) == Entry(b"2", 2, 5, 9)
    assert kv.get("a") == Entry(b"2", 2, 5, 9)
    assert len(kv) == 1


def test_delete_then_recreate_restarts_version() -> None:
    kv = KvStore()
    kv.put("a", b"1", 1)
    kv.put("a", b"2", 2)
    assert kv.delete("a") is True
    assert kv.get("a") is None
    assert kv.delete("a") is False
    assert kv.put("a", b"3", 7) == Entry(b"3", 1, 7, 7)
    assert list(kv.keys()) == ["a"]


def test_entry_is_frozen_and_compares_by_value() -> None:
    entry = Entry(b"v", 1, 2, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.version = 2  # type: ignore[misc]
    assert entry == Entry(b"v", 1, 2, 3)
    assert hash(entry) == hash(Entry(b"v", 1, 2, 3))
    assert dataclasses.replace(entry, version=4) == Entry(b"v", 4, 2, 3)
    assert not hasattr(entry, "__dict__")


def test_scan_returns_keys_with_the_prefix_in_order() -> None:
    kv = _store(["b", "a/2", "a/1", "a", "ab", "a/10", "c", "a0"])
    page = kv.scan("a/", 100)
    assert [k for k, _ in page.entries] == ["a/1", "a/10", "a/2"]
    assert page.next_after is None
    assert page.entries[0][1] == kv.get("a/1")


def test_scan_with_prefixes_that_are_prefixes_of_each_other() -> None:
    keys = ["a", "a/", "a/b", "a/b/", "a/b/c", "a/bc", "a/c", "a0", "b"]
    kv = _store(keys)
    assert _scan_all(kv, "", 1) == sorted(keys)
    assert _scan_all(kv, "a", 2) == ["a", "a/", "a/b", "a/b/", "a/b/c", "a/bc", "a/c", "a0"]
    assert _scan_all(kv, "a/", 2) == ["a/", "a/b", "a/b/", "a/b/c", "a/bc", "a/c"]
    assert _scan_all(kv, "a/b", 1) == ["a/b", "a/b/", "a/b/c", "a/bc"]
    assert _scan_all(kv, "a/b/", 3) == ["a/b/", "a/b/c"]
    assert _scan_all(kv, "a/b/c", 3) == ["a/b/c"]
    assert _scan_all(kv, "a/b/c/", 3) == []
    assert _scan_all(kv, "zz", 3) == []


def test_scan_paginates_over_many_keys_with_every_page_size() -> None:
    keys = [f"user/{i:05d}" for i in range(2500)] + [f"users/{i}" for i in range(50)] + ["user", "usep"]
    kv = _store(keys)
    expected = sorted(k for k in keys if k.startswith("user/"))
    for limit in (1, 7, 999, 1000, 2500, 10_000):
        assert _scan_all(kv, "user/", limit) == expected


def test_next_after_is_none_when_the_page_ends_exactly_at_the_last_match() -> None:
    kv = _store(["p/1", "p/2", "q"])
    page = kv.scan("p/", 2)
    assert [k for k, _ in page.entries] == ["p/1", "p/2"]
    assert page.next_after is None
    page = kv.scan("p/", 1)
    assert page.next_after == "p/1"


def test_scan_after_positions() -> None:
    kv = _store(["p/1", "p/2", "p/3", "q"])
    # after below the prefix range: from the start of the range
    assert [k for k, _ in kv.scan("p/", 10, "a").entries] == ["p/1", "p/2", "p/3"]
    # after that is not itself a key: strictly after it
    assert [k for k, _ in kv.scan("p/", 10, "p/15").entries] == ["p/2", "p/3"]
    # after the last match, or past the range
    assert kv.scan("p/", 10, "p/3") == ScanPage([], None)
    assert kv.scan("p/", 10, "zzz") == ScanPage([], None)
    # after equal to the prefix (a key "p/" would be excluded, being equal)
    assert [k for k, _ in kv.scan("p/", 10, "p/").entries] == ["p/1", "p/2", "p/3"]


def test_scan_sees_deletes_and_new_keys_between_pages() -> None:
    kv = _store([f"k{i}" for i in range(10)])
    page = kv.scan("k", 3)
    assert page.next_after == "k2"
    kv.delete("k3")
    kv.put("k25", b"x", 100)
    page = kv.scan("k", 3, page.next_after)
    assert [k for k, _ in page.entries] == ["k25", "k4", "k5"]


def test_scan_rejects_a_non_positive_limit() -> None:
    with pytest.raises(ValueError):
        KvStore().scan("", 0)


class _CountingDict(dict[str, Entry]):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.reads = 0

    def __getitem__(self, key: str) -> Entry:
        self.reads += 1
        return super().__getitem__(key)


def test_scan_touches_only_the_page_not_the_whole_store() -> None:
    kv = _store([f"k/{i:06d}" for i in range(100_000)])
    counting = _CountingDict(kv._data)
    kv._data = counting
    page = kv.scan("k/05", 10, "k/050000")
    assert [k for k, _ in page.entries] == [f"k/{i:06d}" for i in range(50001, 50011)]
    assert counting.reads == 10


def test_rows_and_from_rows_round_trip_in_key_order() -> None:
    kv = _store(["c", "a", "b"])
    again = KvStore.from_rows(dict(kv.rows()))
    assert list(again.items()) == list(kv.items())
    assert [k for k, _ in kv.items()] == ["a", "b", "c"]
    assert again.scan("", 2).next_after == "b"


def test_stored_rows_cost_the_garbage_collector_nothing() -> None:
    # A full collection walked every Entry object: 0.28 s at 1M keys, long enough to hold Raft
    # heartbeats back. Rows of bytes and ints are untracked once they survive a collection.
    import gc

    kv = _store([f"k{i}" for i in range(1000)])
    gc.collect()
    assert not any(gc.is_tracked(row) for _, row in kv.rows())
    assert kv.get("k1") is not None and kv.get("k1").version == 1
