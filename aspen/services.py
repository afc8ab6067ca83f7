"""NodeServices: the node as its request handlers and the plugin host use it.

They took NativeHandlers and reached through it to the ReplicatedNode (`native.node`), and the
plugin host called the blob request handlers with request maps it built itself. They now take
this one object: commit an op through the log, wait for a read barrier or an applied index,
read the state, and store, fetch or look up a blob, each with its types. Cluster failures come
out as the wire's errors (aspen/codes.py), as the request handlers answer them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

from aspen.codes import wire_code, wire_error
from cluster import ReplicatedNode
from cluster.errors import ClusterError
from storage.blobs import BlobRef
from storage.state import StateMachine, validate_op
from wire import deadline
from wire.errors import AspenError, ErrorCode

T = TypeVar("T")


def _not_committed(timeout_s: float) -> AspenError:
    return AspenError(
        ErrorCode.TIMEOUT, f"not committed within {timeout_s}s; it may still apply", applied="unknown"
    )


def with_deadline(fut: asyncio.Future[T], timeout_s: float) -> Coroutine[Any, Any, T]:
    """Await a commit's future; past the deadline TIMEOUT (applied: unknown)."""
    return deadline.with_deadline(fut, timeout_s, partial(_not_committed, timeout_s))


def raise_result(result: tuple[Any, ...]) -> dict[str, Any]:
    """An op result as a response body, or its error raised."""
    if result[0] == "ok":
        return result[1]
    _, code, message, details = result
    raise AspenError(wire_code(code), message, **details)


class NodeServices:
    def __init__(self, replicated: ReplicatedNode, request_timeout_s: float) -> None:
        self.replicated = replicated
        self.timeout_s = request_timeout_s

    @property
    def node_id(self) -> int:
        return self.replicated.node_id

    # -- the log ---------------------------------------------------------------------------

    async def commit(self, op: list[Any]) -> dict[str, Any]:
        """Validate an op, put it through the log, and return its result body."""
        return (await self.commit_at(op))[0]

    async def commit_at(self, op: list[Any]) -> tuple[dict[str, Any], int]:
        """commit, also returning the log index the op was applied at."""
        error = validate_op(op)
        if error is not None:
            raise wire_error(error)
        try:
            result, index = await with_deadline(self.replicated.propose(op), self.timeout_s)
        except ClusterError as exc:
            raise wire_error(exc) from exc
        return raise_result(result), index

    # -- reads -----------------------------------------------------------------------------

    async def barrier(self, stale: bool = False) -> None:
        """Before a linearizable read: this node has applied all that was committed when it was
        asked (ReadIndex). A stale read skips it."""
        if not stale:
            try:
                await self.replicated.barrier(self.timeout_s)
            except ClusterError as exc:  # as commit_at: callers see the wire's errors only
                raise wire_error(exc) from exc

    def read(self, fn: Callable[[StateMachine], T]) -> T:
        return self.replicated.read(fn)

    # -- blobs -----------------------------------------------------------------------------

    async def put_blob(self, data: bytes) -> BlobRef:
        """Store the bytes here and record this node as a holder (through the log)."""
        loop = asyncio.get_running_loop()
        # Hashing and fsyncing up to 50 MiB would stall every other request on the loop.
        ref = await loop.run_in_executor(None, self.replicated.blobs.put, data)
        await self.commit(["blob_add", ref.hash, ref.size, self.node_id])
        return ref

    async def get_blob(self, blob_hash: str, *, local: bool = False) -> bytes | None:
        """The blob's bytes; unless `local`, fetched from a holder when the log knows of it."""
        data = self.replicated.blobs.get(blob_hash)
        if data is None and not local and await self._blob_known(blob_hash):
            data = await self.replicated.blob_sync.ensure(blob_hash)
        return data

    async def has_blob(self, blob_hash: str, *, local: bool = False) -> bool:
        held = self.replicated.blobs.has(blob_hash)
        if local or held:
            return held
        return await self._blob_known(blob_hash)

    async def _blob_known(self, blob_hash: str) -> bool:
        """The log records the blob. A miss is only an answer after a read barrier: a blob put
        through another node is committed before its put returns, but this node may not have
        applied that entry yet (followers hear of a commit with the next append, within
        cluster/raft.py's COMMIT_NOTICE_DELAY_S)."""
        if self.read(lambda s: s.blob_record(blob_hash)) is not None:
            return True
        await self.barrier()
        return self.read(lambda s: s.blob_record(blob_hash)) is not None
