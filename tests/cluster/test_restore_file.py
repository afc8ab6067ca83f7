"""aspen-node --restore's installation of a saved snapshot as a member's Raft snapshot
(aspen/maintenance.py restore_into), in process: what the member starts from, and what it
refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from aspen.maintenance import RESTORED_INDEX_MIN, RESTORED_TERM, restore_into
from cluster import RaftConfig
from cluster.raft import SnapshotFile
from storage import snapshot
from storage.state import StateMachine
from tests.storage.conftest import Applier
from wire.errors import AspenError


def saved(tmp_path: Path, applied: Applier) -> Path:
    path = tmp_path / "saved.snap"
    path.write_bytes(snapshot.dump(applied.state))
    return path


def config(tmp_path: Path, name: str) -> RaftConfig:
    return RaftConfig(node_id=1, raft_addr="127.0.0.1:7801", peers={2: "127.0.0.1:7802"},
                      data_dir=tmp_path / name, cookie="c")


def test_the_member_starts_from_the_saved_state_without_the_old_addresses(tmp_path: Path) -> None:
    app = Applier()
    for i in range(5):
        app.ok(["put", f"k{i}", b"v"])
    app.ok(["meta_put", "nodes", "9", b"an old member's addresses"])
    app.ok(["meta_put", "settings", "x", b"kept"])
    cfg = config(tmp_path, "m1")
    restore_into(cfg, saved(tmp_path, app))
    loaded: list[StateMachine] = []
    last, prev, members = SnapshotFile(lambda: b"", lambda data: loaded.append(snapshot.load(data))).read(
        str(cfg.snapshot_path))
    (state,) = loaded
    assert [k for k, _ in state.kv.items()] == [f"k{i}" for i in range(5)] and state.revision == 5
    assert state.meta_tables() == ["settings"]
    assert last[1:] == (app.index, RESTORED_TERM) and prev[1:] == (app.index - 1, RESTORED_TERM)
    assert state.applied_index == app.index and sorted(m.address for m in members) == ["127.0.0.1:7801",
                                                                                      "127.0.0.1:7802"]
    # Two members from one file: the same log prefix and state, as Raft needs.
    other = config(tmp_path, "m2")
    restore_into(other, saved(tmp_path, app))
    assert other.snapshot_path.read_bytes() == cfg.snapshot_path.read_bytes()


def test_a_small_state_still_gets_two_entries(tmp_path: Path) -> None:
    app = Applier()
    app.ok(["put", "k", b"v"])
    cfg = config(tmp_path, "m")
    state = restore_into(cfg, saved(tmp_path, app))
    assert state.applied_index == RESTORED_INDEX_MIN


def test_refusals(tmp_path: Path) -> None:
    app = Applier()
    app.ok(["put", "k", b"v"])
    good = saved(tmp_path, app)
    cfg = config(tmp_path, "m")
    restore_into(cfg, good)
    with pytest.raises(AspenError) as err:
        restore_into(cfg, good)  # a Raft snapshot is there now: never overwritten
    assert err.value.code == "INVALID_REQUEST" and "already holds one" in err.value.message
    bad = tmp_path / "bad.snap"
    bad.write_bytes(good.read_bytes()[:-1] + b"\x00")
    with pytest.raises(AspenError) as err:
        restore_into(config(tmp_path, "n"), bad)
    assert err.value.code == "SNAPSHOT_CORRUPT"
    assert not config(tmp_path, "n").snapshot_path.exists()
