"""Lease ops in the state machine (issue 16, item 7): grant, put with a lease, detach on a
write without it, revoke deleting the attached keys as one write, and every bound crossed."""

from __future__ import annotations

import pytest

from storage import snapshot
from storage.limits import LEASE_KEYS_MAX, LEASE_TTL_MAX_S, LEASES_MAX
from storage.ops import validate_op
from storage.state import KV_DELETE, LEASE_OF, LEASES
from tests.storage.conftest import Applier


def test_grant_put_revoke(app: Applier) -> None:
    assert app.ok(["lease_grant", 7, 10]) == {"lease_id": 7, "ttl_s": 10}
    app.ok(["lput", "a", b"1", 7])
    app.ok(["lput", "b", b"2", 7])
    app.ok(["put", "c", b"3"])
    assert app.state.lease(7) == {"ttl_s": 10, "keys": ["a", "b"]}
    before = app.state.revision
    app.events.clear()
    assert app.ok(["lease_revoke", 7]) == {"lease_id": 7, "deleted": 2, "revision": before + 1}
    assert [(e.kind, e.key, e.revision) for e in app.events] == [(KV_DELETE, "a", before + 1),
                                                                 (KV_DELETE, "b", before + 1)]
    assert [k for k, _ in app.state.kv.items()] == ["c"]
    assert (
        app.state.lease(7) is None
        and LEASES not in app.state.meta_tables()
        and LEASE_OF not in app.state.meta_tables()
    )
    assert app.err(["lease_revoke", 7])[0] == "LEASE_NOT_FOUND"


def test_a_write_without_the_lease_or_a_delete_detaches_the_key(app: Applier) -> None:
    app.ok(["lease_grant", 1, 5])
    app.ok(["lease_grant", 2, 5])
    for key in ("put", "batch", "cas", "del", "delrange/x", "moved"):
        app.ok(["lput", key, b"v", 1])
    app.ok(["put", "put", b"plain"])
    app.ok(["batch", [["put", "batch", b"plain"]]])
    app.ok(["cas", "cas", b"v", b"plain"])
    app.ok(["del", "del"])
    app.ok(["delrange", "delrange/", 10])
    app.ok(["lput", "moved", b"v2", 2])
    assert app.state.lease(1) == {"ttl_s": 5, "keys": []}
    assert app.state.lease(2) == {"ttl_s": 5, "keys": ["moved"]}
    assert app.ok(["lease_revoke", 1])["deleted"] == 0
    assert {k for k, _ in app.state.kv.items()} == {"put", "batch", "cas", "moved"}


def test_lput_to_a_missing_lease_changes_nothing(app: Applier) -> None:
    code, _, _ = app.err(["lput", "k", b"v", 99])
    assert code == "LEASE_NOT_FOUND" and app.state.get("k") is None and app.state.revision == 0


def test_bounds(app: Applier) -> None:
    for ttl in (0, -1, LEASE_TTL_MAX_S + 1, 1.5, "10", None):
        assert app.err(["lease_grant", 1, ttl])[0] == "INVALID_REQUEST"
    for lease_id in (0, -1, 2**63, "1", None, True):
        assert validate_op(["lease_grant", lease_id, 10]) is not None
        assert validate_op(["lput", "k", b"v", lease_id]) is not None
        assert validate_op(["lease_revoke", lease_id]) is not None
    assert validate_op(["lput", "__aspen/x", b"v", 1]).code == "RESERVED_KEY"  # type: ignore[union-attr]
    app.ok(["lease_grant", 1, LEASE_TTL_MAX_S])
    assert app.err(["lease_grant", 1, 5])[0] == "INVALID_REQUEST"  # exists already
    for i in range(LEASE_KEYS_MAX):
        app.ok(["lput", f"k{i:04d}", b"v", 1])
    assert app.err(["lput", "one-too-many", b"v", 1])[0] == "LEASE_LIMIT"
    app.ok(["lput", "k0000", b"again", 1])  # already attached: not one more
    assert app.ok(["lease_revoke", 1])["deleted"] == LEASE_KEYS_MAX


@pytest.mark.parametrize("n", [LEASES_MAX])
def test_lease_count_bound(app: Applier, n: int) -> None:
    for i in range(1, n + 1):
        app.ok(["lease_grant", i, 60])
    assert app.err(["lease_grant", n + 1, 60])[0] == "LEASE_LIMIT"
    app.ok(["lease_revoke", 1])
    app.ok(["lease_grant", n + 1, 60])


def test_leases_are_state_same_hash_and_snapshot(app: Applier) -> None:
    other = Applier()
    for a in (app, other):
        a.ok(["lease_grant", 3, 30])
        a.ok(["lput", "x", b"1", 3])
    assert app.state.state_hash() == other.state.state_hash()
    restored = snapshot.load(snapshot.dump(app.state))
    assert restored.state_hash() == app.state.state_hash() and restored.lease(3) == {
        "ttl_s": 30,
        "keys": ["x"],
    }
