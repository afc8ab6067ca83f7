"""What a plugin logs reaches the node's log as one bounded, escaped line, at a bounded rate.

Unbounded, a plugin wrote 9.2 GiB of log text in a second, and a newline in its message began
a line of its own, so it could forge node log lines. Here every control character is escaped
(sandbox's own lines, such as the drop reports below, cannot be imitated), a line is cut at
LOG_LINE_MAX_CHARS, and each plugin has a token bucket of lines and bytes per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sandbox import limits

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 and C1 controls and DEL, the Unicode line and paragraph separators, and the bidi
# embeddings, overrides and isolates (they reorder what a terminal shows after them).
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0x061C, 0x200E, 0x200F,
             *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {cp: _NAMED.get(chr(cp), f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}") for cp in _CONTROLS}


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (a newline as \\n)."""
    if text.isprintable():  # one C pass: nearly every line takes this way out
        return text
    return text.translate(_ESCAPES)


def log_line(raw: bytes, message_bytes: int) -> str:
    """The line to log for `raw`, the first bytes of a message of `message_bytes` (of which
    at most LOG_LINE_MAX_BYTES are read)."""
    line = escape_controls(raw.decode(errors="replace"))
    if len(line) > limits.LOG_LINE_MAX_CHARS or message_bytes > len(raw):
        return f"{line[:limits.LOG_LINE_MAX_CHARS]} [cut: a message of {message_bytes} bytes]"
    return line


@dataclass(frozen=True, slots=True)
class LogRate:
    lines_per_s: float = limits.LOG_LINES_PER_S
    bytes_per_s: float = limits.LOG_BYTES_PER_S
    report_interval_s: float = limits.LOG_REPORT_INTERVAL_S


@dataclass(frozen=True, slots=True)
class DropReport:
    lines: int
    bytes: int
    since_s: float  # the time the first of them was dropped (the limiter's clock)


class LogLimiter:
    """One plugin's token buckets: a second's worth of lines and of bytes, refilled as time
    passes. Dropped lines are counted; `admit` hands back a report of them at the first drop
    and then at most once per report interval, so a flood costs the node's log a line per
    interval, not a line per drop. Not thread-safe: a plugin's calls are serialized."""

    def __init__(self, rate: LogRate = LogRate(), clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        now = self._clock()
        self._lines = rate.lines_per_s
        self._bytes = rate.bytes_per_s
        self._refilled_at = now
        self._reported_at: float | None = None
        self._pending_lines = 0
        self._pending_bytes = 0
        self._pending_since = now
        self.dropped_lines = 0  # totals, for the plugin's stats
        self.dropped_bytes = 0

    def admit(self, line_bytes: int) -> tuple[bool, DropReport | None]:
        """Whether a line of `line_bytes` may be logged now, and a report of drops to log."""
        now = self._clock()
        rate = self.rate
        elapsed = now - self._refilled_at
        self._refilled_at = now
        self._lines = min(rate.lines_per_s, self._lines + elapsed * rate.lines_per_s)
        self._bytes = min(rate.bytes_per_s, self._bytes + elapsed * rate.bytes_per_s)
        admitted = self._lines >= 1 and self._bytes >= line_bytes
        if admitted:
            self._lines -= 1
            self._bytes -= line_bytes
        else:
            if self._pending_lines == 0:
                self._pending_since = now
            self._pending_lines += 1
            self._pending_bytes += line_bytes
            self.dropped_lines += 1
            self.dropped_bytes += line_bytes
        return admitted, self._report(now)

    def since_s(self, report: DropReport) -> float:
        """How long ago the first line of `report` was dropped."""
        return self._clock() - report.since_s

    def _report(self, now: float) -> DropReport | None:
        if self._pending_lines == 0:
            return None
        if self._reported_at is not None and now - self._reported_at < self.rate.report_interval_s:
            return None
        report = DropReport(self._pending_lines, self._pending_bytes, self._pending_since)
        self._reported_at = now
        self._pending_lines = self._pending_bytes = 0
        return report
