"""One thread per plugin: its calls run one at a time, off the event loop, in arrival order.

Cheaper than a ThreadPoolExecutor hop per call: the worker takes every call queued so far in
one wake-up and hands all their results back to the loop in one callback, so at 64 requests in
flight a plugin pays one thread switch per batch, not per request. Bounded: past
`queue_max` queued calls, submit refuses with OVERLOADED.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from storage.errors import AspenError, ErrorCode

QUEUE_MAX = 1024
Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class PluginWorker:
    def __init__(self, name: str, loop: asyncio.AbstractEventLoop, queue_max: int = QUEUE_MAX) -> None:
        self.name = name
        self._loop = loop
        self._queue_max = queue_max
        self._queue: deque[Call] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"plugin-{name}", daemon=True)
        self._thread.start()

    def pending(self) -> int:
        return len(self._queue)

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self._loop.create_future()
        with self._cv:
            if self._closed:
                raise AspenError(ErrorCode.UNAVAILABLE, f"plugin {self.name} was unloaded")
            if len(self._queue) >= self._queue_max:
                raise AspenError(ErrorCode.OVERLOADED, f"plugin {self.name} has {self._queue_max} calls queued")
            self._queue.append((fn, args, fut))
            self._cv.notify()
        return fut

    def close(self) -> None:
        """Stop after the calls already queued (they still run)."""
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            for fn, args, fut in batch:
                try:
                    outcomes.append((fut, fn(*args), None))
                except BaseException as exc:  # delivered to the awaiting request, never lost
                    outcomes.append((fut, None, exc))
            try:
                self._loop.call_soon_threadsafe(_settle, outcomes)
            except RuntimeError:  # the loop is closed: the node is shutting down
                return


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, exc in outcomes:
        if fut.done():
            continue
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)
