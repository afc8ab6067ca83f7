"""The WatchHub's history against a real ReplicatedNode's event bus, in process (no Raft
started): what the applied stream cannot give completely ends watches with COMPACTED. A
snapshot installed on the node (the state jumps with no events), a gap in revisions, lost
events within one revision, and the history bound that evicts whole revisions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgpack
import pytest

from aspen.watch import WatchHub
from cluster import RaftConfig, ReplicatedNode
from storage import snapshot
from storage.blobs import BlobStore
from storage.state import StateMachine
from tests.cluster.test_raft_inprocess import _no_fetch
from wire.errors import AspenError


def node_at(tmp_path: Path) -> ReplicatedNode:
    cfg = RaftConfig(node_id=1, raft_addr="127.0.0.1:1", peers={}, data_dir=tmp_path, cookie="c")
    return ReplicatedNode(cfg, BlobStore(tmp_path / "blobs"), _no_fetch)


class Applied:
    """Log entries put through the node's own apply path (what pysyncobj calls)."""

    def __init__(self, node: ReplicatedNode) -> None:
        self.node, self.index = node, 0

    @property
    def state(self) -> StateMachine:
        return self.node._state

    def apply(self, *ops: Any) -> None:
        self.index += 1
        self.node._apply(msgpack.packb(list(ops)), self.index, 1)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def first_frames(
    hub: WatchHub, start: int, count: int
) -> tuple[list[dict[str, Any]], AspenError | None]:
    frames: list[dict[str, Any]] = []
    task = asyncio.ensure_future(
        hub.watch({"prefix": "", "start_revision": start}, lambda m: frames.append(m) or True)
    )
    for _ in range(50):
        await asyncio.sleep(0)
        if len(frames) >= count or task.done():
            break
    if task.done():
        exc = task.exception()
        return frames, exc if isinstance(exc, AspenError) else None
    task.cancel()
    return frames, None


def test_snapshot_installed_ends_watches_with_compacted(tmp_path: Path) -> None:
    async def go() -> None:
        node = node_at(tmp_path)
        hub = WatchHub(node)
        hub.start(asyncio.get_running_loop())
        log = Applied(node)
        log.apply(["put", "a", b"1"])
        log.apply(["put", "b", b"2"])
        await settle()
        frames: list[dict[str, Any]] = []
        watch = asyncio.ensure_future(hub.watch({"prefix": ""}, lambda m: frames.append(m) or True))
        await settle()
        # The node installs a snapshot from the leader: revision 5, with no events for 3 to 5.
        ahead = StateMachine.restore(log.state.kv, {}, {}, 5, 9)
        node._load_state(snapshot.dump(ahead))
        await settle()
        with pytest.raises(AspenError) as err:
            await asyncio.wait_for(watch, 5)
        assert err.value.code == "COMPACTED" and err.value.error.details["oldest_revision"] == 6
        assert frames[0]["type"] == "WatchCreated"
        _, error = await first_frames(hub, 3, 1)
        assert error is not None and error.code == "COMPACTED"
        hub.stop()

    asyncio.run(go())


def test_gaps_and_lost_events_reset_the_history(tmp_path: Path) -> None:
    async def go() -> None:
        node = node_at(tmp_path)
        hub = WatchHub(node)
        hub.start(asyncio.get_running_loop())
        log = Applied(node)
        log.apply(["put", "a", b"1"])
        await settle()
        # Revision 2's events never reach the hub (published elsewhere), 3's do: a gap.
        log.state.apply_ops([["put", "b", b"2"]], 99, 1)
        log.apply(["put", "c", b"3"])
        await settle()
        assert hub.compacted == 2 and [e.revision for e in hub.history] == [3]
        # The hub's queue overflows inside one revision: the drop count says so.
        hub._sub._maxlen = 1
        log.apply(["batch", [["put", "x", b"1"], ["put", "y", b"2"]]])
        hub._sub._maxlen = 65_536
        log.apply(["put", "z", b"5"])
        await settle()
        # Revision 4 lost y, 5 came whole: neither is kept, what the state held at the drain.
        assert hub.resets == 2 and hub.compacted == 5 and not hub.history
        log.apply(["put", "after", b"6"])
        await settle()
        assert [(e.revision, e.key) for e in hub.history] == [(6, "after")]
        hub.stop()

    asyncio.run(go())


def test_the_history_bound_evicts_whole_revisions(tmp_path: Path) -> None:
    async def go() -> None:
        node = node_at(tmp_path)
        hub = WatchHub(node, history_max_events=5)
        hub.start(asyncio.get_running_loop())
        log = Applied(node)
        log.apply(["batch", [["put", f"k{i}", b"v"] for i in range(3)]])  # revision 1: 3 events
        log.apply(["batch", [["put", f"j{i}", b"v"] for i in range(3)]])  # revision 2: 3 more: over 5
        await settle()
        assert hub.compacted == 1 and {e.revision for e in hub.history} == {2} and len(hub.history) == 3
        frames, error = await first_frames(hub, 1, 1)
        assert error is not None and error.code == "COMPACTED" and error.error.details["oldest_revision"] == 2
        frames, error = await first_frames(hub, 2, 2)
        assert error is None and [e["key"] for e in frames[1]["events"]] == ["j0", "j1", "j2"]
        hub.stop()

    asyncio.run(go())
