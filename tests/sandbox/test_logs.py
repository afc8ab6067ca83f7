"""Plugin logs: control characters escaped (no forged node lines), a bounded line, and a
per-plugin rate limit whose drops are counted and reported once an interval."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from sandbox import InMemoryHost, PluginConfig, Runtime, limits
from sandbox.logs import LogLimiter, LogRate, escape_controls, log_line
from tests.sandbox.guests import call_guest, module, wat_bytes


@dataclass
class CountingHost(InMemoryHost):
    """Counts every line it is handed (InMemoryHost keeps only the first 10,000)."""

    lines: int = 0
    text_bytes: int = 0

    def log(self, plugin: str, level: str, message: str) -> None:
        self.lines += 1
        self.text_bytes += len(message.encode())
        super().log(plugin, level, message)


def _flood(message: bytes, times: int) -> bytes:
    """handle_request logs `message` `times` times."""
    return module(f"""
  (data (i32.const 1024) "{wat_bytes(message)}")
  (func (export "handle_request") (param i32 i32) (result i64) (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const {times})))
      (call $log_info_msg (i32.const 1024) (i32.const {len(message)}))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i64.const 0))""", imports=("log_info_msg",))


def test_control_characters_are_escaped() -> None:
    assert escape_controls("plain text, with spaces and ünïcödé") == "plain text, with spaces and ünïcödé"
    assert escape_controls("a\nb\rc\td\x1b[31m\x00\x7f\x85") == "a\\nb\\rc\\td\\x1b[31m\\x00\\x7f\\x85"
    assert escape_controls("x\u2028y\u202ez") == "x\\u2028y\\u202ez"


def test_a_plugin_cannot_forge_a_node_log_line(runtime: Runtime) -> None:
    host = CountingHost()
    forged = b"fine\n2026-11-30 12:00:00 INFO aspen.node: leader elected\r\x1b[2K"
    plugin = runtime.load(call_guest("log_warn_msg", [forged]), PluginConfig("forger"), host)
    plugin.init()
    plugin.handle_request({"type": "X"})
    assert host.lines == 1
    (_, level, line), = host.logs
    assert level == "warn" and "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == "fine\\n2026-11-30 12:00:00 INFO aspen.node: leader elected\\r\\x1b[2K"


def test_a_line_is_cut_at_its_bound_and_a_line_at_the_bound_is_whole(runtime: Runtime) -> None:
    host = CountingHost()
    at_limit = b"x" * limits.LOG_LINE_MAX_BYTES
    plugin = runtime.load(call_guest("log_info_msg", [at_limit]), PluginConfig("long"), host)
    plugin.init()
    plugin.handle_request({"type": "X"})
    assert host.logs[-1][2] == at_limit.decode()
    over = b"y" * (100 * 1024)
    plugin = runtime.load(call_guest("log_info_msg", [over]), PluginConfig("long"), host)
    plugin.init()
    plugin.handle_request({"type": "X"})
    line = host.logs[-1][2]
    assert line.startswith("y" * limits.LOG_LINE_MAX_CHARS) and line.endswith(
        f"[cut: a message of {len(over)} bytes]"
    )
    assert len(line) < limits.LOG_LINE_MAX_CHARS + 64


def test_escaping_cannot_grow_a_line_past_its_bound() -> None:
    raw = b"\x01" * limits.LOG_LINE_MAX_BYTES  # each byte becomes four characters
    assert len(log_line(raw, len(raw))) < limits.LOG_LINE_MAX_CHARS + 64


def test_a_log_flood_is_held_to_the_rate_and_reported(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    # Unlimited, a plugin wrote 9.2 GiB of log text in a second.
    host = CountingHost()
    times = 100_000
    plugin = runtime.load(_flood(b"z" * 1024, times), PluginConfig("flood", fuel_limit=10**11), host)
    plugin.init()
    with caplog.at_level(logging.WARNING, logger="aspen.sandbox"):
        plugin.handle_request({"type": "X"})
    # A second's worth at once, and what refilled while it ran (generous for a slow machine).
    assert host.lines < limits.LOG_LINES_PER_S * 3, host.lines
    assert host.text_bytes < limits.LOG_BYTES_PER_S * 3, host.text_bytes
    stats = plugin.stats.snapshot()
    assert stats["log_lines_dropped"] == times - host.lines
    assert stats["log_bytes_dropped"] == (times - host.lines) * 1024
    reports = [r for r in caplog.records if "log rate limit" in r.getMessage()]
    assert len(reports) == 1 and "'flood'" in reports[0].getMessage()  # once an interval, not once a drop
    # Another plugin's bucket is its own.
    other = runtime.load(_flood(b"hello", 10), PluginConfig("quiet"), host)
    other.init()
    before = host.lines
    other.handle_request({"type": "X"})
    assert host.lines == before + 10


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_limiter_admits_a_seconds_worth_then_refills_and_reports_once_an_interval() -> None:
    clock = FakeClock()
    limiter = LogLimiter(LogRate(lines_per_s=100, bytes_per_s=10_000, report_interval_s=10), clock)
    assert all(limiter.admit(10) == (True, None) for _ in range(100))  # the legitimate burst, at the limit
    admitted, report = limiter.admit(10)
    assert (
        not admitted and report is not None and (report.lines, report.bytes) == (1, 10)
    )  # the first drop, at once
    assert limiter.admit(10) == (False, None)  # later drops wait for the interval
    clock.now += 1.0
    assert all(limiter.admit(10)[0] for _ in range(100))  # a second refilled a second's worth
    clock.now += 10.0
    admitted, report = limiter.admit(10)
    assert admitted and report is not None and report.lines == 1  # the drop held back, reported now
    assert (limiter.dropped_lines, limiter.dropped_bytes) == (2, 20)


def test_the_limiter_bounds_bytes_too() -> None:
    clock = FakeClock()
    limiter = LogLimiter(LogRate(lines_per_s=100, bytes_per_s=4096, report_interval_s=10), clock)
    assert limiter.admit(4096)[0]
    assert not limiter.admit(1)[0]
    clock.now += 0.5
    assert limiter.admit(2048)[0] and not limiter.admit(1)[0]
