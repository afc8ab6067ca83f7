"""One thread per plugin: its calls run one at a time, off the event loop, in arrival order.

Cheaper than a ThreadPoolExecutor hop per call: the worker takes every call queued so far in
one wake-up and hands all their results back to the loop in one callback, so at 64 requests in
flight a plugin pays one thread switch per batch, not per request. Handing each result back as
soon as it is ready would have the woken loop and the worker trade the GIL on every guest call
(benchmarks/README.md, "Measurements behind the code").

Calls posted during one loop turn are handed to the worker together at the turn's end, with one
wake-up and one take of its mutex: woken at the first, the worker would only wait for the GIL
while the loop posts the rest (benchmarks/README.md). The wake-up is a plain Lock the idle worker blocks on,
released by the hand-over
only when the worker is idle: a Condition allocates a waiter lock on every wait and takes its
own lock twice. Bounded: past `queue_max` queued calls, post refuses with OVERLOADED.

A call's result goes to `done(token, result, error)` on the loop: a request's answer is written
from there without a future, task or coroutine per call (aspen/server.py's Dispatch); `submit`
is the same call awaited through a future, for everything else.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from wire.errors import AspenError, ErrorCode

QUEUE_MAX = 1024
Done = Callable[[Any, Any, "BaseException | None"], None]  # done(token, result, error), on the loop
Call = tuple[Callable[..., Any], tuple[Any, ...], Done, Any]
Outcome = tuple[Done, Any, Any, "BaseException | None"]
log = logging.getLogger("aspen.plugins")


class PluginWorker:
    def __init__(self, name: str, loop: asyncio.AbstractEventLoop, queue_max: int = QUEUE_MAX) -> None:
        self.name = name
        self._loop = loop
        self._queue_max = queue_max
        self._queue: deque[Call] = deque()
        self._posted: list[Call] = []  # posted during this loop turn; handed over at its end (_hand_over)
        self._hand_over_scheduled = False
        self._mutex = threading.Lock()  # guards _queue, _idle and _closed
        self._wake = threading.Lock()  # held while the worker has nothing to do; released to wake it
        self._wake.acquire()
        self._idle = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"plugin-{name}", daemon=True)
        self._thread.start()

    def pending(self) -> int:
        return len(self._queue) + len(self._posted)

    def post(self, fn: Callable[..., Any], args: tuple[Any, ...], done: Done, token: Any) -> None:
        """Queue fn(*args); `done(token, result, error)` runs on the loop once it has run. From the
        loop's thread: the calls posted in one loop turn reach the worker together at its end,
        with one wake-up (waking it at the first would only have it wait for the GIL meanwhile)."""
        if self._closed:  # set once, on the loop's thread (close)
            raise AspenError(ErrorCode.UNAVAILABLE, f"plugin {self.name} was unloaded")
        if len(self._queue) + len(self._posted) >= self._queue_max:
            raise AspenError(ErrorCode.OVERLOADED, f"plugin {self.name} has {self._queue_max} calls queued")
        self._posted.append((fn, args, done, token))
        if not self._hand_over_scheduled:
            self._hand_over_scheduled = True
            self._loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        self._hand_over_scheduled = False
        with self._mutex:
            self._queue.extend(self._posted)
            self._posted.clear()
            if self._idle:
                self._idle = False
                self._wake.release()

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self._loop.create_future()
        self.post(fn, args, _resolve, fut)
        return fut

    def close(self, then: Callable[[], Any] | None = None) -> asyncio.Future[Any] | None:
        """Stop after the calls already queued (they still run), then run `then` last, past the
        queue bound (a plugin's shutdown must run even behind a full queue); its future, or
        None when there is no `then` or the worker was closed already."""
        fut: asyncio.Future[Any] | None = None
        with self._mutex:
            self._queue.extend(self._posted)  # accepted before the close: they still run
            self._posted.clear()
            if not self._closed and then is not None:
                fut = self._loop.create_future()
                self._queue.append((then, (), _resolve, fut))
            self._closed = True
            if self._idle:
                self._idle = False
                self._wake.release()
        return fut

    def _take(self) -> list[Call] | None:
        """Every call queued so far, blocking while there is none; None once closed and empty."""
        while True:
            with self._mutex:
                if self._queue:
                    batch = list(self._queue)
                    self._queue.clear()
                    return batch
                if self._closed:
                    return None
                self._idle = True
            self._wake.acquire()  # submit or close releases it exactly once per idle spell

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            outcomes: list[Outcome] = []
            for fn, args, done, token in batch:
                try:
                    outcomes.append((done, token, fn(*args), None))
                except BaseException as exc:  # delivered to the waiting request, never lost
                    outcomes.append((done, token, None, exc))
            try:
                self._loop.call_soon_threadsafe(_settle, outcomes)
            except RuntimeError:  # the loop is closed: the node is shutting down
                return


def _settle(outcomes: list[Outcome]) -> None:
    for done, token, result, exc in outcomes:
        try:
            done(token, result, exc)
        except Exception:  # one failed answer must not cost the rest of the batch theirs
            log.exception("a plugin call's completion failed")


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # cancelled by its awaiter meanwhile
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)
