"""A watcher in the chaos run (issue 16, item 6): one watch of every chaos key from revision 1,
kept through the faults by resuming where the last one ended, at the next node.

At the end its event stream must equal the committed history: the same events per key as a
watch from revision 1 on each node after the run, every acknowledged write among them, nothing
a client's failed write left, and the last event of each key the key's final value.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aspen.client import AsyncClient
from deploy.launcher import LocalCluster
from tests.chaos.checks import written_value
from tests.chaos.history import FAIL, INFO, OK, Record
from tests.chaos.linearizability import CAS, GET, INCR
from wire.errors import AspenError

WATCH_PREFIX = "chaos/"
END_KEY = "chaos/watch-end"  # written after the run: the revision every watcher must reach
PROGRESS_MS = 200
STALL_S = 3.0  # no frame, not even progress, for this long: the node is cut off; resume elsewhere
MOVE_S = 4.0  # and every so often move on anyway: resuming on another node is part of what is checked
RESUMES_MAX = 10_000
RESUME_PAUSE_S = 0.1
EVENTS_MAX = 500_000  # a bound on memory; a run that reaches it fails
CATCH_UP_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Seen:
    revision: int
    kind: str  # PUT | DELETE
    key: str
    value: bytes | None


def seen_of(event: dict[str, Any]) -> Seen:
    return Seen(event["mod_revision"], event["type"], event["key"], event.get("value"))


@dataclass
class Watcher:
    cluster: LocalCluster
    events: list[Seen] = field(default_factory=list)
    resumes: int = 0
    failure: str | None = None  # why the stream cannot be complete (COMPACTED, a crash, a bound)
    target: int | None = None  # set at the end: stop once an event of this revision has come
    abandoned: bool = False  # the run ended early (an error): stop at once
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-watcher", daemon=True)
        self._thread.start()

    def finish(self, target_revision: int, timeout_s: float = CATCH_UP_WAIT_S) -> None:
        self.target = target_revision
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive() and self.failure is None:
                self.failure = f"did not reach revision {target_revision} within {timeout_s}s " \
                               f"(last {self.last_revision()})"

    def last_revision(self) -> int:
        return self.events[-1].revision if self.events else 0

    def abandon(self) -> None:
        self.abandoned = True

    def _done(self) -> bool:
        return (
            self.abandoned
            or self.failure is not None
            or (self.target is not None and self.last_revision() >= self.target)
        )

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # a bug in the suite or the client: the check must fail, not pass empty
            self.failure = f"crashed: {type(exc).__name__}: {exc}"

    async def _main(self) -> None:
        endpoints = [spec.client_addr for spec in self.cluster.nodes.values()]
        # No leader discovery: every resume goes to the next node in turn (any node serves).
        client = AsyncClient(
            endpoints, self.cluster.cookie, 5.0, discover_leader=False, **self.cluster.client_tls()
        )
        resume = 1
        try:
            for _ in range(RESUMES_MAX):
                resume = await self._watch_once(client, resume)
                if self._done():
                    return
                self.resumes += 1
                # Events of the revision resumed from may come again: keep one copy.
                while self.events and self.events[-1].revision >= resume:
                    self.events.pop()
                await asyncio.sleep(RESUME_PAUSE_S)
            self.failure = f"resumed {RESUMES_MAX} times"
        finally:
            await client.close()

    async def _watch_once(self, client: AsyncClient, resume: int) -> int:
        """Watch from `resume` until an error, a stall or the end; the revision to go on from."""
        try:
            stream = client.watch(prefix=WATCH_PREFIX, start_revision=resume, progress_ms=PROGRESS_MS)
            moved_at = time.monotonic() + MOVE_S
            try:
                while not self._done() and time.monotonic() < moved_at:
                    async with asyncio.timeout(STALL_S):
                        event = await anext(stream)
                    if event["type"] == "PROGRESS":
                        continue
                    if len(self.events) >= EVENTS_MAX:
                        self.failure = f"over {EVENTS_MAX} events"
                        break
                    self.events.append(seen_of(event))
            finally:
                await stream.aclose()
        except TimeoutError:
            pass  # stalled: the node is partitioned away
        except AspenError as exc:
            if exc.code == "COMPACTED":
                self.failure = f"COMPACTED: {exc.message}"
            return int(exc.error.details.get("resume_revision") or self.last_revision() or resume)
        # Again from the last revision seen, not the one after: a revision of several events (a
        # batch) may have been cut between them by a stall or a move; _main drops what came of it
        # and the new watch sends it whole.
        return self.last_revision() if self.events else resume


@dataclass(frozen=True, slots=True)
class Replay:
    """What a node's watch gave from `start`: revision 1, or the oldest it still keeps (a run
    longer than its history)."""

    start: int
    events: list[Seen]


def replay(
    cluster: LocalCluster, node_id: int, target: int, timeout_s: float = CATCH_UP_WAIT_S
) -> Replay | str:
    """What node_id gives a watch from revision 1 (or its oldest kept) up to `target`, or why
    it could not."""
    start = 1
    deadline = time.monotonic() + timeout_s
    for _ in range(2):  # from 1; once more from the oldest revision kept, when compacted
        out: list[Seen] = []
        try:
            with cluster.client([node_id], timeout_s=5.0, pin=True) as c:
                for event in c.watch(prefix=WATCH_PREFIX, start_revision=start, progress_ms=PROGRESS_MS):
                    if event["type"] != "PROGRESS":
                        out.append(seen_of(event))
                    if (out and out[-1].revision >= target) or time.monotonic() > deadline:
                        break
        except AspenError as exc:
            oldest = exc.error.details.get("oldest_revision")
            if exc.code == "COMPACTED" and start == 1 and isinstance(oldest, int) and oldest > 1:
                start = oldest
                continue
            return f"{exc.code}: {exc.message}"
        if out and out[-1].revision >= target:
            return Replay(start, out)
        return f"reached revision {out[-1].revision if out else 0}"
    return "compacted past its own oldest revision while replaying"


def per_key(events: Sequence[Seen]) -> dict[str, list[Seen]]:
    keys: dict[str, list[Seen]] = {}
    for e in events:
        keys.setdefault(e.key, []).append(e)
    return keys


def check(
    watcher: Watcher,
    replays: dict[int, Replay | str],
    records: Sequence[Record],
    finals: dict[str, bytes | None],
) -> list[str]:
    """Why the watcher's stream is not the committed history, one line each; [] when it is."""
    problems: list[str] = []
    if watcher.failure is not None:
        return [f"watcher: {watcher.failure}"]
    events = watcher.events
    if any(b.revision < a.revision for a, b in itertools.pairwise(events)):
        problems.append("watcher: events out of revision order")
    if len(set(events)) != len(events):
        problems.append("watcher: an event came twice")
    mine = per_key(events)
    for node_id, got in replays.items():
        if isinstance(got, str):
            problems.append(f"watcher: node {node_id} could not replay from revision 1: {got}")
            continue
        # A node that no longer keeps revision 1 is compared from the oldest it keeps; every
        # acknowledged write is still checked against the whole live stream below.
        live = mine if got.start == 1 else per_key([e for e in events if e.revision >= got.start])
        theirs = per_key(got.events)
        if theirs != live:
            differ = sorted(k for k in set(live) | set(theirs) if live.get(k) != theirs.get(k))
            problems.append(
                f"watcher: node {node_id}'s history (from revision {got.start}) differs from the live "
                f"stream on {differ[:5]}"
            )
    for key, final in finals.items():
        last = mine.get(key, [])[-1:] or [None]
        left = None if last[0] is None or last[0].kind == "DELETE" else last[0].value
        if left != final:
            problems.append(f"watcher: {key} ends at {left!r} in the stream, {final!r} when read")
    puts = {(e.key, e.value) for e in events if e.kind == "PUT"}
    explained: set[tuple[str, bytes | None]] = set()
    for r in records:
        if r.kind == GET:
            continue
        for key in r.keys:
            writes, value = written_value(r, key)
            if not writes or value is None:
                continue
            if r.outcome == OK and not (r.kind == CAS and not r.result[0]) and (key, value) not in puts:
                problems.append(f"watcher: acknowledged {r.kind} of {key} = {value[:40]!r} never came")
            if r.outcome in (OK, INFO):
                explained.add((key, value))
            elif r.outcome == FAIL and (key, value) in puts:
                problems.append(f"watcher: {key} = {value[:40]!r} came, but its write failed")
    unknown_counts = any(r.kind == INCR and r.outcome == INFO for r in records)
    for key, value in sorted(puts - explained, key=repr):
        if key == END_KEY or (unknown_counts and any(r.kind == INCR and key in r.keys for r in records)):
            continue  # the end marker; a count an increment of unknown outcome reached
        problems.append(f"watcher: {key} = {value[:40]!r} came, written by no client")
    return problems[:20]
