"""The read gate (aspen/plugins/readgate.py): the plugin requests of one loop turn pass one
read barrier together; every request is answered exactly once, whether the barrier passes,
fails, or the node stops first; a refusal of one request costs the others nothing. The
barrier here is a plain coroutine function, which is all the gate is given by the node (the
node's own is exercised in tests/plugins/test_dispatch_inprocess.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvloop

from aspen.plugins.readgate import Barrier, ReadGate, Waiting
from cluster.errors import ClusterCode, ClusterError
from wire.errors import AspenError, ErrorCode


class Recorder:
    """What the gate hands on and what it answers, by request id."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.passed: list[int] = []
        self.answers: dict[int, list[BaseException | None]] = {}
        self.refuse = refuse

    def then(self, waiting: Waiting) -> None:
        _, request, _, _ = waiting
        if request["id"] in self.refuse:
            raise AspenError(ErrorCode.OVERLOADED, "full")
        self.passed.append(request["id"])

    def finish(self, token: int, response: Any, error: BaseException | None) -> None:
        self.answers.setdefault(token, []).append(error)

    def waiting(self, request_id: int) -> Waiting:
        return (None, {"id": request_id}, self.finish, request_id)


def test_one_turns_requests_share_one_barrier_and_pass_in_order() -> None:
    async def scenario() -> tuple[list[int], list[int], Recorder]:
        barriers: list[int] = []
        rec = Recorder()

        async def barrier(timeout_s: float) -> None:
            barriers.append(len(rec.passed))
            await asyncio.sleep(0.01)

        gate = ReadGate(barrier, 5.0, rec.then)
        for i in range(64):  # one loop turn
            gate.add(rec.waiting(i))
        await asyncio.sleep(0)  # the batch's task starts: its barrier has begun
        for i in range(64, 70):  # arrive after the barrier began: the next batch
            gate.add(rec.waiting(i))
        await asyncio.sleep(0.1)
        return barriers, rec.passed, rec

    barriers, passed, rec = uvloop.run(scenario())
    assert barriers == [0, 0]  # two batches, two barriers; nothing passed before either began
    assert passed == list(range(70))
    assert rec.answers == {}  # answering is the worker's: the gate answered no one itself


def in_one_turn(rec: Recorder, barrier: Barrier, count: int) -> Recorder:
    """`count` requests through a gate in one loop turn; `rec` once they have settled."""

    async def scenario() -> Recorder:
        gate = ReadGate(barrier, 5.0, rec.then)
        for i in range(count):
            gate.add(rec.waiting(i))
        await asyncio.sleep(0.05)
        return rec

    return uvloop.run(scenario())


async def timed_out(timeout_s: float) -> None:
    raise ClusterError(ClusterCode.TIMEOUT, "read index not confirmed")


async def passes(timeout_s: float) -> None:
    return None


def test_a_failed_barrier_answers_each_request_of_its_batch_once() -> None:
    rec = in_one_turn(Recorder(), timed_out, 5)
    assert rec.passed == []
    assert sorted(rec.answers) == list(range(5))
    for errors in rec.answers.values():
        assert len(errors) == 1 and isinstance(errors[0], ClusterError)
        assert errors[0].code == ClusterCode.TIMEOUT


def test_stopping_answers_unavailable_also_for_a_batch_that_never_started() -> None:
    async def scenario() -> Recorder:
        rec = Recorder()

        async def barrier(timeout_s: float) -> None:
            await asyncio.sleep(60)

        gate = ReadGate(barrier, 5.0, rec.then)
        gate.add(rec.waiting(1))
        await asyncio.sleep(0)  # batch 1 waits in its barrier
        gate.add(rec.waiting(2))  # batch 2's task has not started
        gate.close()
        await asyncio.sleep(0.01)
        gate.add(rec.waiting(3))  # after the stop: answered at once, no batch opens
        assert 3 in rec.answers
        await asyncio.sleep(0.01)
        return rec

    rec = uvloop.run(scenario())
    assert rec.passed == []
    assert sorted(rec.answers) == [1, 2, 3]
    for errors in rec.answers.values():
        assert len(errors) == 1 and isinstance(errors[0], AspenError)
        assert errors[0].code == ErrorCode.UNAVAILABLE and errors[0].error.details == {"applied": "no"}


def test_an_answer_that_fails_costs_the_rest_of_the_batch_nothing() -> None:
    class Brittle(Recorder):
        def finish(self, token: int, response: Any, error: BaseException | None) -> None:
            super().finish(token, response, error)
            if token == 1:
                raise RuntimeError("this connection's answer failed")

    refused = in_one_turn(Brittle(refuse=frozenset({1, 2})), passes, 4)  # 1's refusal answer raises
    assert refused.passed == [0, 3] and sorted(refused.answers) == [1, 2]
    failed = in_one_turn(Brittle(refuse=frozenset({1, 2})), timed_out, 4)  # all answered, 1's raises
    assert failed.passed == [] and sorted(failed.answers) == [0, 1, 2, 3]


def test_a_refused_request_is_answered_and_the_rest_of_its_batch_passes() -> None:
    rec = in_one_turn(Recorder(refuse=frozenset({2, 5})), passes, 8)
    assert rec.passed == [0, 1, 3, 4, 6, 7]
    assert sorted(rec.answers) == [2, 5]
    assert all(e[0].code == ErrorCode.OVERLOADED for e in rec.answers.values())  # type: ignore[union-attr]
