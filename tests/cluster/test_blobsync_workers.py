"""Blob sync workers survive whatever a peer or a bug throws at them (cluster/blobsync.py).

A peer's reply without `data` raised KeyError, which no worker caught: the worker task ended and
this node stopped fetching blobs for good. Here a real BlobStore and BlobSync are given fetchers
that raise every kind of exception; the workers must log, count and go on to the next blob.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import blake3

from cluster.blobsync import BlobSync
from storage.blobs import BlobStore


def test_workers_survive_any_exception_and_keep_fetching(tmp_path: Path) -> None:
    good = b"the blob that must still arrive"
    good_hash = blake3.blake3(good).hexdigest()
    bad_hashes = [blake3.blake3(b"bad%d" % i).hexdigest() for i in range(6)]
    failures: list[BaseException] = [KeyError("data"), ValueError("x"), TypeError("y"), RuntimeError("z"),
                                      AttributeError("w"), IndexError("v")]
    recorded: list[str] = []

    async def fetch(_holder: int, blob_hash: str) -> bytes:
        if blob_hash == good_hash:
            return good
        raise failures[bad_hashes.index(blob_hash)]

    async def record(blob_hash: str, _size: int) -> None:
        recorded.append(blob_hash)

    async def run() -> None:
        store = BlobStore(tmp_path / "blobs")
        sync = BlobSync(node_id=1, store=store, fetch=fetch, holders_of=lambda _h: [2],
                        record_holder=record, missing=lambda: [])
        sync.start(asyncio.get_running_loop())
        try:
            for h in bad_hashes:
                sync.notice(h)
            sync.notice(good_hash)
            for _ in range(400):
                if store.has(good_hash):
                    break
                await asyncio.sleep(0.05)
            assert store.has(good_hash), "a worker died on a bad peer and stopped fetching"
            assert store.get(good_hash) == good and good_hash in recorded
            assert all(not t.done() for t in sync._tasks), "a worker task ended"
        finally:
            await sync.stop()

    asyncio.run(run())
