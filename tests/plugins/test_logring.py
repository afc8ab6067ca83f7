"""The per-plugin log ring a node keeps for `plugin logs`: bounded in lines and characters,
what it pushes out counted, reads bounded and resumable by line number."""

from __future__ import annotations

from aspen.plugins.logring import READ_LINES_MAX, LogRing


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000

    def __call__(self) -> int:
        return self.now_ms


def test_a_flood_is_bounded_and_what_it_pushed_out_is_counted() -> None:
    ring = LogRing(lines_max=100, chars_max=10_000)
    for i in range(5000):
        ring.append("info", f"line {i}")
    page = ring.read(limit=READ_LINES_MAX)
    assert len(page.entries) == 100 and page.evicted_lines == 4900 and page.last_seq == 5000
    assert [e.message for e in page.entries[:2]] == ["line 4900", "line 4901"]


def test_characters_are_bounded_too_even_by_one_huge_line() -> None:
    ring = LogRing(lines_max=1000, chars_max=1000)
    for _ in range(50):
        ring.append("warn", "x" * 100)
    page = ring.read()
    assert sum(len(e.message) for e in page.entries) <= 1000 and len(page.entries) == 10
    ring.append("warn", "y" * 5000)  # cut to the ring's size; everything older goes
    page = ring.read()
    assert [len(e.message) for e in page.entries] == [1000] and page.evicted_lines == 50


def test_reads_follow_by_line_number_filter_by_time_and_keep_the_newest() -> None:
    clock = Clock()
    ring = LogRing(clock_ms=clock)
    for i in range(10):
        clock.now_ms += 1000
        ring.append("info", f"l{i}")
    assert [e.message for e in ring.read(after_seq=8).entries] == ["l8", "l9"]
    assert [e.message for e in ring.read(since_ms=10_000).entries] == ["l8", "l9"]
    page = ring.read(limit=3)
    assert [e.message for e in page.entries] == ["l7", "l8", "l9"] and page.skipped_lines == 7
    assert ring.read(limit=0).entries == () and ring.read(limit=10**9).skipped_lines == 0
    assert ring.read(after_seq=10).entries == () and ring.read(after_seq=10).last_seq == 10
