"""In-process commit-event fan-out with bounded per-subscriber queues.

Published from the Raft apply thread, consumed from the event loop or worker threads. A slow
subscriber loses events (counted in `dropped`), it never holds back the state machine.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """A cluster-level event not born from a KV op (leader change, membership change)."""

    kind: str  # "cluster.leader_elected", "cluster.membership_changed"
    key: str | None
    index: int
    term: int
    revision: int = 0


class Subscription:
    def __init__(self, bus: EventBus, maxlen: int, notify: Callable[[], None] | None) -> None:
        assert maxlen > 0
        self._bus = bus
        self._queue: deque[object] = deque()
        self._maxlen = maxlen
        self._notify = notify
        self.dropped = 0
        self.delivered = 0

    def _offer(self, events: Iterable[object]) -> None:
        added = False
        for event in events:
            if len(self._queue) >= self._maxlen:
                self.dropped += 1
                continue
            self._queue.append(event)
            added = True
        if added and self._notify is not None:
            self._notify()

    def drain(self, limit: int = 1024) -> list[object]:
        out: list[object] = []
        queue = self._queue
        while queue and len(out) < limit:
            out.append(queue.popleft())
        self.delivered += len(out)
        return out

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._bus._remove(self)


class EventBus:
    SUBSCRIBERS_MAX = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()

    def subscribe(self, maxlen: int = 4096, notify: Callable[[], None] | None = None) -> Subscription:
        sub = Subscription(self, maxlen, notify)
        with self._lock:
            if len(self._subs) >= self.SUBSCRIBERS_MAX:
                raise RuntimeError("too many event subscribers")
            self._subs = (*self._subs, sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def publish(self, events: list[object]) -> None:
        if not events:
            return
        # Copy-on-write tuple: publishing takes no lock on the hot path.
        for sub in self._subs:
            sub._offer(events)
