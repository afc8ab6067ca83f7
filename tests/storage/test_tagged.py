"""The "tagged" op: a plugin's write carries its origin and hook depth into every node's events."""

from __future__ import annotations

from storage import StateMachine, validate_op


def test_tagged_write_events_carry_origin_and_depth() -> None:
    sm = StateMachine()
    results, events = sm.apply_ops(
        [["tagged", "auditor", 1, ["put", "a:k", b"v"]], ["put", "plain", b"x"],
         ["tagged", "auditor", 0, ["batch", [["put", "a:1", b"1"], ["del", "a:k"]]]]],
        index=7, term=2,
    )
    assert [r[0] for r in results] == ["ok", "ok", "ok"]
    assert [(e.kind, e.key, e.origin, e.depth) for e in events] == [
        ("kv.write_committed", "a:k", "auditor", 1),
        ("kv.write_committed", "plain", None, 0),
        ("kv.write_committed", "a:1", "auditor", 0),
        ("kv.delete_committed", "a:k", "auditor", 0),
    ]
    assert sm.get("a:1").value == b"1" and sm.get("a:k") is None


def test_tagged_results_are_the_inner_ops_results() -> None:
    sm = StateMachine()
    sm.apply_ops([["put", "k", b"1"]], 1, 1)
    results, events = sm.apply_ops([["tagged", "p", 0, ["cas", "k", b"wrong", b"2"]]], 2, 1)
    assert results[0][1] == "CAS_FAILED" and events == []


def test_bad_tags_are_refused_and_write_nothing() -> None:
    for op in (
        ["tagged", "", 0, ["put", "k", b"v"]],
        ["tagged", "p" * 129, 0, ["put", "k", b"v"]],
        ["tagged", "p", -1, ["put", "k", b"v"]],
        ["tagged", "p", 65, ["put", "k", b"v"]],
        ["tagged", "p", 0, ["meta_put", "plugins", "x", b"v"]],  # only KV writes can be tagged
        ["tagged", "p", 0, ["tagged", "q", 0, ["put", "k", b"v"]]],
        ["tagged", "p", 0, ["put", "__aspen/x", b"v"]],
        ["tagged", "p", 0],
    ):
        assert validate_op(op) is not None, op
        sm = StateMachine()
        results, events = sm.apply_ops([op], 1, 1)
        assert results[0][0] == "err" and events == [] and sm.revision == 0, op
