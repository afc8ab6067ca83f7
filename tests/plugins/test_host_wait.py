"""NodeHost waits for the node no longer than the plugin call it serves has left."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import nacl.signing
import pytest

from aspen.plugins.logring import LogRing
from aspen.plugins.nodehost import NodeHost
from sandbox import HostError


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    # A host call that timed out leaves its coroutine running on the loop (as in the node).
    asyncio.run_coroutine_threadsafe(_cancel_others(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


async def _cancel_others() -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def _host(loop: asyncio.AbstractEventLoop, timeout_s: float) -> NodeHost:
    services = SimpleNamespace(replicated=None)
    return NodeHost("p", None, services, nacl.signing.SigningKey.generate(), loop, timeout_s,  # type: ignore[arg-type]
                    LogRing())


def test_a_host_call_waits_no_longer_than_the_plugin_call_has_left(loop: asyncio.AbstractEventLoop) -> None:
    # It waited the node's whole request timeout + 1 s (here 6 s), far past a 0.2 s plugin timeout.
    host = _host(loop, timeout_s=5.0)
    host.call_time_left_s = lambda: 0.2
    started = time.monotonic()
    with pytest.raises(HostError) as err:
        host._run(asyncio.sleep(30))
    assert err.value.code == "TIMEOUT"
    assert time.monotonic() - started < 0.2 + 1.0


def test_a_host_call_within_the_time_left_returns_its_result(loop: asyncio.AbstractEventLoop) -> None:
    host = _host(loop, timeout_s=5.0)
    host.call_time_left_s = lambda: 5.0

    async def answer() -> str:
        await asyncio.sleep(0.01)
        return "done"

    assert host._run(answer()) == "done"
