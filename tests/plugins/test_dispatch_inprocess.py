"""Hand-off dispatch of plugin requests, with a real node in this process (one member on real
pysyncobj, a real WAT plugin that reads KV): every request handed to a plugin is answered
exactly once through `finish`, also when the node stops while requests wait for their read
barrier, including a request whose task never got to start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import uvloop

from aspen.node import AspenNode, NodeConfig
from tests.cluster.test_raft_inprocess import free_ports
from tests.plugins.wat import manifest, plugin
from wire.errors import AspenError


async def _started(tmp: Path) -> AspenNode:
    client_port, raft_port = free_ports(2)
    node = AspenNode(NodeConfig(node_id=1, data_dir=tmp, listen=f"127.0.0.1:{client_port}",
                                raft=f"127.0.0.1:{raft_port}"))
    await node.start()
    deadline = time.monotonic() + 10
    while not node.replicated.is_leader():
        assert time.monotonic() < deadline, "a one-member cluster elected no leader"
        await asyncio.sleep(0.05)
    return node


Answers = dict[int, list[tuple[Any, BaseException | None]]]


async def _kv_plugin(node: AspenNode) -> tuple[Answers, Callable[[int], None]]:
    """A plugin that reads KV (so its requests pass the read gate), installed on `node`: the
    answers it gives by request id, and hand(request_id) to hand it a KvPing."""
    wasm = plugin("kvp", "1.0.0", {"type": "KvPong"}, imports=("kv_get_value",), strings=(b"kvp:k",),
                  handle="(drop (call $kv_get_value $s0))")
    await node.plugin_admin.install(
        {
            "manifest": manifest(
                "kvp", "1.0.0", ["KvPing"], kv_prefixes=["kvp:"], permissions={"kv_read": True}
            ),
            "wasm": bytes(wasm),
        }
    )
    loaded = node.plugins.table.plugins["kvp"]
    answers: Answers = {}

    def finish(token: tuple[int, str, float], response: Any, error: BaseException | None) -> None:
        answers.setdefault(token[0], []).append((response, error))

    def hand(request_id: int) -> None:
        node.plugins.handle(loaded, {"type": "KvPing"}, finish, (request_id, "KvPing", time.perf_counter()))

    return answers, hand


def test_every_handed_on_request_is_answered_once_even_when_the_node_stops(tmp_path: Path) -> None:
    async def scenario() -> Answers:
        node = await _started(tmp_path)
        try:
            answers, hand = await _kv_plugin(node)

            hand(1)  # served: barrier, then the worker
            deadline = time.monotonic() + 10
            while 1 not in answers:
                assert time.monotonic() < deadline, "request 1 was never answered"
                await asyncio.sleep(0.01)
            hand(2)
            await asyncio.sleep(0)  # request 2's batch starts and waits for its barrier
            hand(3)  # request 3's batch (the next) is cancelled by stop before its task ever runs
            await node.plugins.stop()
            await asyncio.sleep(0.1)
            return answers
        finally:
            await node.stop()

    answers = uvloop.run(scenario())
    assert sorted(answers) == [1, 2, 3] and all(len(a) == 1 for a in answers.values())  # once each
    assert answers[1] == [({"type": "KvPong"}, None)]
    for request_id in (2, 3):
        response, error = answers[request_id][0]
        # Request 2 may have passed its barrier before the stop (then the plugin answered it).
        if request_id == 3 or error is not None:
            assert isinstance(error, AspenError) and error.code == "UNAVAILABLE", (request_id, error)
            assert error.error.details == {"applied": "no"}
        else:
            assert response == {"type": "KvPong"}


def test_a_plugin_that_cannot_load_says_why_in_its_log_once(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, Any]]:
        node = await _started(tmp_path)
        try:
            bad = {
                "name": "broken",
                "version": "1.0.0",
                "handles": ["X"],
                "priority": 5,
                "wasm_hash": "ab" * 32,
            }
            await node.native.commit(["meta_put", "plugins", "broken", msgpack.packb(bad)])
            for _ in range(3):  # retried on every reconcile; logged once per reason
                await node.plugins.reconcile()
            return node.plugins.local_logs("broken", 0, 0, 10)["lines"]
        finally:
            await node.stop()

    lines = uvloop.run(scenario())
    assert [(ln["level"], ln["message"][:12]) for ln in lines] == [("trap", "not loaded: ")], lines
    assert "priority" in lines[0]["message"]


def test_a_turns_plugin_requests_take_one_read_index_and_all_are_served(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, Answers]:
        node = await _started(tmp_path)
        try:
            answers, hand = await _kv_plugin(node)
            rounds = 0
            read_index = node.replicated.read_index

            async def counted(timeout_s: float) -> int:  # the node's own, counted
                nonlocal rounds
                rounds += 1
                return await read_index(timeout_s)

            node.replicated.read_index = counted  # type: ignore[method-assign]

            for request_id in range(1, 65):  # one loop turn, as from 64 clients
                hand(request_id)
            deadline = time.monotonic() + 10
            while len(answers) < 64:
                assert time.monotonic() < deadline, f"{64 - len(answers)} requests never answered"
                await asyncio.sleep(0.01)
            return rounds, answers
        finally:
            await node.stop()

    rounds, answers = uvloop.run(scenario())
    # One wait for a read index for the whole turn (a request each before the gate; the node
    # merged those into one round of pings, but each still paid for its own task and wait).
    assert rounds == 1
    assert answers == {i: [({"type": "KvPong"}, None)] for i in range(1, 65)}
