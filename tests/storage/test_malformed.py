"""Malformed ops of every kind: an error result, no change, never an exception.

validate_op (the node's edge check) and apply must agree on every op, because they are the
same checks.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from storage.errors import StorageCode, StorageError
from storage.ops import validate_key, validate_op
from storage.state import StateMachine

H = "a" * 64

VALID_OPS: list[Any] = [
    ["put", "k", b"v"],
    ["del", "k"],
    ["cas", "k", None, b"v"],
    ["cad", "k", b"v"],
    ["batch", [["put", "k", b"v"], ["del", "j"]]],
    ["cbatch", [["eq", "k", b"v"], ["exists", "k"], ["absent", "j"]], [["put", "j", b"v"]]],
    ["noop"],
    ["meta_put", "nodes", "1", b"v"],
    ["meta_del", "nodes", "1"],
    ["meta_cas", "nodes", "1", None, b"v"],
    ["blob_add", H, 5, 1],
]

WEIRD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**64,
    1.5,
    "",
    "s",
    "\ud800",
    b"",
    b"b",
    [],
    [None],
    [[]],
    {},
    {"a": 1},
    ("t",),
    "k" * 2000,
    b"x" * (1024 * 1024 + 1),
    "__aspen/k",
    frozenset(),
    object(),
]

MALFORMED_OPS: list[Any] = [
    None,
    0,
    "put",
    b"put",
    {},
    {"op": "put"},
    [],
    [None],
    [1, "k", b"v"],
    [b"put", "k", b"v"],
    [["put"], "k", b"v"],
    ["PUT", "k", b"v"],
    ["get", "k"],
    ["x" * 10_000],
    ["put"],
    ["put", "k"],
    ["put", "k", b"v", b"extra"],
    ["put", b"k", b"v"],
    ["put", "k", "v"],
    ["put", "k", bytearray(b"v")],
    ["put", "k", None],
    ["put", None, b"v"],
    ["put", ["k"], b"v"],
    ["del"],
    ["del", "k", "j"],
    ["del", 5],
    ["cas", "k", b"v"],
    ["cas", "k", "v", b"w"],
    ["cas", "k", None, None],
    ["cad", "k"],
    ["cad", "k", None],
    ["batch"],
    ["batch", None],
    ["batch", {"ops": []}],
    ["batch", "ops"],
    ["batch", [None]],
    ["batch", [[]]],
    ["batch", [["put", "k"]]],
    ["batch", [["del", "k", b"v"]]],
    ["batch", [["cas", "k", None, b"v"]]],
    ["batch", [["batch", []]]],
    ["batch", [], []],
    ["cbatch", []],
    ["cbatch", None, []],
    ["cbatch", [], None],
    ["cbatch", [None], []],
    ["cbatch", [[]], []],
    ["cbatch", [["eq", "k"]], []],
    ["cbatch", [["exists", "k", b"v"]], []],
    ["cbatch", [["absent"]], []],
    ["cbatch", [["eq", "k", None]], []],
    ["cbatch", [[1, "k"]], []],
    ["cbatch", [], [["noop"]]],
    ["noop", None],
    ["meta_put", "t", "k"],
    ["meta_del", "t", "k", "x"],
    ["meta_cas", "t", "k", None, None, None],
    ["blob_add", H, 5],
    ["blob_add", H.upper(), 5, 1],
]


def _assert_rejected_without_change(op: Any) -> None:
    state = StateMachine()
    state.apply_ops([["put", "k", b"v"], ["meta_put", "nodes", "1", b"v"], ["blob_add", H, 5, 1]], 1, 1)
    before = state.state_hash()
    results, events = state.apply_ops([op], 2, 1)
    assert len(results) == 1
    result = results[0]
    assert result[0] == "err", (op, result)
    assert len(result) == 4
    assert result[1] in {"INVALID_REQUEST", "KEY_TOO_LARGE", "VALUE_TOO_LARGE", "RESERVED_KEY"}, result
    assert isinstance(result[2], str) and result[2]
    assert result[3] == {}
    assert events == []
    assert state.state_hash() == before
    assert state.applied_index == 2
    error = validate_op(op)
    assert isinstance(error, StorageError)
    assert (str(error.code), error.message, error.details) == result[1:]


@pytest.mark.parametrize("op", MALFORMED_OPS, ids=repr)
def test_malformed_op_is_an_invalid_result_not_an_exception(op: Any) -> None:
    _assert_rejected_without_change(op)


@pytest.mark.parametrize("op", VALID_OPS, ids=repr)
def test_valid_ops_pass_validate_op(op: Any) -> None:
    assert validate_op(op) is None
    results, _ = StateMachine().apply_ops([op], 1, 1)
    assert results[0][0] == "ok" or results[0][1] == "CAS_FAILED"


def _mutations(op: list[Any]) -> list[Any]:
    """Every op with each argument replaced by each weird value, plus arity changes."""
    out: list[Any] = [op[:-1], [*op, None], [*op, b"x"]]
    for i in range(1, len(op)):
        for weird in WEIRD_VALUES:
            out.append([*op[:i], weird, *op[i + 1 :]])
    for i, arg in enumerate(op):
        if isinstance(arg, list):  # one level into batch ops and conditions
            for j in range(len(arg)):
                for weird in WEIRD_VALUES:
                    out.append([*op[:i], [*arg[:j], weird, *arg[j + 1 :]], *op[i + 1 :]])
                sub = arg[j]
                if isinstance(sub, list):
                    for k in range(len(sub)):
                        for weird in WEIRD_VALUES:
                            changed_sub = [*sub[:k], weird, *sub[k + 1 :]]
                            out.append([*op[:i], [*arg[:j], changed_sub, *arg[j + 1 :]], *op[i + 1 :]])
    return out


def test_mutated_ops_never_raise_and_apply_agrees_with_validate_op() -> None:
    checked = 0
    for valid in VALID_OPS:
        for op in _mutations(valid):
            error = validate_op(op)
            state = StateMachine()
            before = state.state_hash()
            results, events = state.apply_ops([op], 1, 1)
            if error is None:
                assert results[0][0] == "ok" or results[0][1] == "CAS_FAILED", (op, results)
            else:
                assert results[0] == ("err", str(error.code), error.message, error.details), op
                assert events == [] and state.state_hash() == before, op
            checked += 1
    assert checked > 1000


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.randrange(10 if depth < 3 else 7)
    if roll == 0:
        return rng.choice(WEIRD_VALUES)
    if roll == 1:
        return rng.choice(["put", "del", "cas", "cad", "batch", "cbatch", "eq", "exists", "absent", "noop"])
    if roll == 2:
        return rng.choice(["k", "j", "a/b", "é", "__aspen/x", "nodes", H])
    if roll == 3:
        return rng.choice([b"v", b"", b"w"])
    if roll == 4:
        return rng.choice([None, 0, 1, 5, -1])
    if roll == 5:
        return rng.choice(["meta_put", "meta_del", "meta_cas", "blob_add"])
    if roll == 6:
        return rng.random()
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_random_garbage_entries_never_raise() -> None:
    rng = random.Random(1234)
    state = StateMachine()
    for index in range(1, 3001):
        ops = [_random_value(rng) for _ in range(rng.randrange(1, 6))]
        results, _ = state.apply_ops(ops, index, 1)
        assert len(results) == len(ops)
        for op, result in zip(ops, results, strict=True):
            assert result[0] in ("ok", "err")
            error = validate_op(op)
            if result[0] == "ok":
                assert error is None
            elif result[1] != "CAS_FAILED":
                assert error is not None and str(error.code) == result[1]


@pytest.mark.parametrize("entry", [None, b"bytes", "str", 5, {"ops": []}], ids=repr)
def test_an_entry_that_is_not_a_list_of_ops_is_skipped(entry: Any) -> None:
    state = StateMachine()
    before = state.state_hash()
    assert state.apply_ops(entry, 4, 1) == ([], [])
    assert state.state_hash() == before
    assert state.applied_index == 4


def test_validate_key() -> None:
    assert validate_key("k") is None
    assert validate_key("k" * 1024) is None
    error = validate_key("k" * 1025, "ops[3].key")
    assert error is not None and error.code == StorageCode.KEY_TOO_LARGE and "ops[3].key" in error.message
    for bad, code in [
        ("", "INVALID_REQUEST"),
        (b"k", "INVALID_REQUEST"),
        (None, "INVALID_REQUEST"),
        ("__aspen/a", "RESERVED_KEY"),
    ]:
        error = validate_key(bad)
        assert error is not None and error.code == code


def test_a_bug_inside_apply_becomes_an_internal_result_and_later_ops_still_apply() -> None:
    state = StateMachine()

    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    state._handlers["del"] = broken  # stands in for a bug in one handler
    results, _ = state.apply_ops([["del", "k"], ["put", "k", b"v"]], 1, 1)
    assert results[0][:2] == ("err", "INTERNAL")
    assert results[1][0] == "ok"
