"""AsyncClient and Client against real servers: multiplexing, leader discovery, retries."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from aspen.client import AsyncClient, Client, parse_endpoints
from tests.wire.fakes import COOKIE, DictHandler, ScriptedServer, ServerThread
from wire.errors import AspenError, ErrorCode


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def dead_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed


def test_typed_methods_against_the_dict_node(server: ServerThread) -> None:
    async def go() -> None:
        async with AsyncClient([server.addr], COOKIE, timeout_s=5) as c:
            assert (await c.ping())["type"] == "Pong"
            assert (await c.put("a/1", b"one"))["revision"] == 1
            await c.put("a/2", b"two")
            r = await c.get("a/1")
            assert r["was_found"] and r["value"] == b"one" and "id" not in r
            assert (await c.get("nope", stale=True))["was_found"] is False
            assert (await c.scan("a/", limit=1))["continuation_token"] == "a/1"
            assert [e["key"] for e in await c.scan_all("a/")] == ["a/1", "a/2"]
            assert (await c.cas("a/1", b"one", b"uno"))["type"] == "CompareAndSwapResult"
            with pytest.raises(AspenError) as e:
                await c.cas("a/1", None, b"x")
            assert e.value.code == ErrorCode.CAS_FAILED and e.value.error.details["actual_value"] == b"uno"
            assert (
                await c.batch([{"op": "Set", "key": "b", "value": b"v"}, {"op": "Delete", "key": "a/2"}])
            )["count"] == 2
            assert (await c.delete("b"))["deleted"] is True
            blob = await c.put_blob(b"blob bytes")
            assert (await c.has_blob(blob["hash"]))["exists"] is True
            assert (await c.get_blob(blob["hash"]))["data"] == b"blob bytes"
            assert (await c.cluster_status())["leader_id"] == 1
            with pytest.raises(AspenError) as e:
                await c.request("Frobnicate", x=1)
            assert e.value.code == ErrorCode.UNKNOWN_REQUEST

    run(go())


def test_many_requests_in_flight_share_one_connection(server: ServerThread) -> None:
    async def go() -> None:
        async with AsyncClient([server.addr], COOKIE) as c:
            replies = await asyncio.gather(
                *(c.request("Sleep", delay_s=0.001 * (i % 7), tag=i) for i in range(500))
            )
            assert [r["tag"] for r in replies] == list(range(500))

    run(go())
    assert len(server.connections()) <= 1 and server.handler.running_max > 1
    assert server.handler.calls.count("ClusterStatus") == 1  # one discovery for 500 first requests


def leader_and_follower() -> tuple[ServerThread, ServerThread]:
    """Node 2 leads; node 1 follows and names node 2's address in its status."""
    leader = ServerThread(DictHandler(node_id=2))
    follower = ServerThread(DictHandler(node_id=1))
    follower.handler.leader_id = 2
    follower.handler.peers = [{"node_id": 2, "client_addr": leader.addr, "raft_addr": "x", "role": "leader",
                               "connected": True}]
    return leader, follower


def test_leader_discovery_sends_to_the_leader() -> None:
    leader, follower = leader_and_follower()
    try:

        async def go() -> None:
            async with AsyncClient([follower.addr], COOKIE) as c:
                await c.put("k", b"v")
                assert c.leader_addr == leader.addr

        run(go())
        assert follower.handler.calls == ["ClusterStatus"] and leader.handler.kv == {"k": b"v"}
    finally:
        leader.close()
        follower.close()


def test_not_leader_hint_is_followed() -> None:
    leader = ServerThread(DictHandler(node_id=2))
    follower = ServerThread(DictHandler(node_id=1))
    try:
        async def refuse(req: dict) -> dict | None:
            if req["type"] == "WriteKey":
                raise AspenError(
                    ErrorCode.NOT_LEADER, "only the leader writes", leader_id=2, leader_addr=leader.addr
                )
            return None

        follower.handler.intercept = refuse

        async def go() -> None:
            async with AsyncClient([follower.addr], COOKIE, discover_leader=False) as c:
                assert (await c.put("k", b"v"))["type"] == "WriteResult"
                assert c.leader_addr == leader.addr
                await c.put("k2", b"v")  # straight to the leader now

        run(go())
        assert follower.handler.calls == ["WriteKey"] and set(leader.handler.kv) == {"k", "k2"}
    finally:
        leader.close()
        follower.close()


def test_not_leader_without_hint_is_bounded() -> None:
    def script(_: int, req: dict) -> dict:
        return {"type": "Error", "code": "NOT_LEADER", "message": "no idea who leads"}

    async def go() -> None:
        srv = ScriptedServer(script)
        addr = await srv.start()
        async with AsyncClient([addr], None, timeout_s=5, retries_max=4, discover_leader=False) as c:
            with pytest.raises(AspenError) as e:
                await c.put("k", b"v")
        assert e.value.code == ErrorCode.NOT_LEADER and len(srv.requests) == 4
        await srv.stop()

    run(go())


def test_connection_refused_moves_to_another_endpoint(open_server: ServerThread) -> None:
    async def go() -> None:
        async with AsyncClient(
            [dead_addr(), open_server.addr], None, timeout_s=5, discover_leader=False
        ) as c:
            for _ in range(3):
                assert (await c.put("k", b"v"))["type"] == "WriteResult"

    run(go())


def test_all_endpoints_down_fails_within_the_deadline() -> None:
    async def go() -> None:
        async with AsyncClient([dead_addr(), dead_addr()], None, timeout_s=1.0) as c:
            t0 = time.monotonic()
            with pytest.raises(AspenError) as e:
                await c.get("k")
            assert e.value.code == ErrorCode.UNAVAILABLE and time.monotonic() - t0 < 2.5

    run(go())


def test_write_with_unknown_outcome_is_not_resent() -> None:
    # The server reads the write and drops the connection without answering.
    async def go() -> None:
        srv = ScriptedServer(lambda i, req: None if req["type"] == "WriteKey" else {"type": "Pong"})
        addr = await srv.start()
        async with AsyncClient([addr], None, timeout_s=5, discover_leader=False) as c:
            with pytest.raises(AspenError) as e:
                await c.put("k", b"v")
        assert e.value.error.details.get("applied") == "unknown"
        assert [r["type"] for r in srv.requests] == ["WriteKey"]
        await srv.stop()

    run(go())


def test_read_with_unknown_outcome_is_retried() -> None:
    async def go() -> None:
        srv = ScriptedServer(lambda i, req: None if i == 0 else {"type": "ReadResult", "was_found": False})
        addr = await srv.start()
        async with AsyncClient([addr], None, timeout_s=5, discover_leader=False) as c:
            assert (await c.get("k"))["was_found"] is False
        assert srv.connections == 2 and len(srv.requests) == 2
        await srv.stop()

    run(go())


def test_timeout_is_raised_and_not_retried(open_server: ServerThread) -> None:
    async def go() -> None:
        async with AsyncClient([open_server.addr], None, timeout_s=0.3, discover_leader=False) as c:
            t0 = time.monotonic()
            with pytest.raises(AspenError) as e:
                await c.request("Sleep", delay_s=2)
            assert e.value.code == ErrorCode.TIMEOUT and e.value.error.details["applied"] == "unknown"
            assert time.monotonic() - t0 < 1
            assert (await c.ping())["type"] == "Pong"  # the connection is still usable

    run(go())
    assert open_server.handler.calls.count("Sleep") == 1


def test_unavailable_write_retried_only_when_not_applied() -> None:
    failures = {"n": 0}

    def script(_: int, req: dict) -> dict:
        if req["type"] == "WriteKey" and failures["n"] < 2:
            failures["n"] += 1
            return {"type": "Error", "code": "UNAVAILABLE", "message": "electing", "applied": "no"}
        if req["type"] == "DeleteKey":
            return {"type": "Error", "code": "UNAVAILABLE", "message": "leader lost", "applied": "unknown"}
        return {"type": "WriteResult", "revision": 1}

    async def go() -> None:
        srv = ScriptedServer(script)
        addr = await srv.start()
        async with AsyncClient([addr], None, timeout_s=5, discover_leader=False) as c:
            assert (await c.put("k", b"v"))["revision"] == 1
            with pytest.raises(AspenError) as e:
                await c.delete("k")
            assert e.value.code == ErrorCode.UNAVAILABLE and e.value.error.details["applied"] == "unknown"
        assert [r["type"] for r in srv.requests] == ["WriteKey"] * 3 + ["DeleteKey"]
        await srv.stop()

    run(go())


def test_wrong_cookie_fails_fast(server: ServerThread) -> None:
    async def go() -> None:
        for cookie in ("wrong-cookie-0123456789", None):
            async with AsyncClient([server.addr], cookie, timeout_s=10) as c:
                t0 = time.monotonic()
                with pytest.raises(AspenError) as e:
                    await c.ping()
                assert e.value.code == ErrorCode.AUTH_FAILED and time.monotonic() - t0 < 1

    run(go())
    assert server.handler.calls == []


def test_client_refuses_a_server_that_cannot_prove_the_cookie() -> None:
    # A fake node that asks for auth and answers AuthOk with a made-up mac.
    async def go() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            from aspen import protocol as p

            writer.write(p.encode_frame({"type": "Hello", "version": 2, "node_id": 1, "auth": True,
                                         "nonce": b"s" * 32}))
            await p.read_frame(reader)
            writer.write(p.encode_frame({"type": "AuthOk", "node_id": 1, "mac": b"\0" * 32}))
            await writer.drain()
            await asyncio.sleep(0.5)
            writer.close()

        srv = await asyncio.start_server(serve, "127.0.0.1", 0)
        addr = f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        async with AsyncClient([addr], COOKIE, timeout_s=5) as c:
            with pytest.raises(AspenError) as e:
                await c.ping()
            assert e.value.code == ErrorCode.AUTH_FAILED
        srv.close()
        await srv.wait_closed()

    run(go())


def test_oversized_request_is_refused_locally(open_server: ServerThread) -> None:
    async def go() -> None:
        async with AsyncClient([open_server.addr], None) as c:
            with pytest.raises(AspenError) as e:
                await c.put_blob(b"x" * (64 * 1024 * 1024 + 1))
            assert e.value.code == ErrorCode.FRAME_TOO_LARGE

    run(go())
    assert "PutBlob" not in open_server.handler.calls


def test_sync_client_from_plain_code_and_threads(server: ServerThread) -> None:
    before = threading.active_count()
    with Client(f"{server.addr}", COOKIE, timeout_s=5) as c:
        assert c.put("k", b"v")["revision"] == 1
        assert c.get("k")["value"] == b"v"
        results: list[Any] = []
        workers = [
            threading.Thread(target=lambda i=i: results.append(c.put(f"t/{i}", b"x"))) for i in range(8)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert len(results) == 8 and len(c.scan_all("t/")) == 8
        assert c.request("Ping")["node_id"] == 1
        with pytest.raises(AspenError) as e:
            c.cas("k", b"other", b"x")
        assert e.value.code == ErrorCode.CAS_FAILED
    assert threading.active_count() <= before  # close() stopped its loop thread
    c.close()  # idempotent


def test_sync_client_inside_a_running_event_loop(server: ServerThread) -> None:
    async def go() -> None:
        with Client([server.addr], COOKIE) as c:  # blocking, but from a coroutine it still works
            assert c.ping()["type"] == "Pong"

    asyncio.run(go())


@pytest.mark.parametrize("bad", ["", "nohost", "h:", "h:x", ":1", "h:70000", []])
def test_endpoint_parsing(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_endpoints(bad)
    assert parse_endpoints(" a:1, b:2 ,") == ["a:1", "b:2"]
    with pytest.raises(ValueError):
        Client(bad)


def test_every_endpoint_refusing_fails_at_once_not_at_the_deadline() -> None:
    # With a 600 s deadline and retries to spare, the old client backed off until the deadline
    # (8.8 s with the CLI's defaults); an endpoint that refuses is not asked twice per request.
    async def go() -> None:
        dead = [dead_addr(), dead_addr()]
        async with AsyncClient(dead, None, timeout_s=600, retries_max=10_000) as c:
            with pytest.raises(AspenError) as e:
                await c.get("k")
        assert e.value.code == ErrorCode.UNAVAILABLE and e.value.error.details.get("applied") == "no"
        assert all(addr in e.value.message for addr in dead) and "nothing listens there" in e.value.message

    run(go())


def test_an_unknown_host_fails_at_once() -> None:
    async def go() -> None:
        async with AsyncClient(["no-such-host.invalid:7701"], None, timeout_s=600, retries_max=10_000) as c:
            with pytest.raises(AspenError) as e:
                await c.get("k")
        assert e.value.code == ErrorCode.UNAVAILABLE and "unknown host" in e.value.message

    run(go())


def test_auth_failed_on_one_endpoint_tries_the_others(server: ServerThread) -> None:
    # A cookie rotation half done: one node has another cookie; the request still succeeds.
    other = ServerThread(cookie="another-cookie-0123456789abcdef")
    try:
        for discover in (True, False):
            with Client([other.addr, server.addr], COOKIE, timeout_s=10, discover_leader=discover) as c:
                assert c.put("k", b"v")["type"] == "WriteResult"
        assert other.handler.calls == [] and server.handler.kv == {"k": b"v"}
        with Client([other.addr], COOKIE, timeout_s=10) as c, pytest.raises(AspenError) as e:
            c.get("k")
        assert e.value.code == ErrorCode.AUTH_FAILED
    finally:
        other.close()


def test_a_pinned_client_is_served_by_its_node_only() -> None:
    leader, follower = leader_and_follower()
    try:

        async def refuse(req: dict) -> dict | None:
            if req["type"] == "WriteKey":
                raise AspenError(
                    ErrorCode.NOT_LEADER, "only the leader writes", leader_id=2, leader_addr=leader.addr
                )
            return None

        follower.handler.intercept = refuse
        with Client([follower.addr], COOKIE, pin=True) as c:
            assert c.cluster_status()["node_id"] == 1  # no discovery: the follower answers itself
            assert c.get("k", stale=True)["was_found"] is False
            with pytest.raises(AspenError) as e:
                c.put("k", b"v")
        assert e.value.code == ErrorCode.NOT_LEADER
        assert (
            follower.handler.calls == ["ClusterStatus", "ReadKey", "WriteKey"] and leader.handler.calls == []
        )
        with pytest.raises(ValueError):
            Client([follower.addr, leader.addr], COOKIE, pin=True)
    finally:
        leader.close()
        follower.close()


def test_put_takes_text_as_utf8(server: ServerThread) -> None:
    with Client([server.addr], COOKIE) as c:
        c.put("t", "héllo")
        assert c.get("t")["value"] == "héllo".encode()
