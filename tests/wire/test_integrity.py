"""An attacker on the path, and one without the cookie (issue 12, items 2 and 3).

Each probe here changed data, or took the node's memory or slots, on protocol version 1.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any

import msgpack
import pytest

from aspen import protocol as p
from aspen.auth import Cookie, client_proof
from aspen.client import AsyncClient
from aspen.session import FrameMac, SessionKeys
from tests.wire.fakes import COOKIE, FrameRelay, ServerThread, closed_by_peer, connect, recv_frame, send_frame
from wire.errors import AspenError, ErrorCode


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def _relay_writes(server: ServerThread, mangle: Any, writes: list[tuple[str, bytes]]) -> list[Any]:
    """Send `writes` at once (one flush) through a relay; return each outcome."""
    relay = FrameRelay(server.port, mangle)
    try:
        async def go() -> list[Any]:
            async with AsyncClient([f"127.0.0.1:{relay.port}"], COOKIE, timeout_s=3, discover_leader=False,
                                   retries_max=1) as c:
                return await asyncio.gather(*(c.put(k, v) for k, v in writes), return_exceptions=True)

        return run(go())  # type: ignore[no-any-return]
    finally:
        relay.close()


def test_a_relay_that_rewrites_a_frame_changes_nothing(server: ServerThread) -> None:
    # Frame 0 is Auth (forwarded untouched: the handshake succeeds); frame 1 is the write.
    def rewrite(index: int, frame: bytes) -> list[bytes]:
        return [frame.replace(b"original", b"tampered")] if index == 1 else [frame]

    (outcome,) = _relay_writes(server, rewrite, [("secret/k", b"original")])
    assert isinstance(outcome, AspenError)
    assert server.handler.kv == {} and "WriteKey" not in server.handler.calls


@pytest.mark.parametrize("attack", ["replay", "drop", "reorder", "inject", "truncate_tag"])
def test_a_relay_that_replays_drops_reorders_or_injects_is_cut_off(server: ServerThread, attack: str) -> None:
    held: list[bytes] = []

    def mangle(index: int, frame: bytes) -> list[bytes]:
        if index == 0:
            return [frame]
        if attack == "replay":  # the first write again after the second: would undo it
            if index == 1:
                held.append(frame)
            return [frame, held[0]] if index == 2 else [frame]
        if attack == "drop":
            return [] if index == 1 else [frame]
        if attack == "reorder":
            if index == 1:
                held.append(frame)
                return []
            return [frame, held[0]] if index == 2 else [frame]
        if attack == "inject":
            body = msgpack.packb({"id": 99, "type": "WriteKey", "key": "k", "value": b"injected"})
            forged = struct.pack(">I", len(body) + 16) + body + b"\0" * 16
            return [forged, frame] if index == 1 else [frame]
        return [struct.pack(">I", len(frame) - 4 - 16) + frame[4:-16]] if index == 1 else [frame]

    outcomes = _relay_writes(server, mangle, [("k", b"first"), ("k", b"second")])
    assert server.handler.kv.get("k") in (None, b"second")  # never the replayed or injected value
    if attack == "replay":
        assert server.handler.calls.count("WriteKey") == 2  # each write once, the replay never ran
    else:
        assert server.handler.calls.count("WriteKey") <= 1 and b"injected" not in server.handler.kv.values()
    assert any(isinstance(o, AspenError) for o in outcomes) or attack == "replay"
    deadline = time.monotonic() + 5
    while server.connections() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.connections() == []  # the node closed the connection


def test_a_replaying_relay_gets_the_connection_closed_with_auth_failed(server: ServerThread) -> None:
    s = connect(server.port)
    frame = s.frame({"id": 1, "type": "WriteKey", "key": "k", "value": b"v"})
    s.sendall(frame)
    assert recv_frame(s)["type"] == "WriteResult"
    s.sendall(frame)  # the same bytes again
    err = recv_frame(s)
    assert (err["id"], err["code"]) == (0, "AUTH_FAILED") and "session tag" in err["message"]
    assert closed_by_peer(s) and server.handler.calls == ["WriteKey"]


def test_a_client_with_a_cookie_refuses_a_node_that_does_not_ask_for_it() -> None:
    """The downgrade impostor: Hello{auth: false} to a client holding the cookie."""
    received: list[bytes] = []

    async def go() -> None:
        async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(
                p.encode_frame({"type": "Hello", "version": p.PROTOCOL_VERSION, "node_id": 1, "auth": False})
            )
            received.append(await reader.read(65536))
            writer.close()

        srv = await asyncio.start_server(impostor, "127.0.0.1", 0)
        addr = f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        async with AsyncClient([addr], COOKIE, timeout_s=5) as c:
            t0 = time.monotonic()
            with pytest.raises(AspenError) as e:
                await c.put("secret/api-key", b"hunter2")
            assert (
                e.value.code == ErrorCode.AUTH_FAILED
                and "did not ask for the cluster cookie" in e.value.message
            )
            assert time.monotonic() - t0 < 2  # refused at once, not retried
        srv.close()
        await srv.wait_closed()

    run(go())
    assert b"hunter2" not in b"".join(received) and b"".join(received) == b""


def test_an_old_client_and_an_old_node_are_refused_by_version(server: ServerThread) -> None:
    s = connect(server.port, authenticate_now=False)
    send_frame(s, {"type": "Auth", "nonce": b"n" * 32, "mac": b"\0" * 32})  # version 1's Auth has none
    err = recv_frame(s)
    assert err["code"] == "INVALID_REQUEST" and "protocol version None, this node 2" in err["message"]

    async def go() -> None:
        async def v1_node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(
                p.encode_frame(
                    {"type": "Hello", "version": 1, "node_id": 1, "auth": True, "nonce": b"s" * 32}
                )
            )
            await asyncio.sleep(1)
            writer.close()

        srv = await asyncio.start_server(v1_node, "127.0.0.1", 0)
        async with AsyncClient([f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"], COOKIE) as c:
            with pytest.raises(AspenError) as e:
                await c.ping()
            assert (
                e.value.code == ErrorCode.INVALID_REQUEST
                and "protocol version 1, this client 2" in e.value.message
            )
        srv.close()

    run(go())


# -- bounded work before authentication ----------------------------------------------------------


@pytest.mark.parametrize("claim", [p.PREAUTH_FRAME_MAX_BYTES + 1, 15 * 1024 * 1024])
def test_a_big_frame_before_auth_is_refused_from_its_header(server: ServerThread, claim: int) -> None:
    s = connect(server.port, authenticate_now=False)
    s.sendall(struct.pack(">I", claim) + b"\x91" * 1000)
    err = recv_frame(s)
    assert err["code"] == "FRAME_TOO_LARGE" and "before authentication" in err["message"]
    assert closed_by_peer(s) and server.handler.calls == []


def test_a_frame_at_the_preauth_bound_is_read(server: ServerThread) -> None:
    s = connect(server.port, authenticate_now=False)
    body = msgpack.packb({"type": "Auth", "version": 2, "pad": b"x" * (p.PREAUTH_FRAME_MAX_BYTES - 40)})
    body += b"\0" * 0
    assert len(body) <= p.PREAUTH_FRAME_MAX_BYTES
    s.sendall(struct.pack(">I", len(body)) + body)
    assert recv_frame(s)["code"] == "AUTH_FAILED"  # read and judged: a missing nonce and mac


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x81\xa1a" + b"\x91" * 40 + b"\x00", "deeper than 32"),  # nested
        # wide
        (b"\x81\xa1a\xdd" + struct.pack(">I", 2_000_000) + b"\x91\x00" * 2_000_000, "would decode to over"),
    ],
)
def test_decoding_is_bounded_for_the_whole_message(server: ServerThread, body: bytes, why: str) -> None:
    s = connect(server.port)
    assert s.send_mac is not None
    tag = s.send_mac.tag(body)
    s.sendall(struct.pack(">I", len(body) + len(tag)) + body + tag)
    err = recv_frame(s)
    assert err["code"] == "MALFORMED_FRAME" and why in err["message"]
    assert closed_by_peer(s)


def test_the_decoding_bound_admits_real_pages() -> None:
    # The densest real frame: a full scan page of one-byte keys with empty values.
    entries = [{"key": chr(65 + i % 26), "value": b"", "version": 1, "create_revision": 1, "mod_revision": 1}
               for i in range(10_000)]
    page = {"id": 1, "type": "ScanResult", "entries": entries, "continuation_token": None}
    assert p.decode_body(msgpack.packb(page, use_bin_type=True)) == page
    blob = {"id": 2, "type": "BlobResult", "found": True, "data": b"x" * (50 * 1024 * 1024), "size": 1}
    assert p.decode_body(msgpack.packb(blob, use_bin_type=True))["data"] == blob["data"]


def test_silent_sockets_never_take_a_clients_slot() -> None:
    srv = ServerThread(connections_max=8)
    silent: list[socket.socket] = []
    try:
        for _ in range(1024):
            silent.append(socket.create_connection(("127.0.0.1", srv.port)))

        async def go() -> float:
            async with AsyncClient([srv.addr], COOKIE, timeout_s=5, retries_max=1) as c:
                t0 = time.monotonic()
                assert (await c.ping())["type"] == "Pong"
                return time.monotonic() - t0

        print(f"ping behind 1024 silent sockets: {run(go()) * 1000:.1f} ms")
        assert len(srv.server.preauth) <= srv.server.preauth_connections_max
    finally:
        for s in silent:
            s.close()
        srv.close()


def test_a_recorded_session_replayed_on_a_new_connection_runs_nothing(server: ServerThread) -> None:
    s = connect(server.port, authenticate_now=False)
    nonce = b"n" * 32
    auth = {
        "type": "Auth",
        "version": 2,
        "nonce": nonce,
        "mac": Cookie(COOKIE).mac(*client_proof(s.hello["nonce"], nonce)),
    }
    body = msgpack.packb(auth, use_bin_type=True)
    recorded = struct.pack(">I", len(body)) + body
    s.sendall(recorded)
    assert recv_frame(s)["type"] == "AuthOk"
    keys = SessionKeys.derive(Cookie(COOKIE), s.hello["nonce"], nonce, server=False)
    s.send_mac, s.recv_mac = FrameMac(keys.send), FrameMac(keys.receive)
    write = s.frame({"id": 1, "type": "WriteKey", "key": "k", "value": b"once"})
    s.sendall(write)
    assert recv_frame(s)["type"] == "WriteResult"
    s.close()
    del server.handler.kv["k"]
    again = connect(server.port, authenticate_now=False)  # a new server nonce
    again.sendall(recorded + write)
    assert recv_frame(again)["code"] == "AUTH_FAILED"
    assert closed_by_peer(again) and "k" not in server.handler.kv and server.handler.calls == ["WriteKey"]


def test_a_nodes_own_frames_reflected_back_fail_their_tag(server: ServerThread) -> None:
    s = connect(server.port)
    send_frame(s, {"id": 1, "type": "Ping"})
    (n,) = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))
    data = s.recv(n, socket.MSG_WAITALL)
    assert s.recv_mac is not None and s.recv_mac.check(data[:-16], data[-16:])  # the Pong, tagged by the node
    s.sendall(struct.pack(">I", n) + data)  # each direction has its own key: a reflection is a forgery
    err = recv_frame(s)
    assert err["code"] == "AUTH_FAILED" and closed_by_peer(s)
