"""Raft's log-matching rule on a real pysyncobj follower (cluster/raft.py, RaftCore).

pysyncobj's follower deletes everything after prevLogIdx whenever it holds more, even when the
message carries the very entries it already has; RaftCore keeps a matching tail and truncates
only on a conflict. One real RaftCore follower (file journal, encrypted TCP transport, its own
tick thread) is fed the append_entries dicts a leader would send, from a peer node object, on
its tick thread (pysyncobj handles every message there), and its log and replies are checked.
The peers' ports have nobody listening, so the follower never connects and never campaigns.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.node import TCPNode

from cluster import RaftConfig
from cluster.raft import RaftCore, SnapshotFile
from tests.cluster.test_raft_inprocess import COOKIE, free_ports

NOOP = b"\x01"  # pysyncobj's _COMMAND_TYPE.NO_OP: applied as nothing
MEMBERSHIP = b"\x02"  # _COMMAND_TYPE.MEMBERSHIP, followed by a pickled ['add'|'rem', id, node]


class Follower:
    def __init__(self, tmp: Path) -> None:
        self_port, leader_port, other_port, spare_port = free_ports(4)
        self.leader = TCPNode(f"127.0.0.1:{leader_port}")
        self.spare = TCPNode(f"127.0.0.1:{spare_port}")  # joins the cluster in a log entry
        cfg = RaftConfig(
            node_id=1,
            raft_addr=f"127.0.0.1:{self_port}",
            peers={2: self.leader.address, 3: f"127.0.0.1:{other_port}"},
            data_dir=tmp / "n1",
            cookie=COOKIE,
        )
        self.applied: list[bytes] = []
        snapshot = SnapshotFile(lambda: b"", lambda _state: None)
        self.core = RaftCore(cfg, lambda payload, _idx, _term: self.applied.append(payload), snapshot)
        self.replies: list[dict[str, Any]] = []
        transport = self.core._SyncObj__transport  # type: ignore[attr-defined]
        send = transport.send

        def recording_send(node: Any, message: dict[str, Any]) -> Any:
            if message.get("type") == "next_node_idx":
                self.replies.append(message)
            return send(node, message)

        transport.send = recording_send

    def on_tick_thread(self, fn: Callable[[], Any]) -> Any:
        """Run fn on pysyncobj's tick thread, between two of its own steps."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def callback() -> None:
            if done.is_set():
                return
            try:
                box["result"] = fn()
            except BaseException as exc:  # re-raised in the test's thread
                box["error"] = exc
            finally:
                done.set()

        self.core.addOnTickCallback(callback)
        try:
            assert done.wait(10), "pysyncobj's tick thread did not run"
        finally:
            self.core.removeOnTickCallback(callback)
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def append(
        self,
        prev: tuple[int, int],
        entries: list[tuple[bytes, int, int]],
        term: int,
        commit: int,
    ) -> dict[str, Any]:
        """Deliver one append_entries from the leader; return the follower's reply."""
        return self.deliver(
            {
                "type": "append_entries",
                "term": term,
                "commit_index": commit,
                "entries": entries,
                "prevLogIdx": prev[0],
                "prevLogTerm": prev[1],
            }
        )

    def deliver(self, message: dict[str, Any]) -> dict[str, Any]:
        before = len(self.replies)

        def deliver() -> None:
            self.core._SyncObj__onMessageReceived(self.leader, message)  # type: ignore[attr-defined]

        self.on_tick_thread(deliver)
        # The reply waits for the journal's fsync at the start of the next tick (RaftCore._make_durable).
        self.on_tick_thread(lambda: None)
        assert len(self.replies) == before + 1, "one next_node_idx reply per append_entries"
        return self.replies[-1]

    def deliver_unanswered(self, message: dict[str, Any]) -> None:
        before = len(self.replies)
        self.on_tick_thread(lambda: self.core._SyncObj__onMessageReceived(self.leader, message))  # type: ignore[attr-defined]
        self.on_tick_thread(lambda: None)
        assert len(self.replies) == before

    def log(self) -> list[tuple[int, int]]:
        """(index, term) of every entry the follower holds."""
        return self.on_tick_thread(lambda: [(e[1], e[2]) for e in self.core._SyncObj__getEntries(1)])

    def commit_index(self) -> int:
        return self.on_tick_thread(lambda: self.core.raftCommitIndex)

    def wait_applied(self, index: int) -> None:
        for _ in range(200):
            if self.on_tick_thread(lambda: self.core.raftLastApplied) >= index:
                return
        raise AssertionError(f"follower did not apply up to {index}")


def noops(first: int, last: int, term: int) -> list[tuple[bytes, int, int]]:
    return [(NOOP, i, term) for i in range(first, last + 1)]


@pytest.fixture
def follower(tmp_path: Path) -> Iterator[Follower]:
    f = Follower(tmp_path)
    try:
        # pysyncobj starts every log with a no-op at index 1, term 0.
        assert f.log() == [(1, 0)]
        yield f
    finally:
        f.core.destroy_synchronous()


def test_shorter_resend_of_held_entries_truncates_nothing(
    follower: Follower, caplog: pytest.LogCaptureFixture
) -> None:
    follower.append((1, 0), noops(2, 8, 1), term=1, commit=3)
    follower.wait_applied(3)
    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 9)]

    # A rewound leader resends 3..5 (a size-bounded batch) while it has committed up to 8.
    with caplog.at_level(logging.WARNING):
        reply = follower.append((2, 1), noops(3, 5, 1), term=1, commit=8)

    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 9)], "acknowledged entries were dropped"
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]
    assert reply["success"] is True and reply["next_node_idx"] == 6 and reply["reset"] is False
    # 6..8 were not vouched for by this message: Raft commits min(leaderCommit, last new index).
    assert follower.commit_index() == 5
    # The next batch covers them; then they commit.
    reply = follower.append((5, 1), noops(6, 8, 1), term=1, commit=8)
    assert reply["next_node_idx"] == 9 and follower.commit_index() == 8
    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 9)]


def test_conflicting_entry_replaces_the_tail_from_the_conflict(follower: Follower) -> None:
    follower.append((1, 0), noops(2, 8, 1), term=1, commit=2)
    # A leader of term 2 holds 5 at term 1, then 6 and 7 at term 2: 6 conflicts, 8 has no match.
    reply = follower.append((4, 1), [(NOOP, 5, 1), (NOOP, 6, 2), (NOOP, 7, 2)], term=2, commit=2)

    assert follower.log() == [(1, 0), (2, 1), (3, 1), (4, 1), (5, 1), (6, 2), (7, 2)]
    assert reply["success"] is True and reply["next_node_idx"] == 8


def test_matching_prefix_then_new_entries_appends_each_once(follower: Follower) -> None:
    follower.append((1, 0), noops(2, 5, 1), term=1, commit=1)
    reply = follower.append((2, 1), noops(3, 8, 1), term=1, commit=1)

    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 9)]
    assert reply["success"] is True and reply["next_node_idx"] == 9


def test_heartbeat_behind_the_follower_truncates_nothing(follower: Follower) -> None:
    follower.append((1, 0), noops(2, 8, 1), term=1, commit=1)
    reply = follower.append((3, 1), [], term=1, commit=8)

    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 9)]
    assert reply["success"] is True and reply["next_node_idx"] == 4
    assert follower.commit_index() == 3


def test_membership_change_in_the_kept_tail_is_not_rolled_back(follower: Follower) -> None:
    spare = follower.spare
    add_spare = MEMBERSHIP + pickle.dumps(["add", spare.id, spare])
    follower.append((1, 0), [*noops(2, 6, 1), (add_spare, 7, 1), (NOOP, 8, 1)], term=1, commit=1)
    assert spare in follower.core.otherNodes

    follower.append((2, 1), noops(3, 4, 1), term=1, commit=8)
    assert spare in follower.core.otherNodes, "membership change in a matching tail was rolled back"
    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 9)]

    # A real conflict before it still truncates it and rolls the change back, as Raft says.
    follower.append((5, 1), [(NOOP, 6, 2)], term=2, commit=4)
    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 6)] + [(6, 2)]
    assert spare not in follower.core.otherNodes


def test_mismatched_prev_entry_is_still_rejected(follower: Follower) -> None:
    follower.append((1, 0), noops(2, 5, 1), term=1, commit=1)
    reply = follower.append((4, 2), noops(5, 6, 2), term=2, commit=1)
    # Resume just after what this member knows it shares with the term-2 leader: its commit
    # index (1), not pysyncobj's "at prevLogIdx" (4), which walked back one index per round.
    assert reply["success"] is False and reply["reset"] is True and reply["next_node_idx"] == 2
    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 6)]


def test_pipelined_rejections_all_point_before_the_conflict(follower: Follower) -> None:
    """A deposed leader's stale tail (3..6 of term 1) meets a new leader that pipelines two
    batches: the first conflicts at its prevLogIdx, the second starts past this log's end.
    pysyncobj answered 'resume at 3' then 'resume at 7', and the leader kept the last answer,
    past the conflict, every round. Both answers must name the same safe index."""
    follower.append((1, 0), noops(2, 6, 1), term=1, commit=2)
    first = follower.append((2, 1), noops(3, 8, 2), term=2, commit=2)
    assert first["success"] is True and follower.log() == [(1, 0), (2, 1)] + [(i, 2) for i in range(3, 9)]
    # Later in term 2 this member knows it shares 1..8 with the leader: a batch past its end is
    # answered 'resume at 9', a conflicting one no further back than that either.
    assert follower.append((12, 2), noops(13, 14, 2), term=2, commit=8)["next_node_idx"] == 9
    # A term-3 leader whose log differs from index 6 on: every rejection names 9 no more (this
    # term has confirmed nothing), but the commit index + 1.
    conflict = follower.append((7, 3), noops(8, 10, 3), term=3, commit=5)
    past_end = follower.append((20, 3), noops(21, 22, 3), term=3, commit=5)
    assert conflict["success"] is False and past_end["success"] is False
    assert conflict["next_node_idx"] == past_end["next_node_idx"] == follower.commit_index() + 1


def test_large_binary_entry_arrives_whole_and_keeps_the_tail_too(follower: Follower) -> None:
    # Aspen's leader never splits an entry (the transport streams it as one frame), so a large
    # group-committed entry goes through the same log-matching check as any other.
    big = (NOOP + os.urandom(300_000), 5, 1)
    follower.append((1, 0), [*noops(2, 4, 1), big, *noops(6, 8, 1)], term=1, commit=1)
    reply = follower.append((4, 1), [big], term=1, commit=8)
    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 9)]
    assert reply["success"] is True and reply["next_node_idx"] == 6
    assert follower.commit_index() == 5
    assert follower.on_tick_thread(lambda: follower.core._SyncObj__getEntries(5, 1))[0][0] == big[0]  # type: ignore[attr-defined]

    # A conflicting large entry replaces the tail; past the end one is appended, once.
    assert (
        follower.append((4, 1), [(NOOP + os.urandom(100_000), 5, 2)], term=2, commit=4)["next_node_idx"] == 6
    )
    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 5)] + [(5, 2)]
    assert (
        follower.append((5, 2), [(NOOP + os.urandom(100_000), 6, 2)], term=2, commit=4)["next_node_idx"] == 7
    )
    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 5)] + [(5, 2), (6, 2)]


def test_a_chunk_of_a_split_entry_is_refused(follower: Follower) -> None:
    # pysyncobj's own leader labels chunks by the entry's length, not its pickle's: a follower
    # that reassembled them unpickled half entries and stalled. Aspen never splits; a chunk
    # is refused (no reply, nothing buffered, nothing unpickled).
    follower.append((1, 0), noops(2, 4, 1), term=1, commit=1)
    data = pickle.dumps((NOOP + b"x" * 100_000, 5, 1))
    for kind in ("start", "process", "finish"):
        follower.deliver_unanswered({"type": "append_entries", "transmission": kind, "data": data[:1000],
                                     "term": 1, "commit_index": 1, "prevLogIdx": 4, "prevLogTerm": 1})
    assert follower.log() == [(1, 0)] + [(i, 1) for i in range(2, 5)]
