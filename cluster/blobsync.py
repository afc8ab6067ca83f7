"""Moves blobs between nodes: the log says who holds a blob, this fetches what we lack.

Blobs never travel in the Raft log. A `blob_add` entry records (hash, size, holder); a node
that applies one for a blob it lacks queues a fetch from a holder, checks the BLAKE3 hash of
what arrives, stores it, and records itself as a holder. A restarted or newly joined node
reconciles the whole index against its store, so it ends up with every blob.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cluster.errors import ClusterCode, ClusterError
from storage.blobs import BlobStore
from storage.errors import StorageCode, StorageError

log = logging.getLogger("aspen.blobsync")

QUEUE_MAX = 65_536
WORKERS = 2
RETRY_DELAY_S = 1.0
FETCH_ATTEMPTS_MAX = 5


class BlobSync:
    def __init__(
        self,
        *,
        node_id: int,
        store: BlobStore,
        fetch: Callable[[int, str], Awaitable[bytes]],
        holders_of: Callable[[str], list[int]],
        record_holder: Callable[[str, int], Awaitable[None]],
        missing: Callable[[], list[str]],
    ) -> None:
        self._node_id = node_id
        self._store = store
        self._fetch = fetch
        self._holders_of = holders_of
        self._record_holder = record_holder
        self._missing = missing
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
        self._in_progress: dict[str, asyncio.Future[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.fetched = 0
        self.failed = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._tasks = [loop.create_task(self._worker()) for _ in range(WORKERS)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    def notice(self, blob_hash: str) -> None:
        """Called from the apply thread for each recorded blob."""
        if self._loop is not None and not self._store.has(blob_hash):
            self._loop.call_soon_threadsafe(self._enqueue, blob_hash)

    def reconcile_soon(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._reconcile)

    def _reconcile(self) -> None:
        for blob_hash in self._missing():
            self._enqueue(blob_hash)

    def _enqueue(self, blob_hash: str) -> None:
        if blob_hash in self._in_progress:
            return
        try:
            self._queue.put_nowait(blob_hash)
        except asyncio.QueueFull:
            # Dropped here, not lost: the next reconcile (leader change, restart, or an
            # on-demand GetBlob) finds it missing again.
            log.warning("blob fetch queue full; %s deferred to the next reconcile", blob_hash)

    async def _worker(self) -> None:
        while True:
            blob_hash = await self._queue.get()
            try:
                if self._store.has(blob_hash):
                    # Present but not recorded (the record failed after a fetch): record it.
                    if self._node_id not in self._holders_of(blob_hash):
                        await self._record_holder(blob_hash, self._store.size(blob_hash))
                    continue
                await self.ensure(blob_hash)
            except (ClusterError, StorageError) as exc:
                self.failed += 1
                log.warning("could not fetch blob %s: %s", blob_hash, exc)
            except Exception:  # a malformed reply or a bug: this blob fails, the worker goes on
                self.failed += 1
                log.exception("fetching blob %s failed unexpectedly", blob_hash)

    async def ensure(self, blob_hash: str) -> bytes:
        """The blob's bytes, fetched from a holder if this node lacks them (deduplicated)."""
        data = self._store.get(blob_hash)
        if data is not None:
            return data
        running = self._in_progress.get(blob_hash)
        if running is not None:
            return await asyncio.shield(running)
        assert self._loop is not None
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._in_progress[blob_hash] = fut
        try:
            data = await self._fetch_with_retries(blob_hash)
            fut.set_result(data)
            return data
        except Exception as exc:  # every waiter must hear of it, whatever it is
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters may be gone
            raise
        finally:
            del self._in_progress[blob_hash]

    async def _fetch_with_retries(self, blob_hash: str) -> bytes:
        last: Exception | None = None
        for attempt in range(FETCH_ATTEMPTS_MAX):
            holders = [h for h in self._holders_of(blob_hash) if h != self._node_id]
            if not holders:
                raise ClusterError(ClusterCode.BLOB_NOT_FOUND, f"no node holds blob {blob_hash}")
            for holder in holders:
                try:
                    data = await self._fetch(holder, blob_hash)
                    ref = self._store.put_verified(blob_hash, data)
                    self.fetched += 1
                    await self._record_holder(blob_hash, ref.size)
                    return data
                except (ClusterError, StorageError) as exc:
                    last = exc
                    if exc.code == StorageCode.BLOB_CORRUPT:
                        log.error("node %s sent corrupt bytes for blob %s", holder, blob_hash)
                except (OSError, TimeoutError) as exc:
                    last = exc
            await asyncio.sleep(RETRY_DELAY_S * (attempt + 1))
        raise ClusterError(ClusterCode.BLOB_NOT_FOUND, f"blob {blob_hash} unreachable: {last}")
