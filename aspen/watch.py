"""Watch: etcd's watch over Aspen's applied stream.

Any node serves a watch from what it has applied itself: the WatchHub keeps the KV events of
the last HISTORY_MAX_EVENTS events (at most HISTORY_MAX_BYTES of keys and values), in revision
order, built from the state machine's commit events (a put carries its value and the key's
version). A watch names a key or a prefix and a start revision (0: from now on); it gets
`WatchCreated`, then `WatchEvents` frames in revision order, and `WatchProgress {revision}`
when nothing happened for progress_ms (every event up to that revision was sent), over the
same connection until `CancelStream` or the connection ends (aspen/server.py's streams).

Nothing is skipped silently:
- a start revision older than the history: `COMPACTED` with `oldest_revision`, the oldest
  revision still retained (resume from there, after a read of the current values);
- a watcher whose peer does not read (the connection's unsent budget is full): ended with
  `WATCH_OVERFLOW` and `resume_revision` (every event of the revisions before it was sent);
- a history that can no longer be complete (a snapshot installed on this node, or a gap in
  its events): every watch on the node ends with `COMPACTED`.

Revisions are the state machine's (storage/state.py): one per write, the same on every node.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aspen import fields as p
from aspen.server import Emit
from cluster import ReplicatedNode
from cluster.events import ClusterEvent
from cluster.replicated import SNAPSHOT_LOADED
from storage.limits import KEY_MAX_BYTES
from storage.state import KV_DELETE, KV_WRITE, CommitEvent
from wire.errors import AspenError, ErrorCode

HISTORY_MAX_EVENTS = 10_000
HISTORY_MAX_BYTES = 64 * 1024 * 1024
WATCHERS_MAX = 1024  # per node
BATCH_MAX_EVENTS = 256  # per WatchEvents frame
BATCH_MAX_BYTES = 4 * 1024 * 1024  # per frame, of keys and values (one event always fits)
PROGRESS_MIN_MS = 50
PROGRESS_MAX_MS = 600_000
SUBSCRIPTION_MAX_EVENTS = 65_536  # commit events waiting for the hub; past it a gap ends the watches
DRAIN_MAX_EVENTS = 4096  # per loop turn, so a burst does not hold the event loop
EVENT_OVERHEAD_BYTES = 64
REVISION_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class WatchEvent:
    seq: int  # the hub's own order, one per event
    revision: int
    kind: str  # PUT | DELETE
    key: str
    value: bytes | None
    version: int
    create_revision: int
    size_bytes: int

    def to_wire(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": self.kind, "key": self.key, "mod_revision": self.revision}
        if self.kind == "PUT":
            event.update(value=self.value, version=self.version, create_revision=self.create_revision)
        return event


@dataclass(eq=False)
class Watcher:
    match: Callable[[str], bool]
    epoch: int  # the hub's epoch at registration: a reset since then ends the watch
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class WatchHub:
    """The node's retained KV history and its watchers (event loop only, but `start`)."""

    def __init__(self, replicated: ReplicatedNode, history_max_events: int = HISTORY_MAX_EVENTS,
                 history_max_bytes: int = HISTORY_MAX_BYTES, watchers_max: int = WATCHERS_MAX) -> None:
        if min(history_max_events, history_max_bytes, watchers_max) < 1:
            raise ValueError("history and watcher bounds must be positive")
        self.replicated = replicated
        self.history_max_events = history_max_events
        self.history_max_bytes = history_max_bytes
        self.watchers_max = watchers_max
        self.history: deque[WatchEvent] = deque()
        self.history_bytes = 0
        self.revision = 0  # the last revision this hub has seen
        self.compacted = 0  # events of revisions up to this one are not retained
        self.epoch = 0
        self.next_seq = 0
        self.watchers: set[Watcher] = set()
        self.resets = 0
        self._drain_scheduled = False
        self._dropped = 0  # the subscription's drop count last seen
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sub: Any = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Subscribe before the node applies anything, so the history starts at its first entry
        (what a restart replays from the snapshot on is history as well)."""
        self._loop = loop
        self._sub = self.replicated.events.subscribe(maxlen=SUBSCRIPTION_MAX_EVENTS, notify=self._notify)
        self.revision = self.compacted = self.replicated.read(lambda s: s.revision)

    def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def _notify(self) -> None:  # the apply thread
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        sub = self._sub
        if sub is None:
            return
        if sub.dropped != self._dropped:
            # The queue overflowed: events are lost, maybe within one revision, where no gap in
            # revisions would show. Nothing up to what the state holds now can be complete;
            # events of those revisions still queued are skipped below.
            self._dropped = sub.dropped
            self.reset(max(self.revision, self.replicated.read(lambda s: s.revision)))
        added = False
        for event in sub.drain(DRAIN_MAX_EVENTS):
            if isinstance(event, CommitEvent) and (event.kind == KV_WRITE or event.kind == KV_DELETE):
                if event.revision <= self.compacted:
                    continue  # from before a reset: its revision may be incomplete
                self._append(event)
                added = True
            elif isinstance(event, ClusterEvent) and event.kind == SNAPSHOT_LOADED:
                self.reset(event.revision)
        if sub.pending():
            self._notify()  # the rest next turn
        if added:
            for watcher in self.watchers:
                watcher.wake.set()

    def _append(self, e: CommitEvent) -> None:
        if e.revision != self.revision and e.revision != self.revision + 1:
            # Revisions have no holes: a jump means events this hub never saw (a snapshot
            # installed here, or its queue overflowed). What it holds cannot be completed.
            self.reset(e.revision - 1)
        key = e.key or ""
        size = len(key) + (len(e.value) if e.value is not None else 0) + EVENT_OVERHEAD_BYTES
        kind = "PUT" if e.kind == KV_WRITE else "DELETE"
        self.history.append(
            WatchEvent(self.next_seq, e.revision, kind, key, e.value, e.version, e.create_revision, size)
        )
        self.next_seq += 1
        self.history_bytes += size
        self.revision = e.revision
        while len(self.history) > self.history_max_events or self.history_bytes > self.history_max_bytes:
            self._evict_revision()

    def _evict_revision(self) -> None:
        """Drop the oldest revision's events, all of them: a revision is kept whole or not at all."""
        oldest = self.history[0].revision
        while self.history and self.history[0].revision == oldest:
            self.history_bytes -= self.history.popleft().size_bytes
        self.compacted = oldest

    def reset(self, compacted: int) -> None:
        self.history.clear()
        self.history_bytes = 0
        self.compacted = self.revision = compacted
        self.epoch += 1
        self.resets += 1
        for watcher in self.watchers:
            watcher.wake.set()

    @property
    def oldest_revision(self) -> int:
        return self.compacted + 1

    def seq_of(self, revision: int) -> int:
        """The seq of the first retained event of `revision` or later (next_seq if none)."""
        i = bisect.bisect_left(self.history, revision, key=lambda e: e.revision)
        return self.history[i].seq if i < len(self.history) else self.next_seq

    def events_from(
        self, seq: int, match: Callable[[str], bool], min_revision: int = 0
    ) -> tuple[list[WatchEvent], int]:
        """Matching events from `seq` on, of min_revision or later, within one frame's bounds;
        and the seq after the last event looked at."""
        history = self.history
        if not history:
            return [], seq
        i = seq - history[0].seq
        out: list[WatchEvent] = []
        size = 0
        end = len(history)
        while i < end and len(out) < BATCH_MAX_EVENTS:
            event = history[i]
            if event.revision >= min_revision and match(event.key):
                if out and size + event.size_bytes > BATCH_MAX_BYTES:
                    break
                out.append(event)
                size += event.size_bytes
            i += 1
        return out, history[0].seq + i

    def compacted_error(self, message: str) -> AspenError:
        return AspenError(
            ErrorCode.COMPACTED,
            message,
            oldest_revision=self.oldest_revision,
            compact_revision=self.compacted,
        )

    # -- the Watch request (a stream: aspen/server.py) -------------------------------------

    async def watch(self, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
        match, what = _selector(req)
        start = p.optional_int(req, "start_revision", 0, 0, REVISION_MAX)
        progress_ms = p.optional_int(req, "progress_ms", 0, 0, PROGRESS_MAX_MS)
        if 0 < progress_ms < PROGRESS_MIN_MS:
            raise AspenError(
                ErrorCode.INVALID_REQUEST, f"progress_ms: 0 (off) or {PROGRESS_MIN_MS} to {PROGRESS_MAX_MS}"
            )
        if len(self.watchers) >= self.watchers_max:
            raise AspenError(
                ErrorCode.OVERLOADED,
                f"{self.watchers_max} watches already run on node "
                f"{self.replicated.node_id}; retry later or watch through another node",
            )
        if start == 0:
            start = self.revision + 1
        if start <= self.compacted:
            raise self.compacted_error(
                f"revision {start} is no longer retained on node {self.replicated.node_id} (it "
                f"keeps the last {self.history_max_events} events): read the current values, "
                f"then watch from {self.oldest_revision} or later"
            )
        seq = self.seq_of(start)
        watcher = Watcher(match, self.epoch)
        self.watchers.add(watcher)
        try:
            if not emit(
                {
                    "type": "WatchCreated",
                    "node_id": self.replicated.node_id,
                    "watching": what,
                    "start_revision": start,
                    "revision": self.revision,
                    "oldest_revision": self.oldest_revision,
                }
            ):
                raise AspenError(
                    ErrorCode.WATCH_OVERFLOW, "the connection does not read", resume_revision=start
                )
            loop = asyncio.get_running_loop()
            progress_s = progress_ms / 1000
            last_sent = loop.time()
            while True:
                if watcher.epoch != self.epoch:
                    raise self.compacted_error(
                        f"node {self.replicated.node_id} lost part of its history (a snapshot was "
                        "installed here): read the current values, then watch again"
                    )
                if self.history and seq < self.history[0].seq:
                    raise self.compacted_error("this watch fell behind the retained history")
                events, next_seq = self.events_from(seq, match, start)  # a start ahead of now waits for it
                if events:
                    sent = emit(
                        {
                            "type": "WatchEvents",
                            "events": [e.to_wire() for e in events],
                            "revision": self.revision,
                        }
                    )
                    if not sent:
                        raise AspenError(
                            ErrorCode.WATCH_OVERFLOW,
                            "this watch's connection does not keep up with its events",
                            resume_revision=events[0].revision,
                        )
                    last_sent = loop.time()
                seq = next_seq
                if seq < self.next_seq:
                    await asyncio.sleep(0)  # more to send: let the others (and the socket) go first
                    continue
                watcher.wake.clear()
                if progress_s <= 0:
                    await watcher.wake.wait()
                    continue
                try:
                    async with asyncio.timeout(max(0.0, last_sent + progress_s - loop.time())):
                        await watcher.wake.wait()
                except TimeoutError:
                    if not emit({"type": "WatchProgress", "revision": self.revision}):
                        raise AspenError(
                            ErrorCode.WATCH_OVERFLOW,
                            "this watch's connection does not read",
                            resume_revision=self.revision + 1,
                        ) from None
                    last_sent = loop.time()
        finally:
            self.watchers.discard(watcher)


def _selector(req: dict[str, Any]) -> tuple[Callable[[str], bool], dict[str, str]]:
    has_key, has_prefix = req.get("key") is not None, req.get("prefix") is not None
    if has_key == has_prefix:
        raise AspenError(
            ErrorCode.INVALID_REQUEST, 'give key (one key) or prefix ("": every key), one of them'
        )
    if has_key:
        key = p.require_str(req, "key")
        return key.__eq__, {"key": key}
    prefix = req["prefix"]
    if not isinstance(prefix, str):
        raise AspenError(ErrorCode.INVALID_REQUEST, "prefix: must be a string")
    if len(prefix.encode(errors="replace")) > KEY_MAX_BYTES:
        raise AspenError(ErrorCode.KEY_TOO_LARGE, f"prefix: over {KEY_MAX_BYTES} bytes")
    return (lambda key: key.startswith(prefix)), {"prefix": prefix}
