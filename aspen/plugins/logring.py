"""Each plugin's recent log lines on this node, for `aspen-cli plugin logs`.

A plugin's lines used to reach only the node.log of the node that ran the call, where a user
had to know to look. Each node now keeps the last lines of each plugin (what the guest logged,
already escaped, cut and rate limited by sandbox/logs.py, and the sandbox's reports of its
traps and of it going Failed) in a ring bounded in lines and in characters: the oldest go
first, counted. Lines carry a sequence number (per plugin, per node process) so a reader can
follow: ask again for what came after the last one it saw.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RING_LINES_MAX = 1000
RING_CHARS_MAX = 512 * 1024
READ_LINES_MAX = 1000  # lines one read hands back (the newest of those asked for)


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    time_ms: int  # wall clock: `--since` is a time of day
    level: str  # info, debug, warn (the guest's) or trap (the sandbox's)
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "time_ms": self.time_ms, "level": self.level, "message": self.message}


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: tuple[LogEntry, ...]
    last_seq: int  # the newest line's number (0: none yet), whatever was asked
    evicted_lines: int  # pushed out of the ring by newer lines, since the node started
    skipped_lines: int  # matched the query but left out for the read bound (the oldest of them)


class LogRing:
    """Thread-safe: the plugin's worker thread appends, the event loop reads."""

    def __init__(self, lines_max: int = RING_LINES_MAX, chars_max: int = RING_CHARS_MAX,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.lines_max = lines_max
        self.chars_max = chars_max
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._entries: deque[LogEntry] = deque()
        self._chars = 0
        self._seq = 0
        self.evicted_lines = 0

    def append(self, level: str, message: str) -> None:
        message = message[: self.chars_max]  # one line alone may not hold more than the ring
        with self._lock:
            self._seq += 1
            self._entries.append(LogEntry(self._seq, self._clock_ms(), level, message))
            self._chars += len(message)
            while len(self._entries) > self.lines_max or self._chars > self.chars_max:
                self._chars -= len(self._entries.popleft().message)
                self.evicted_lines += 1

    def read(self, after_seq: int = 0, since_ms: int = 0, limit: int = READ_LINES_MAX) -> LogPage:
        """Lines newer than `after_seq` and logged at or after `since_ms`: the newest `limit`
        of them (at most READ_LINES_MAX), oldest first."""
        limit = max(0, min(limit, READ_LINES_MAX))
        with self._lock:
            matched = [e for e in self._entries if e.seq > after_seq and e.time_ms >= since_ms]
            last_seq, evicted = self._seq, self.evicted_lines
        kept = matched[len(matched) - limit:] if limit else []
        return LogPage(tuple(kept), last_seq, evicted, len(matched) - len(kept))
