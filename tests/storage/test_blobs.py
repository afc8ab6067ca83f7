"""BlobStore on real files: content addressing, verification, corruption, atomicity, limits."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import pytest

from storage.blobs import BlobRef, BlobStore
from storage.errors import StorageCode, StorageError
from storage.hashing import blob_hash, check_hash, is_blob_hash

MISSING = "0" * 64


def _hex(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def test_put_get_has_size_round_trip(store: BlobStore) -> None:
    ref = store.put(b"hello")
    assert ref == BlobRef(_hex(b"hello"), 5)
    assert store.get(ref.hash) == b"hello"
    assert store.has(ref.hash)
    assert store.size(ref.hash) == 5
    path = store.root / ref.hash[:2] / ref.hash[2:]
    assert path.read_bytes() == b"hello"


def test_missing_blob(store: BlobStore) -> None:
    assert store.get(MISSING) is None
    assert not store.has(MISSING)
    assert store.size(MISSING) is None
    assert store.delete(MISSING) is False


def test_empty_blob(store: BlobStore) -> None:
    ref = store.put(b"")
    assert ref == BlobRef(_hex(b""), 0)
    assert store.get(ref.hash) == b""


def test_put_is_idempotent_and_accepts_bytes_like(store: BlobStore) -> None:
    a = store.put(b"same")
    b = store.put(bytearray(b"same"))
    c = store.put(memoryview(b"same"))
    assert a == b == c
    assert list(store.iter_hashes()) == [a.hash]


def test_delete(store: BlobStore) -> None:
    ref = store.put(b"x")
    assert store.delete(ref.hash) is True
    assert not store.has(ref.hash)
    assert store.get(ref.hash) is None


def test_iter_hashes_lists_blobs_in_order_and_skips_strays(store: BlobStore) -> None:
    refs = [store.put(bytes([i]) * i) for i in range(20)]
    (store.root / "zz").mkdir()
    (store.root / "README").write_text("not a blob")
    (store.root / refs[0].hash[:2] / "short").write_bytes(b"")
    (store.root / refs[0].hash[:2] / (".x" + ".tmp")).write_bytes(b"")
    assert list(store.iter_hashes()) == sorted(r.hash for r in refs)


def test_put_verified_accepts_matching_bytes(store: BlobStore) -> None:
    data = b"from a peer"
    assert store.put_verified(_hex(data), data) == BlobRef(_hex(data), len(data))
    assert store.get(_hex(data)) == data


def test_put_verified_refuses_bytes_that_do_not_match(store: BlobStore) -> None:
    with pytest.raises(StorageError) as caught:
        store.put_verified(_hex(b"expected"), b"something else")
    assert caught.value.code == StorageCode.BLOB_CORRUPT
    assert not store.has(_hex(b"expected"))
    assert list(store.iter_hashes()) == []


def test_blob_size_limit(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, limit_bytes=10)
    assert store.put(b"x" * 10).size == 10
    for put in (lambda: store.put(b"x" * 11), lambda: store.put_verified(_hex(b"y" * 11), b"y" * 11)):
        with pytest.raises(StorageError) as caught:
            put()
        assert caught.value.code == StorageCode.BLOB_TOO_LARGE
    assert len(list(store.iter_hashes())) == 1


def test_default_limit_is_the_protocol_limit(store: BlobStore) -> None:
    assert store.limit_bytes == 50 * 1024 * 1024


def test_a_large_blob_round_trips(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024)  # over the threshold where hashing goes parallel
    ref = store.put(data)
    assert ref.hash == _hex(data) == blob_hash(data)
    assert store.get(ref.hash) == data


@pytest.mark.parametrize(
    "bad", ["", "abc", "A" * 64, "g" * 64, "a" * 65, " " + "a" * 63, "../" + "a" * 61, None, 5, b"a" * 64]
)
def test_bad_hash_strings_are_invalid_requests(store: BlobStore, bad: object) -> None:
    calls = [store.get, store.has, store.size, store.delete, lambda h: store.put_verified(h, b"")]
    for call in calls:
        with pytest.raises(StorageError) as caught:
            call(bad)  # type: ignore[arg-type]
        assert caught.value.code == StorageCode.INVALID_REQUEST
    assert not is_blob_hash(bad)
    with pytest.raises(StorageError):
        check_hash(bad)


def test_non_bytes_data_is_an_invalid_request(store: BlobStore) -> None:
    with pytest.raises(StorageError) as caught:
        store.put("text")  # type: ignore[arg-type]
    assert caught.value.code == StorageCode.INVALID_REQUEST


def test_a_corrupt_file_is_never_returned_and_is_removed(store: BlobStore) -> None:
    ref = store.put(b"precious bytes")
    path = store.root / ref.hash[:2] / ref.hash[2:]
    path.write_bytes(b"precious bytez")  # same size, one byte off
    assert store.get(ref.hash) is None
    assert not path.exists()
    assert not store.has(ref.hash)
    # and it can be stored again (fetched from a peer)
    store.put_verified(ref.hash, b"precious bytes")
    assert store.get(ref.hash) == b"precious bytes"


def test_a_truncated_file_is_rewritten_by_the_next_put(store: BlobStore) -> None:
    ref = store.put(b"0123456789")
    path = store.root / ref.hash[:2] / ref.hash[2:]
    path.write_bytes(b"01234")
    assert store.put(b"0123456789") == ref
    assert path.read_bytes() == b"0123456789"


def test_writes_leave_no_temporary_files(store: BlobStore) -> None:
    for i in range(10):
        store.put(str(i).encode())
    leftovers = [p for p in store.root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_failed_write_leaves_neither_blob_nor_temporary_file(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        store.put(b"never lands")
    monkeypatch.undo()
    h = _hex(b"never lands")
    assert not store.has(h)
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_stale_temporary_files_from_a_crash_are_removed_on_open(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    ref = store.put(b"kept")
    stale = store.root / ref.hash[:2] / ".deadbeef.tmp"
    stale.write_bytes(b"half a blob")
    again = BlobStore(tmp_path)
    assert not stale.exists()
    assert again.get(ref.hash) == b"kept"


def test_concurrent_puts_of_the_same_blob_from_threads(store: BlobStore) -> None:
    data = os.urandom(256 * 1024)
    with ThreadPoolExecutor(max_workers=8) as pool:
        refs = list(pool.map(lambda _: store.put(data), range(32)))
    assert {r.hash for r in refs} == {_hex(data)}
    assert store.get(_hex(data)) == data
    assert [p.name for p in store.root.rglob("*") if p.is_file()] == [_hex(data)[2:]]


def test_blobs_survive_reopening_the_store(tmp_path: Path) -> None:
    ref = BlobStore(tmp_path).put(b"durable")
    assert BlobStore(tmp_path).get(ref.hash) == b"durable"
