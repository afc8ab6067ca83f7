"""Group commit: many client ops per Raft log entry.

pysyncobj costs about one network round per entry whatever its size, so the proposer packs
every op that arrived during one event-loop turn into one entry, keeps at most
`entries_in_flight_max` entries in flight, and packs whatever queued meanwhile into the next
entry when one completes. At low load a write goes out alone and at once (no timer wait);
at high load entries grow up to `entry_ops_max` ops or `entry_bytes_max` bytes.

Runs on the event loop thread; only `_on_committed` is entered from pysyncobj's thread.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
from pysyncobj import FAIL_REASON

from cluster.errors import ClusterCode, ClusterError

ENTRY_HEADER_MAX_BYTES = 5  # the msgpack array header in front of an entry's ops
Submit = Callable[[bytes, Callable[[Any, int], None]], None]

# Which pysyncobj failures mean the entry certainly did not apply (safe to retry).
_NOT_APPLIED = {FAIL_REASON.QUEUE_FULL, FAIL_REASON.MISSING_LEADER, FAIL_REASON.DISCARDED}


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 0x10000:
        return b"\xdc" + struct.pack(">H", count)
    return b"\xdd" + struct.pack(">I", count)


def failure_error(reason: int) -> ClusterError:
    if reason == FAIL_REASON.QUEUE_FULL:
        return ClusterError(
            ClusterCode.OVERLOADED, "the Raft command queue is full; retry later", applied="no"
        )
    if reason in _NOT_APPLIED:
        return ClusterError(
            ClusterCode.UNAVAILABLE, "no leader is available to commit the write", applied="no"
        )
    return ClusterError(
        ClusterCode.UNAVAILABLE,
        "leadership changed before the write was confirmed; it may or may not have applied",
        applied="unknown",
    )


class Proposer:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        submit: Submit,
        *,
        entries_in_flight_max: int,
        entry_ops_max: int,
        entry_bytes_max: int,
        entry_max_bytes: int,
        pending_ops_max: int,
    ) -> None:
        self._loop = loop
        self._submit = submit
        self._in_flight_max = entries_in_flight_max
        self._entry_ops_max = entry_ops_max
        self._entry_bytes_max = entry_bytes_max
        self._entry_max_bytes = entry_max_bytes
        self._pending_max = pending_ops_max
        self._pending: deque[tuple[bytes, asyncio.Future[Any]]] = deque()
        self._in_flight = 0
        self._flush_scheduled = False
        self._packer = msgpack.Packer(use_bin_type=True)
        self.entries_submitted = 0
        self.ops_submitted = 0

    def propose(self, op: list[Any]) -> asyncio.Future[Any]:
        """Queue one op; the future resolves to (result, log_index) once applied."""
        if len(self._pending) >= self._pending_max:
            raise ClusterError(ClusterCode.OVERLOADED, "too many writes waiting for the log; retry later")
        op_bytes = self._packer.pack(op)
        if len(op_bytes) + ENTRY_HEADER_MAX_BYTES > self._entry_max_bytes:
            raise ClusterError(
                ClusterCode.VALUE_TOO_LARGE,
                f"one write of {len(op_bytes)} bytes is over the log entry limit {self._entry_max_bytes}",
                applied="no",
            )
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((op_bytes, fut))
        if not self._flush_scheduled and self._in_flight < self._in_flight_max:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending = self._pending
        while pending and self._in_flight < self._in_flight_max:
            packed: list[bytes] = []
            futures: list[asyncio.Future[Any]] = []
            size = 0
            while pending and len(packed) < self._entry_ops_max:
                op_bytes, fut = pending[0]
                if packed and size + len(op_bytes) > self._entry_bytes_max:
                    break
                pending.popleft()
                if fut.cancelled():
                    continue
                packed.append(op_bytes)
                futures.append(fut)
                size += len(op_bytes)
            if not packed:
                continue
            payload = _array_header(len(packed)) + b"".join(packed)
            self._in_flight += 1
            self.entries_submitted += 1
            self.ops_submitted += len(packed)

            def on_committed(res: Any, err: int, futures: list[asyncio.Future[Any]] = futures) -> None:
                self._loop.call_soon_threadsafe(self._complete, futures, res, err)

            try:
                self._submit(payload, on_committed)
            except Exception as exc:  # pysyncobj refused synchronously (e.g. shutting down)
                self._complete(futures, None, FAIL_REASON.REQUEST_DENIED, exc)

    def _complete(
        self, futures: list[asyncio.Future[Any]], res: Any, err: int, exc: Exception | None = None
    ) -> None:
        self._in_flight -= 1
        if err == FAIL_REASON.SUCCESS:
            index, results = res
            if len(results) == len(futures):
                for fut, result in zip(futures, results, strict=True):
                    if not fut.done():
                        fut.set_result((result, index))
            else:  # the entry could not be decoded on apply: a bug, never a silent drop
                error = ClusterError(ClusterCode.INTERNAL, f"log entry {index} gave {len(results)} results")
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(error)
        else:
            error = exc if isinstance(exc, ClusterError) else failure_error(err)  # refused, and said why
            for fut in futures:
                if not fut.done():
                    fut.set_exception(error)
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def fail_all(self, error: ClusterError) -> None:
        while self._pending:
            _, fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(error)
