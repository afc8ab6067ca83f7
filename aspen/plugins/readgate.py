"""Plugin requests that need a read barrier, passed through it a loop turn's worth at a time.

A plugin that may read KV gets a linearizable read barrier before each call (its kv_get
calls then read local state at least as new as the call's start). The requests that arrive
in one loop turn, a burst from 64 clients say, wait behind one barrier: one task, one
deadline timer and one wake-up for all of them, where a task per request (with its
coroutines, future and timer) cost the event loop several microseconds each, the largest
part of what a plugin request cost the loop beyond a native read (benchmarks/README.md,
"Measurements behind the code").

Still linearizable: a batch's barrier asks for its read index only once the batch's task has
started, after every request in it arrived (requests that arrive later open the next batch).
Every request is answered: the barrier's error, or UNAVAILABLE when the node stops, goes to
each request of its batch. A batch holds what arrived in one loop turn, which the server's
per-connection in-flight bound limits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from wire.errors import AspenError, ErrorCode

Waiting = tuple[Any, dict[str, Any], Callable[..., None], Any]  # (plugin, request, finish, token)
Barrier = Callable[[float], Awaitable[None]]
log = logging.getLogger("aspen.plugins")


class ReadGate:
    def __init__(self, barrier: Barrier, timeout_s: float, then: Callable[[Waiting], None]) -> None:
        self._barrier = barrier
        self._timeout_s = timeout_s
        self._then = then  # hands one request on once its batch passed the barrier
        self._open: list[Waiting] | None = None  # the batch still taking this turn's requests
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def add(self, waiting: Waiting) -> None:
        """From the event loop's thread: `waiting` passes with this turn's batch; once the gate
        is closed, it is answered UNAVAILABLE at once."""
        if self._closed:
            _answer(waiting, _stopping())
            return
        batch = self._open
        if batch is None:
            batch = self._open = []
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, batch))
        batch.append(waiting)

    def close(self) -> None:
        """The node is stopping: every waiting request is answered UNAVAILABLE (_done), and so
        is every later one."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()

    async def _run(self, batch: list[Waiting]) -> None:
        if self._open is batch:
            self._open = None
        await self._barrier(self._timeout_s)
        passed = batch.copy()
        batch.clear()  # handed on: _done has no one left to answer
        for waiting in passed:
            try:
                self._then(waiting)
            except Exception as exc:  # refused (the plugin's queue is full, say): answered, never lost
                _answer(waiting, exc)

    def _done(self, batch: list[Waiting], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._open is batch:  # cancelled before it started
            self._open = None
        if task.cancelled():
            error: BaseException = _stopping()
        else:
            exc = task.exception()
            if exc is None:
                return
            error = exc  # the barrier timed out or was refused: answered, never dropped
        waiting, batch[:] = batch.copy(), []
        for one in waiting:
            _answer(one, error)


def _stopping() -> AspenError:
    return AspenError(ErrorCode.UNAVAILABLE, "the node is stopping", applied="no")


def _answer(waiting: Waiting, error: BaseException) -> None:
    """Answer one request with an error; a failing answer costs the rest of its batch nothing."""
    _, _, finish, token = waiting
    try:
        finish(token, None, error)
    except Exception:
        log.exception("answering a plugin request that could not pass the read barrier failed")
