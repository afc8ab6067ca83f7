"""Who may use the maintenance requests: DeleteRange is a write under the credential's
prefixes (its prefix must lie inside one), Watch a read there; MoveLeader, snapshots (they
hold every key and every credential's hash) and leases (a revoke deletes whatever keys were
attached) are admin's alone; CancelStream anyone's (it ends a stream of its own connection)."""

from __future__ import annotations

import pytest

from aspen.credentials import Role


def test_delete_range_stays_inside_a_writers_prefixes() -> None:
    writer = Role("writer", ("billing/",))
    assert writer.missing({"type": "DeleteRange", "prefix": "billing/2024/"}) is None
    assert writer.missing({"type": "DeleteRange", "prefix": "billing/"}) is None
    for outside in ("bill", "", "metrics/", None, 7):
        assert "outside prefixes" in str(writer.missing({"type": "DeleteRange", "prefix": outside}))
    assert "writer role" in str(
        Role("reader", ("billing/",)).missing({"type": "DeleteRange", "prefix": "billing/"})
    )


@pytest.mark.parametrize(
    "rtype",
    [
        "MoveLeader",
        "SnapshotBegin",
        "SnapshotChunk",
        "LeaseGrant",
        "LeaseRevoke",
        "LeaseKeepAlive",
        "LeaseTimeToLive",
        "LeaseList",
    ],
)
def test_move_leader_and_snapshots_are_admin_only(rtype: str) -> None:
    assert Role("admin").missing({"type": rtype}) is None
    for role in (Role("writer", ("",), ("*",)), Role("reader", ("",), (rtype,))):
        assert role.missing({"type": rtype}) == f"{rtype} (admin only)"


def test_watch_is_a_read_under_the_prefixes_and_cancel_is_anyones() -> None:
    reader = Role("reader", ("billing/",))
    assert reader.missing({"type": "Watch", "prefix": "billing/x"}) is None
    assert reader.missing({"type": "Watch", "key": "billing/total"}) is None
    for request in ({"prefix": ""}, {"prefix": "bill"}, {"key": "metrics/x"}, {"prefix": 5}):
        assert "outside prefixes" in str(reader.missing({"type": "Watch", **request}))
    assert Role("reader").missing({"type": "CancelStream", "request_id": 1}) is None
