"""PluginWorker: calls run one at a time, in order, off the loop; outcomes always come back."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from aspen.plugins.worker import PluginWorker
from wire.errors import AspenError, ErrorCode


def test_calls_run_in_order_on_one_thread_and_results_come_back() -> None:
    async def main() -> None:
        worker = PluginWorker("w", asyncio.get_running_loop())
        seen: list[tuple[int, str]] = []

        def call(i: int) -> int:
            seen.append((i, threading.current_thread().name))
            return i * 2

        results = await asyncio.gather(*(worker.submit(call, i) for i in range(500)))
        assert results == [i * 2 for i in range(500)]
        assert [i for i, _ in seen] == list(range(500))
        assert {name for _, name in seen} == {"plugin-w"}
        # Idle, then woken again, many times over.
        for i in range(50):
            await asyncio.sleep(0.001 if i % 5 == 0 else 0)
            assert await worker.submit(call, i) == i * 2
        worker.close()

    asyncio.run(main())


def test_exceptions_reach_the_caller_and_the_worker_keeps_going() -> None:
    async def main() -> None:
        worker = PluginWorker("w", asyncio.get_running_loop())

        def boom() -> None:
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            await worker.submit(boom)
        assert await worker.submit(lambda: 5) == 5
        worker.close()

    asyncio.run(main())


def test_close_runs_what_was_queued_then_refuses() -> None:
    async def main() -> None:
        worker = PluginWorker("w", asyncio.get_running_loop())
        gate = threading.Event()
        first = worker.submit(gate.wait, 5)
        queued = [worker.submit(lambda i=i: i) for i in range(10)]
        worker.close()
        with pytest.raises(AspenError) as err:
            worker.submit(lambda: None)
        assert err.value.code == ErrorCode.UNAVAILABLE
        gate.set()
        assert await first is True
        assert await asyncio.gather(*queued) == list(range(10))

    asyncio.run(main())


def test_a_full_queue_refuses_with_overloaded() -> None:
    async def main() -> None:
        worker = PluginWorker("w", asyncio.get_running_loop(), queue_max=4)
        gate = threading.Event()
        running = worker.submit(gate.wait, 5)
        deadline = time.monotonic() + 5
        while worker.pending() and time.monotonic() < deadline:  # the worker took the first call
            await asyncio.sleep(0.001)
        queued = [worker.submit(lambda: 1) for _ in range(4)]
        with pytest.raises(AspenError) as err:
            worker.submit(lambda: 1)
        assert err.value.code == ErrorCode.OVERLOADED
        gate.set()
        await running
        assert await asyncio.gather(*queued) == [1, 1, 1, 1]
        worker.close()

    asyncio.run(main())


def test_close_runs_its_last_call_after_the_queue_even_when_the_queue_is_full() -> None:
    async def main() -> None:
        worker = PluginWorker("w", asyncio.get_running_loop(), queue_max=4)
        gate = threading.Event()
        order: list[str] = []
        running = worker.submit(gate.wait, 5)
        deadline = time.monotonic() + 5
        while worker.pending() and time.monotonic() < deadline:  # the worker took the first call
            await asyncio.sleep(0.001)
        queued = [worker.submit(order.append, f"call {i}") for i in range(4)]  # the queue is full
        last = worker.close(then=lambda: order.append("shutdown"))
        assert last is not None
        assert worker.close(then=lambda: order.append("twice")) is None  # closed already: not queued
        with pytest.raises(AspenError) as err:
            worker.submit(lambda: 1)
        assert err.value.code == ErrorCode.UNAVAILABLE
        gate.set()
        await running
        await asyncio.gather(*queued)
        await asyncio.wait_for(last, 5)
        assert order == ["call 0", "call 1", "call 2", "call 3", "shutdown"]

    asyncio.run(main())


def test_calls_posted_in_one_loop_turn_reach_the_worker_together_at_its_end() -> None:
    async def main() -> None:
        worker = PluginWorker("w", asyncio.get_running_loop())
        ran: list[int] = []
        futures = [worker.submit(ran.append, i) for i in range(5)]
        time.sleep(0.05)  # still this loop turn: the worker was not woken to wait for the GIL
        assert ran == [] and worker.pending() == 5
        await asyncio.gather(*futures)
        assert ran == [0, 1, 2, 3, 4]
        worker.close()

    asyncio.run(main())
