"""["delrange", prefix, limit]: the range delete behind `kv delete --prefix` (issue 16, item 8)."""

from __future__ import annotations

import pytest

from storage import snapshot
from storage.limits import DELETE_RANGE_MAX, KEY_MAX_BYTES
from storage.ops import validate_op
from storage.state import KV_DELETE, StateMachine
from tests.storage.conftest import Applier


def fill(app: Applier, prefix: str, count: int) -> None:
    for start in range(0, count, 1000):
        app.ok(["batch", [["put", f"{prefix}{i:05d}", b"v"] for i in range(start, min(count, start + 1000))]])


def test_deletes_the_first_keys_of_the_prefix_in_one_revision(app: Applier) -> None:
    fill(app, "a/", 5)
    app.ok(["put", "a", b"not under a/"])
    app.ok(["put", "b/1", b"other prefix"])
    before = app.state.revision
    app.events.clear()
    assert app.ok(["delrange", "a/", 3]) == {"deleted": 3, "more": True, "revision": before + 1}
    assert [(e.kind, e.key, e.revision) for e in app.events] == [
        (KV_DELETE, f"a/{i:05d}", before + 1) for i in range(3)]
    assert app.ok(["delrange", "a/", 3]) == {"deleted": 2, "more": False, "revision": before + 2}
    assert [k for k, _ in app.state.kv.items()] == ["a", "b/1"]


def test_nothing_to_delete_changes_no_revision(app: Applier) -> None:
    app.ok(["put", "k", b"v"])
    assert app.ok(["delrange", "nope/", 10]) == {"deleted": 0, "more": False, "revision": 1}
    assert app.state.revision == 1


def test_empty_prefix_is_every_key(app: Applier) -> None:
    fill(app, "x", 4)
    assert app.ok(["delrange", "", DELETE_RANGE_MAX])["deleted"] == 4
    assert len(app.state.kv) == 0


def test_the_limit_bounds_one_op_and_is_itself_bounded(app: Applier) -> None:
    fill(app, "p/", DELETE_RANGE_MAX + 1)
    assert app.ok(["delrange", "p/", DELETE_RANGE_MAX]) == {"deleted": DELETE_RANGE_MAX, "more": True,
                                                            "revision": app.state.revision}
    assert app.ok(["delrange", "p/", DELETE_RANGE_MAX])["deleted"] == 1
    for limit in (0, -1, DELETE_RANGE_MAX + 1, True, 1.5, None, "10"):
        code, message, _ = app.err(["delrange", "p/", limit])
        assert code == "INVALID_REQUEST" and "limit" in message


@pytest.mark.parametrize(("op", "code"), [
    (["delrange", "__aspen/", 10], "RESERVED_KEY"),
    (["delrange", "k" * (KEY_MAX_BYTES + 1), 10], "KEY_TOO_LARGE"),
    (["delrange", b"bytes", 10], "INVALID_REQUEST"),
    (["delrange", None, 10], "INVALID_REQUEST"),
    (["delrange", "\udcff", 10], "INVALID_REQUEST"),
    (["delrange", "p/"], "INVALID_REQUEST"),
    (["delrange", "p/", 1, 2], "INVALID_REQUEST"),
])
def test_bad_ops_are_refused_at_the_edge_and_in_apply_alike(
    app: Applier, op: list[object], code: str
) -> None:
    app.ok(["put", "p/1", b"v"])
    error = validate_op(op)
    assert error is not None and error.code == code
    assert app.err(op)[0] == code
    assert app.state.get("p/1") is not None and app.state.revision == 1


def test_same_log_same_state_and_snapshot_round_trip() -> None:
    a, b = Applier(), Applier()
    for app in (a, b):
        fill(app, "r/", 30)
        app.ok(["delrange", "r/000", 7])
    assert a.state.state_hash() == b.state.state_hash()
    restored: StateMachine = snapshot.load(snapshot.dump(a.state))
    assert restored.state_hash() == a.state.state_hash() and len(restored.kv) == 23
