"""The end-of-run checks on hand-made records: each must flag what it exists to catch."""

from __future__ import annotations

import math
from typing import Any

from tests.chaos.checks import counter_check, lost_writes, unavailability
from tests.chaos.history import FAIL, INFO, OK, Record
from tests.chaos.linearizability import BATCH, CAS, GET, INCR, PUT, counter_bytes
from tests.chaos.nemesis import Fault


def rec(op_id: int, kind: str, keys: tuple[str, ...], args: tuple[Any, ...], start: float, end: float,
        outcome: str = OK, result: Any = None) -> Record:
    return Record(op_id, 0, kind, keys, args, start, math.inf if outcome == INFO else end, outcome, result)


def test_last_acknowledged_write_survives() -> None:
    records = [rec(1, PUT, ("k",), (b"a",), 0, 1), rec(2, PUT, ("k",), (b"b",), 2, 3)]
    assert lost_writes(records, {"k": b"b"}) == []


def test_older_value_in_the_end_means_a_lost_write() -> None:
    records = [rec(1, PUT, ("k",), (b"a",), 0, 1), rec(2, PUT, ("k",), (b"b",), 2, 3)]
    lost = lost_writes(records, {"k": b"a"})
    assert [w.write.op_id for w in lost] == [2]
    assert [w.write.op_id for w in lost_writes(records, {"k": None})] == [1, 2]


def test_concurrent_or_unknown_writes_may_win() -> None:
    records = [rec(1, PUT, ("k",), (b"a",), 0, 5), rec(2, PUT, ("k",), (b"b",), 1, 3),
               rec(3, CAS, ("k",), (b"b", b"c"), 4, 0, INFO), rec(4, PUT, ("k",), (b"x",), 6, 7, FAIL)]
    assert lost_writes(records, {"k": b"a"}) == []  # a overlapped b: either order
    assert lost_writes(records, {"k": b"c"}) == []  # the unknown CAS may have applied last
    assert len(lost_writes(records, {"k": b"x"})) == 2  # a refused write cannot be the survivor


def test_batch_writes_count_per_key() -> None:
    records = [rec(1, BATCH, ("a", "b"), (("a", b"1"), ("b", None)), 0, 1), rec(2, GET, ("a",), (), 2, 3)]
    assert lost_writes(records, {"a": b"1", "b": None}) == []
    assert len(lost_writes(records, {"a": b"1", "b": b"1"})) == 1


def test_counter_bounds() -> None:
    incrs = [rec(i, INCR, ("n",), (), i, i + 0.5, OK, i) for i in range(1, 4)]
    incrs.append(rec(9, INCR, ("n",), (), 9, 0, INFO))
    assert counter_check(incrs, counter_bytes(3)).ok
    assert counter_check(incrs, counter_bytes(4)).ok
    assert not counter_check(incrs, counter_bytes(2)).ok  # an acknowledged increment lost
    assert not counter_check(incrs, counter_bytes(5)).ok  # more than could have happened


def test_unavailability_is_time_to_next_acknowledged_write() -> None:
    kill = Fault("kill_leader", (2,), 2, 9.95, 10.0, 11.0, 12.0)
    other = Fault("kill_follower", (3,), 2, 20.0, 20.01, 21.0, 22.0)
    records = [rec(1, PUT, ("k",), (b"a",), 9.96, 9.99), rec(2, PUT, ("k",), (b"b",), 10.2, 0, INFO),
               rec(3, GET, ("k",), (), 10.3, 10.4), rec(4, PUT, ("k",), (b"c",), 10.5, 11.25)]
    [u] = unavailability(records, [kill, other])
    assert u.fault is kill and abs(u.window_s - 1.25) < 1e-9
    assert unavailability(records[:3], [kill])[0].window_s is None


def test_records_survive_json() -> None:
    from tests.chaos.history import Record as R
    from tests.chaos.linearizability import NOT_KNOWN

    records = [rec(1, BATCH, ("a", "b"), (("a", b"1"), ("b", None)), 0, 1),
               rec(2, CAS, ("k",), (None, b"x"), 1, 2, OK, (False, b"\x00\xff")),
               rec(3, CAS, ("k",), (b"x", b"y"), 1, 2, OK, (False, NOT_KNOWN)),
               rec(4, GET, ("n",), (), 2, 3, OK, counter_bytes(0x80FF)),
               rec(5, INCR, ("n",), (), 2, 0, INFO), rec(6, PUT, ("k",), (b"back\\slash",), 3, 4, FAIL)]
    assert [R.from_json(r.to_json()) for r in records] == records
