"""Linearizable reads without a log entry: ReadIndex (the Raft thesis, 6.4; etcd's ReadIndex).

A read used to cost a no-op through the log: an fsync on a majority and a round of
replication. With ReadIndex the leader records its commit index, proves it is still the leader
by one round of pings acknowledged by a majority (one round for every read that arrived
meanwhile), and the read is served once the serving node has applied up to that index. A
follower asks the leader for the index and waits for its own applied index.

Runs on pysyncobj's tick thread (RaftCore calls on_tick and on_message), or on a thread holding
RaftCore's tick lock (request_now); `request` is the only entry from other threads. A deposed
leader cannot serve: its pings get no majority.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("aspen.cluster.readindex")

PING = "aspen_read_ping"
PONG = "aspen_read_pong"
ASK = "aspen_read_index"
ANSWER = "aspen_read_index_resp"
MESSAGE_TYPES = frozenset({PING, PONG, ASK, ANSWER})
READS_PENDING_MAX = 100_000
CONFIRM_TIMEOUT_S = 5.0  # a batch not confirmed by then fails; callers time out sooner anyway

# (token, read index or None, error or None): one call per batch, never per read.
Ready = Callable[[list[tuple[Any, int | None, str | None]]], None]


class RaftView(Protocol):
    """What ReadIndex needs of the Raft member (RaftCore adapts pysyncobj to it)."""

    def is_leader(self) -> bool: ...
    def term(self) -> int: ...
    def commit_index(self) -> int: ...
    def committed_in_own_term(self) -> bool: ...
    def leader(self) -> Any: ...
    def voters(self) -> list[Any]: ...
    def send(self, node: Any, message: dict[str, Any]) -> None: ...
    def tell_commit_index(self) -> None: ...
    def wake(self) -> None: ...


@dataclass(slots=True)
class _Batch:
    seq: int
    term: int
    index: int
    tokens: list[Any]
    started: float


@dataclass(slots=True)
class _Remote:
    tokens: list[Any]
    started: float = field(default_factory=time.monotonic)


class ReadIndex:
    def __init__(self, raft: RaftView, ready: Ready) -> None:
        self._raft = raft
        self._ready = ready
        self._incoming: deque[Any] = deque()  # appended from any thread, drained on the tick thread
        self._wake_pending = False  # request() woke the tick, which has not drained since
        self._waiting: list[tuple[Any, float]] = []  # leader, before its first commit in its term
        self._batches: deque[_Batch] = deque()
        self._pongs: dict[Any, tuple[int, int]] = {}  # node -> (term, highest seq acknowledged)
        self._remote: dict[int, _Remote] = {}
        self._seq = itertools.count(1)
        self._ask_ids = itertools.count(1)
        self.rounds = 0

    def _deliver(self, results: list[tuple[Any, int | None, str | None]]) -> None:
        local = []
        if any(isinstance(token, _AskedBy) for token, _, _ in results):
            # The follower waits to have applied up to the index: let it hear the commit index
            # now, on the same link ahead of the answer, not with the next append.
            self._raft.tell_commit_index()
        for token, index, error in results:
            if isinstance(token, _AskedBy):  # a follower's request: answered over the transport
                self._raft.send(
                    token.node, {"type": ANSWER, "id": token.ask_id, "index": index, "error": error}
                )
            else:
                local.append((token, index, error))
        if local:
            self._ready(local)

    def request(self, tokens: list[Any]) -> bool:
        """From any thread: ask for a read index for each token; False (none queued) when too
        many are pending."""
        if not self._enqueue(tokens):
            return False
        # One wake-up for all the reads queued before the tick drains them (a pipe write per
        # read was ~6% of a leader's time at 64 in flight). Appended before the flag is read,
        # and the tick clears it before draining: a read it misses finds the flag clear.
        if not self._wake_pending:
            self._wake_pending = True
            self._raft.wake()
        return True

    def idle(self) -> bool:
        """No round in flight and nothing queued (read without a lock: a hint only)."""
        return not self._batches and not self._remote and not self._incoming and not self._waiting

    # -- tick thread (or whoever holds RaftCore's tick lock) ---------------------------------

    def request_now(self, tokens: list[Any]) -> bool:
        """request(), but the caller holds the tick lock: start the round without a wake-up."""
        if not self._enqueue(tokens):
            return False
        self.on_tick()
        return True

    def _enqueue(self, tokens: list[Any]) -> bool:
        if len(self._incoming) + len(tokens) > READS_PENDING_MAX:
            return False
        self._incoming.extend(tokens)
        return True

    def on_tick(self) -> None:
        now = time.monotonic()
        self._wake_pending = False
        tokens: list[Any] = []
        while self._incoming:
            tokens.append(self._incoming.popleft())
        self._expire(now)
        if self._waiting and self._raft.is_leader() and self._raft.committed_in_own_term():
            tokens = [t for t, _ in self._waiting] + tokens
            self._waiting = []
        if tokens:
            self._start(tokens, now)

    def _start(self, tokens: list[Any], now: float) -> None:
        raft = self._raft
        if raft.is_leader():
            if not raft.committed_in_own_term():
                # A new leader's commit index may lag what the old one committed until its own
                # first entry commits: wait for that rather than serve a stale index.
                self._waiting.extend((t, now) for t in tokens)
                return
            batch = _Batch(next(self._seq), raft.term(), raft.commit_index(), tokens, now)
            voters = raft.voters()
            if not voters:  # a lone member is its own majority
                self._deliver([(t, batch.index, None) for t in tokens])
                return
            self._batches.append(batch)
            self.rounds += 1
            for node in voters:
                raft.send(node, {"type": PING, "term": batch.term, "seq": batch.seq})
            return
        leader = raft.leader()
        if leader is None:
            self._deliver([(t, None, "no leader to confirm a linearizable read; retry") for t in tokens])
            return
        ask_id = next(self._ask_ids)
        self._remote[ask_id] = _Remote(tokens, now)
        raft.send(leader, {"type": ASK, "id": ask_id})

    def _expire(self, now: float) -> None:
        raft = self._raft
        leader, term = raft.is_leader(), raft.term()
        failed: list[tuple[Any, int | None, str | None]] = []
        while self._batches and (not leader or self._batches[0].term != term
                                 or now - self._batches[0].started > CONFIRM_TIMEOUT_S):
            batch = self._batches.popleft()
            why = (
                "leadership changed before the read was confirmed"
                if not leader or batch.term != term
                else "no majority confirmed the leader in time (a partition?)"
            )
            failed.extend((t, None, why) for t in batch.tokens)
        if self._waiting and (not leader or now - self._waiting[0][1] > CONFIRM_TIMEOUT_S):
            failed.extend(
                (t, None, "the leader has not committed in its term yet; retry") for t, _ in self._waiting
            )
            self._waiting = []
        for ask_id in [i for i, r in self._remote.items() if now - r.started > CONFIRM_TIMEOUT_S]:
            failed.extend((t, None, "the leader did not answer the read index request") for t in
                          self._remote.pop(ask_id).tokens)
        if failed:
            self._deliver(failed)

    def on_message(self, node: Any, message: dict[str, Any]) -> None:
        kind = message["type"]
        raft = self._raft
        if kind == PING:
            # Acknowledge a leader of our term or a newer one: after this we could not vote in
            # an older term, so the pinging leader was leader when we answered.
            if isinstance(message.get("term"), int) and message["term"] >= raft.term():
                raft.send(node, {"type": PONG, "term": message["term"], "seq": message.get("seq")})
        elif kind == PONG:
            term, seq = message.get("term"), message.get("seq")
            if raft.is_leader() and term == raft.term() and isinstance(seq, int):
                old = self._pongs.get(node)
                if old is None or old[0] != term or old[1] < seq:
                    self._pongs[node] = (term, seq)
                self._confirm()
        elif kind == ASK:
            ask_id = message.get("id")
            if isinstance(ask_id, int):
                self._start([_AskedBy(node, ask_id)], time.monotonic())
        elif kind == ANSWER:
            remote = self._remote.pop(message.get("id"), None)  # type: ignore[arg-type]
            if remote is not None:
                index, error = message.get("index"), message.get("error")
                if not isinstance(index, int):
                    index, error = None, str(error or "the leader gave no read index")
                self._deliver([(t, index, error) for t in remote.tokens])

    def _confirm(self) -> None:
        raft = self._raft
        voters = raft.voters()
        term = raft.term()
        majority = (len(voters) + 1) // 2 + 1
        done: list[tuple[Any, int | None, str | None]] = []
        while self._batches:
            batch = self._batches[0]
            acks = 1 + sum(1 for n in voters if (p := self._pongs.get(n)) is not None and p[0] == term
                           and p[1] >= batch.seq)
            if acks < majority:
                break
            self._batches.popleft()
            done.extend((t, batch.index, None) for t in batch.tokens)
        if done:
            self._deliver(done)


@dataclass(frozen=True, slots=True)
class _AskedBy:
    """A follower's request: answered over the transport instead of to a local caller."""

    node: Any
    ask_id: int

