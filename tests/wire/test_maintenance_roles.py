"""Who may use the maintenance requests: DeleteRange is a write under the credential's
prefixes (its prefix must lie inside one); MoveLeader and snapshots are admin's alone (a
snapshot holds every key and every credential's hash)."""

from __future__ import annotations

import pytest

from aspen.credentials import Role


def test_delete_range_stays_inside_a_writers_prefixes() -> None:
    writer = Role("writer", ("billing/",))
    assert writer.missing({"type": "DeleteRange", "prefix": "billing/2024/"}) is None
    assert writer.missing({"type": "DeleteRange", "prefix": "billing/"}) is None
    for outside in ("bill", "", "metrics/", None, 7):
        assert "outside prefixes" in str(writer.missing({"type": "DeleteRange", "prefix": outside}))
    assert "writer role" in str(Role("reader", ("billing/",)).missing({"type": "DeleteRange", "prefix": "billing/"}))


@pytest.mark.parametrize("rtype", ["MoveLeader", "SnapshotBegin", "SnapshotChunk"])
def test_move_leader_and_snapshots_are_admin_only(rtype: str) -> None:
    assert Role("admin").missing({"type": rtype}) is None
    for role in (Role("writer", ("",), ("*",)), Role("reader", ("",), (rtype,))):
        assert role.missing({"type": rtype}) == f"{rtype} (admin only)"
