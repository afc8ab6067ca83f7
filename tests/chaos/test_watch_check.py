"""The chaos watcher's check on hand-made streams: it must flag each way a watch could differ
from the committed history (tests/chaos/watcher.py)."""

from __future__ import annotations

from tests.chaos.history import FAIL, INFO
from tests.chaos.linearizability import DELETE, PUT
from tests.chaos.test_checks import rec
from tests.chaos.watcher import Replay, Seen, Watcher, check

RECORDS = [rec(1, PUT, ("k",), (b"a",), 0, 1), rec(2, PUT, ("k",), (b"b",), 2, 3),
           rec(3, DELETE, ("j",), (), 2, 3), rec(4, PUT, ("j",), (b"x",), 3, 4, outcome=INFO)]
GOOD = [Seen(1, "PUT", "k", b"a"), Seen(2, "PUT", "k", b"b"), Seen(3, "PUT", "j", b"x")]
FINALS = {"k": b"b", "j": b"x"}


def watcher(events: list[Seen]) -> Watcher:
    w = Watcher(cluster=None)  # type: ignore[arg-type]  # the check reads only its events
    w.events = list(events)
    return w


def test_the_committed_history_passes() -> None:
    assert check(watcher(GOOD), {1: Replay(1, GOOD), 2: Replay(1, list(GOOD))}, RECORDS, FINALS) == []
    # A node that keeps only revision 2 on (a run longer than its history) is compared from there.
    assert check(watcher(GOOD), {3: Replay(2, GOOD[1:])}, RECORDS, FINALS) == []


def test_each_difference_is_flagged() -> None:
    missing = [GOOD[0], GOOD[2]]  # the acknowledged b never came (and k would end at a)
    assert any(
        "acknowledged put of k = b'b' never came" in p for p in check(watcher(missing), {}, RECORDS, FINALS)
    )
    swapped = [GOOD[1], GOOD[0], GOOD[2]]
    assert any("out of revision order" in p for p in check(watcher(swapped), {}, RECORDS, FINALS))
    twice = [*GOOD, GOOD[2]]
    assert any("came twice" in p for p in check(watcher(twice), {}, RECORDS, FINALS))
    other_node = [GOOD[0], Seen(2, "PUT", "k", b"B"), GOOD[2]]
    assert any(
        "node 2's history (from revision 1) differs" in p
        for p in check(watcher(GOOD), {2: Replay(1, other_node)}, RECORDS, FINALS)
    )
    assert any(
        "node 2's history (from revision 2) differs" in p
        for p in check(watcher(GOOD), {2: Replay(2, other_node[1:])}, RECORDS, FINALS)
    )
    assert any("could not replay" in p for p in check(watcher(GOOD), {3: "COMPACTED: gone"}, RECORDS, FINALS))
    assert any("j ends at b'x'" in p for p in check(watcher(GOOD), {}, RECORDS, {"k": b"b", "j": None}))
    stranger = [*GOOD, Seen(4, "PUT", "k", b"nobody wrote this")]
    assert any(
        "written by no client" in p
        for p in check(watcher(stranger), {}, RECORDS, {"k": b"nobody wrote this", "j": b"x"})
    )
    failed = [*RECORDS, rec(5, PUT, ("k",), (b"refused",), 4, 5, outcome=FAIL)]
    came = [*GOOD, Seen(4, "PUT", "k", b"refused")]
    assert any(
        "its write failed" in p for p in check(watcher(came), {}, failed, {"k": b"refused", "j": b"x"})
    )
    broken = watcher(GOOD)
    broken.failure = "COMPACTED: gone"
    assert check(broken, {}, RECORDS, FINALS) == ["watcher: COMPACTED: gone"]
