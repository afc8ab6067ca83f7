"""The checker on hand-made histories: each non-linearizable one must be caught, each
linearizable one accepted (both directions, so a checker that always says yes fails here)."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest

from tests.chaos.linearizability import (
    BATCH,
    CAS,
    DELETE,
    GET,
    INCR,
    NOT_KNOWN,
    PUT,
    Op,
    Verdict,
    check,
    check_component,
    components,
    counter_bytes,
)

INF = math.inf
_ids = itertools.count()


def op(client: int, kind: str, key: str | tuple[str, ...], args: tuple[Any, ...], start: float, end: float,
       ok: bool | None = True, result: Any = None) -> Op:
    keys = key if isinstance(key, tuple) else (key,)
    return Op(next(_ids), client, kind, keys, args, start, INF if ok is None else end, ok, result)


def put(c: int, key: str, v: bytes, s: float, e: float, ok: bool | None = True) -> Op:
    return op(c, PUT, key, (v,), s, e, ok)


def get(c: int, key: str, seen: bytes | None, s: float, e: float) -> Op:
    return op(c, GET, key, (), s, e, True, seen)


def cas(c: int, key: str, exp: bytes | None, new: bytes, s: float, e: float, swapped: bool | None,
        actual: Any = NOT_KNOWN) -> Op:
    if swapped is None:
        return op(c, CAS, key, (exp, new), s, e, None)
    return op(c, CAS, key, (exp, new), s, e, True, (swapped, None if swapped else actual))


def verdict(*ops: Op) -> Verdict:
    return check(ops).verdict


# -- linearizable histories ----------------------------------------------------------------


def test_sequential_register_is_linearizable() -> None:
    assert verdict(
        get(1, "k", None, 0, 1), put(1, "k", b"a", 2, 3), get(1, "k", b"a", 4, 5),
        op(1, DELETE, "k", (), 6, 7), get(1, "k", None, 8, 9),
    ) is Verdict.OK


def test_zero_duration_ops_are_placed_like_any_other() -> None:
    # An op whose invoke and complete carry one timestamp: its return must follow its call.
    assert verdict(put(1, "k", b"a", 1.0, 1.0)) is Verdict.OK
    assert (
        verdict(put(1, "k", b"a", 1.0, 1.0), get(2, "k", b"a", 1.0, 1.0), get(2, "k", b"a", 2.0, 2.0))
        is Verdict.OK
    )
    # Still ordered against ops that end before it begins.
    assert verdict(put(1, "k", b"a", 0.0, 0.5), get(2, "k", None, 1.0, 1.0)) is Verdict.ILLEGAL


def test_concurrent_reads_may_see_either_side_of_a_write() -> None:
    assert verdict(
        put(1, "k", b"a", 0, 1),
        put(1, "k", b"b", 2, 10),
        get(2, "k", b"b", 3, 4),  # the write may take effect early...
        get(3, "k", b"b", 5, 6),  # ...and then every later read sees it
    ) is Verdict.OK
    assert verdict(put(1, "k", b"a", 0, 1), put(1, "k", b"b", 2, 10), get(2, "k", b"a", 3, 4),
                   get(3, "k", b"b", 5, 6)) is Verdict.OK


def test_indeterminate_write_may_explain_a_later_read() -> None:
    assert (
        verdict(put(1, "k", b"a", 0, 1), put(2, "k", b"x", 2, 0, ok=None), get(3, "k", b"x", 50, 51))
        is Verdict.OK
    )


def test_indeterminate_write_may_never_happen() -> None:
    assert (
        verdict(put(1, "k", b"a", 0, 1), put(2, "k", b"x", 2, 0, ok=None), get(3, "k", b"a", 50, 51))
        is Verdict.OK
    )


def test_refused_write_is_ignored() -> None:
    assert (
        verdict(put(1, "k", b"a", 0, 1), put(2, "k", b"x", 2, 3, ok=False), get(3, "k", b"a", 5, 6))
        is Verdict.OK
    )


def test_cas_success_and_failure_with_actual() -> None:
    assert verdict(
        put(1, "k", b"a", 0, 1),
        cas(1, "k", b"a", b"b", 2, 3, True),
        cas(2, "k", b"a", b"c", 4, 5, False, b"b"),
        cas(2, "k", None, b"c", 6, 7, False, b"b"),
        get(1, "k", b"b", 8, 9),
    ) is Verdict.OK


def test_counter_increments() -> None:
    assert verdict(
        op(1, INCR, "n", (), 0, 2, True, 1), op(2, INCR, "n", (), 1, 3, True, 2),
        op(3, INCR, "n", (), 4, 5, None), get(1, "n", counter_bytes(3), 10, 11),
    ) is Verdict.OK


def test_batch_seen_whole() -> None:
    b = op(1, BATCH, ("a", "b"), (("a", b"1"), ("b", b"1")), 0, 10)
    assert verdict(b, get(2, "a", b"1", 2, 3), get(3, "b", b"1", 4, 5)) is Verdict.OK


# -- non-linearizable histories ------------------------------------------------------------


def test_stale_read_after_acknowledged_write() -> None:
    assert (
        verdict(put(1, "k", b"a", 0, 1), put(1, "k", b"b", 2, 3), get(2, "k", b"a", 4, 5)) is Verdict.ILLEGAL
    )


def test_lost_write() -> None:
    # b acknowledged, then a later read finds the key absent: b vanished.
    assert verdict(put(1, "k", b"b", 0, 1), get(2, "k", None, 2, 3)) is Verdict.ILLEGAL


def test_read_of_a_value_never_written() -> None:
    assert verdict(put(1, "k", b"a", 0, 1), get(2, "k", b"zz", 2, 3)) is Verdict.ILLEGAL


def test_read_flapping_between_values() -> None:
    # Two concurrent reads may disagree, but once a read saw b, a later read cannot see a.
    assert verdict(put(1, "k", b"a", 0, 1), put(1, "k", b"b", 2, 10), get(2, "k", b"b", 3, 4),
                   get(3, "k", b"a", 5, 6)) is Verdict.ILLEGAL


def test_two_cas_from_the_same_value_both_succeed() -> None:
    assert verdict(put(1, "k", b"a", 0, 1), cas(1, "k", b"a", b"b", 2, 5, True),
                   cas(2, "k", b"a", b"c", 2, 5, True)) is Verdict.ILLEGAL


def test_cas_failure_on_a_matching_value() -> None:
    assert verdict(put(1, "k", b"a", 0, 1), cas(2, "k", b"a", b"b", 2, 3, False)) is Verdict.ILLEGAL


def test_cas_failure_reporting_a_value_never_there() -> None:
    assert verdict(put(1, "k", b"a", 0, 1), cas(2, "k", b"x", b"b", 2, 3, False, b"q")) is Verdict.ILLEGAL


def test_indeterminate_write_cannot_take_effect_before_its_invocation() -> None:
    assert (
        verdict(put(1, "k", b"a", 0, 1), get(2, "k", b"x", 2, 3), put(3, "k", b"x", 4, 0, ok=None))
        is Verdict.ILLEGAL
    )


def test_indeterminate_write_cannot_explain_flapping() -> None:
    # x may take effect once, not come and go.
    assert verdict(put(1, "k", b"a", 0, 1), put(2, "k", b"x", 2, 0, ok=None), get(3, "k", b"x", 3, 4),
                   get(3, "k", b"a", 5, 6)) is Verdict.ILLEGAL


def test_counter_increment_lost() -> None:
    assert verdict(op(1, INCR, "n", (), 0, 1, True, 1), op(2, INCR, "n", (), 2, 3, True, 2),
                   get(1, "n", counter_bytes(1), 4, 5)) is Verdict.ILLEGAL


def test_counter_two_increments_same_value() -> None:
    assert (
        verdict(op(1, INCR, "n", (), 0, 3, True, 1), op(2, INCR, "n", (), 0, 3, True, 1)) is Verdict.ILLEGAL
    )


def test_torn_batch_is_caught_where_per_key_projection_would_pass() -> None:
    """a's new value read before b's old one, both during the batch: no single point works.
    Checked per key on its own, each read would be fine: the checker must not project."""
    b = op(1, BATCH, ("a", "b"), (("a", b"1"), ("b", b"1")), 0, 10)
    reads = (get(2, "a", b"1", 2, 3), get(3, "b", None, 4, 5))
    assert verdict(b, *reads) is Verdict.ILLEGAL
    # What projecting the batch onto each key would see: both halves pass on their own.
    assert check_component(("a",), [put(1, "a", b"1", 0, 10), reads[0]]).verdict is Verdict.OK
    assert check_component(("b",), [put(1, "b", b"1", 0, 10), reads[1]]).verdict is Verdict.OK


def test_batch_joins_its_keys_in_one_component() -> None:
    b = op(1, BATCH, ("a", "b"), (("a", b"1"), ("b", None)), 0, 1)
    groups = components([b, get(1, "c", None, 0, 1), get(1, "b", None, 2, 3)])
    assert [keys for keys, _ in groups] == [("a", "b"), ("c",)]


# -- bounds ----------------------------------------------------------------------------------


def test_budget_exhausted_is_unknown_not_a_hang() -> None:
    rng = random.Random(7)
    # Many concurrent writes and reads of a value nobody wrote: exponential to refute.
    ops = [put(i, "k", b"%d" % i, 0, 100) for i in range(18)]
    ops.append(get(99, "k", b"never", 101, 102))
    rng.shuffle(ops)
    result = check(ops, steps_max=2_000)
    assert result.verdict is Verdict.UNKNOWN
    assert "budget" in result.components[0].detail


def test_op_validation() -> None:
    with pytest.raises(ValueError):
        Op(1, 1, "bogus", ("k",), (), 0, 1, True)
    with pytest.raises(ValueError):
        Op(1, 1, GET, ("k",), (), 0, 1, None)  # indeterminate must complete at infinity


def test_random_sequential_histories_are_linearizable_and_mutated_ones_not() -> None:
    """A register run sequentially is linearizable by construction; changing one read's value
    to something never written must make it non-linearizable."""
    rng = random.Random(11)
    for trial in range(30):
        value: bytes | None = None
        ops: list[Op] = []
        t = 0.0
        for i in range(40):
            c = rng.randrange(4)
            r = rng.random()
            if r < 0.4:
                ops.append(get(c, "k", value, t, t + 0.5))
            elif r < 0.7:
                value = b"v%d" % i
                ops.append(put(c, "k", value, t, t + 0.5))
            elif r < 0.8:
                value = None
                ops.append(op(c, DELETE, "k", (), t, t + 0.5))
            else:
                exp = value if rng.random() < 0.5 else b"other"
                swapped = exp == value
                ops.append(cas(c, "k", exp, b"c%d" % i, t, t + 0.5, swapped, value))
                if swapped:
                    value = b"c%d" % i
            t += 1.0
        assert check(ops).verdict is Verdict.OK, trial
        reads = [i for i, o in enumerate(ops) if o.kind == GET]
        victim = ops[reads[-1]]
        ops[reads[-1]] = Op(
            victim.op_id,
            victim.client,
            GET,
            victim.keys,
            (),
            victim.invoke_s,
            victim.complete_s,
            True,
            b"never-written",
        )
        assert check(ops).verdict is Verdict.ILLEGAL, trial


def test_many_unknown_increments_stay_cheap_and_still_bound_the_count() -> None:
    """20 unknown increments of which 10 took effect: C(20, 10) equivalent subsets without the
    symmetry rule, which would exhaust this budget; with it the search is linear-ish."""
    ops = [op(1, INCR, "n", (), i, 0, None) for i in range(20)]
    ops += [op(2, INCR, "n", (), 100 + i, 100.5 + i, True, 11 + i) for i in range(5)]
    ops.append(get(3, "n", counter_bytes(15), 200, 201))
    result = check(ops, steps_max=20_000)
    assert result.verdict is Verdict.OK, result
    too_many = [*ops[:-1], get(3, "n", counter_bytes(26), 200, 201)]  # 20 unknown + 5 acked at most
    assert check(too_many, steps_max=20_000).verdict is Verdict.ILLEGAL


def test_identical_unknown_ops_respect_their_own_invocations() -> None:
    early, late = op(1, INCR, "n", (), 0, 0, None), op(2, INCR, "n", (), 5, 0, None)
    assert verdict(early, late, get(3, "n", counter_bytes(1), 1, 2)) is Verdict.OK
    assert (
        verdict(early, late, get(3, "n", counter_bytes(2), 1, 2)) is Verdict.ILLEGAL
    )  # late not invoked yet
    assert verdict(early, late, get(3, "n", counter_bytes(2), 6, 7)) is Verdict.OK
    same_value = (put(1, "k", b"x", 0, 0, ok=None), put(2, "k", b"x", 5, 0, ok=None))
    assert verdict(*same_value, get(3, "k", b"x", 1, 2), op(4, DELETE, "k", (), 3, 4),
                   get(3, "k", b"x", 6, 7)) is Verdict.OK  # the second put explains the second read
