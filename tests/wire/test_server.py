"""aspen.server.Server over real sockets, with an in-process dict handler."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import pytest

from aspen.auth import Cookie, client_proof
from aspen.server import Finish, Identity, Token
from tests.wire.fakes import COOKIE, ServerThread, closed_by_peer, connect, recv_frame, send_frame
from wire.errors import AspenError, ErrorCode


def test_handshake_is_mutual_and_requests_then_run(server: ServerThread) -> None:
    s = connect(server.port)  # checks the server's mac too
    send_frame(s, {"id": 1, "type": "WriteKey", "key": "a", "value": b"1"})
    r = recv_frame(s)
    assert r["id"] == 1 and r["type"] == "WriteResult" and r["revision"] == 1
    send_frame(s, {"id": 2, "type": "ReadKey", "key": "a"})
    assert recv_frame(s) == {"id": 2, "type": "ReadResult", "was_found": True, "value": b"1", "version": 1,
                             "create_revision": 0, "mod_revision": 0}


def test_handler_never_sees_the_id(server: ServerThread) -> None:
    seen: list[dict] = []

    async def spy(req: dict) -> None:
        seen.append(dict(req))

    server.handler.intercept = spy
    s = connect(server.port)
    send_frame(s, {"id": 5, "type": "Ping", "extra": "ignored"})
    assert recv_frame(s)["id"] == 5
    assert seen == [{"type": "Ping", "extra": "ignored"}]


@pytest.mark.parametrize("mac", [b"\0" * 32, b"short", "text", None])
def test_wrong_cookie_fails_and_nothing_runs(server: ServerThread, mac: object) -> None:
    s = connect(server.port, authenticate_now=False)
    auth = {"type": "Auth", "version": 2, "nonce": b"x" * 32}
    if mac is not None:
        auth["mac"] = mac
    # Requests pipelined behind a bad Auth must not execute.
    s.sendall(b"".join(_raw(m) for m in [auth, {"id": 1, "type": "WriteKey", "key": "evil", "value": b"x"}]))
    err = recv_frame(s)
    assert err["type"] == "Error" and err["code"] == "AUTH_FAILED" and err["id"] == 0
    assert closed_by_peer(s)
    assert server.handler.calls == [] and server.handler.kv == {}


def test_a_different_cookie_fails(server: ServerThread) -> None:
    with pytest.raises(AssertionError):
        connect(server.port, cookie="another-cookie-0123456789")
    assert server.handler.calls == []


def test_requests_before_auth_are_refused(server: ServerThread) -> None:
    s = connect(server.port, authenticate_now=False)
    send_frame(s, {"id": 1, "type": "WriteKey", "key": "evil", "value": b"x"})
    assert recv_frame(s)["code"] == "AUTH_FAILED"
    assert closed_by_peer(s) and server.handler.calls == []


def test_handshake_deadline_disconnects_a_silent_client() -> None:
    srv = ServerThread(handshake_timeout_s=0.2)
    try:
        s = connect(srv.port, authenticate_now=False)
        t0 = time.monotonic()
        assert recv_frame(s)["code"] == "AUTH_FAILED"
        assert closed_by_peer(s) and time.monotonic() - t0 < 2
    finally:
        srv.close()


def test_no_auth_mode(open_server: ServerThread) -> None:
    s = socket.create_connection(("127.0.0.1", open_server.port), timeout=5)
    hello = recv_frame(s)
    assert hello == {"type": "Hello", "version": 2, "node_id": 1, "auth": False}
    send_frame(s, {"id": 1, "type": "Ping"})
    assert recv_frame(s) == {"id": 1, "type": "Pong", "node_id": 1}


def _raw(msg: dict) -> bytes:
    import msgpack

    body = msgpack.packb(msg, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def test_oversized_frame_closes_only_that_connection(server: ServerThread) -> None:
    bystander = connect(server.port)
    s = connect(server.port)
    s.sendall(struct.pack(">I", 64 * 1024 * 1024 + 1) + b"x" * 1000)  # no body will ever be read
    err = recv_frame(s)
    assert err["code"] == "FRAME_TOO_LARGE" and err["id"] == 0
    assert closed_by_peer(s)
    send_frame(bystander, {"id": 1, "type": "Ping"})
    assert recv_frame(bystander)["type"] == "Pong"
    assert connect(server.port)  # and new connections are welcome


@pytest.mark.parametrize("body", [b"\xc1", b"\x93\x01\x02\x03", b"\xa3abc", b"\x81\x01\x02"])
def test_malformed_body_closes_the_connection(server: ServerThread, body: bytes) -> None:
    s = connect(server.port)
    assert s.send_mac is not None
    tag = s.send_mac.tag(body)  # a well-tagged frame whose body is not a map
    s.sendall(struct.pack(">I", len(body) + len(tag)) + body + tag + s.frame({"id": 9, "type": "Ping"}))
    err = recv_frame(s)
    assert err["code"] == "MALFORMED_FRAME" and err["id"] == 0
    assert closed_by_peer(s)  # the Ping behind it was not answered
    assert "Ping" not in server.handler.calls


@pytest.mark.parametrize(
    ("msg", "reply_id", "message"),
    [
        ({"type": "Ping"}, 0, "id: must be an integer from 1 to 2^64-1"),
        ({"id": 0, "type": "Ping"}, 0, "id: must be an integer from 1 to 2^64-1"),
        ({"id": -3, "type": "Ping"}, 0, "id: must be an integer from 1 to 2^64-1"),
        ({"id": True, "type": "Ping"}, 0, "id: must be an integer from 1 to 2^64-1"),
        ({"id": "7", "type": "Ping"}, 0, "id: must be an integer from 1 to 2^64-1"),
        ({"id": 7}, 7, "type: must be a string of 1 to 128 characters"),
        ({"id": 7, "type": 12}, 7, "type: must be a string of 1 to 128 characters"),
        ({"id": 7, "type": "T" * 129}, 7, "type: must be a string of 1 to 128 characters"),
    ],
)
def test_bad_envelopes_get_errors_and_the_connection_lives(server: ServerThread, msg: dict, reply_id: int,
                                                            message: str) -> None:
    s = connect(server.port)
    send_frame(s, msg)
    assert recv_frame(s) == {"type": "Error", "code": "INVALID_REQUEST", "message": message, "id": reply_id}
    send_frame(s, {"id": 2**64 - 1, "type": "Ping"})
    assert recv_frame(s)["id"] == 2**64 - 1
    assert server.handler.calls == ["Ping"]


def test_unknown_type_and_field_errors_carry_the_id(server: ServerThread) -> None:
    s = connect(server.port)
    send_frame(s, {"id": 3, "type": "Frobnicate"})
    assert recv_frame(s) == {"id": 3, "type": "Error", "code": "UNKNOWN_REQUEST",
                             "message": "no handler for request type 'Frobnicate'"}
    send_frame(s, {"id": 4, "type": "WriteKey", "key": "k", "value": "text, not bin"})
    r = recv_frame(s)
    assert (r["id"], r["code"], r["message"]) == (4, "INVALID_REQUEST", "value: must be bytes (msgpack bin)")


def test_error_details_travel_in_the_error_frame(server: ServerThread) -> None:
    server.handler.kv["k"] = b"now"
    s = connect(server.port)
    send_frame(s, {"id": 1, "type": "CompareAndSwapKey", "key": "k", "expected": b"then", "new_value": b"x"})
    r = recv_frame(s)
    assert r["code"] == "CAS_FAILED" and r["actual_found"] is True and r["actual_value"] == b"now"


def test_handler_bug_is_internal_and_contained(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    s = connect(server.port)
    send_frame(s, {"id": 41, "type": "Boom"})
    r = recv_frame(s)
    assert r["id"] == 41 and r["code"] == "INTERNAL" and "41" in r["message"]
    assert "a handler bug" not in r["message"]  # internals stay in the log
    send_frame(s, {"id": 42, "type": "Ping"})
    assert recv_frame(s)["id"] == 42
    assert any("request 41" in rec.getMessage() for rec in caplog.records)


def test_a_handler_returning_garbage_is_internal(server: ServerThread) -> None:
    async def garbage(req: dict) -> object:
        return ["not", "a", "map"] if req["type"] == "Ping" else None

    server.handler.intercept = garbage  # type: ignore[assignment]
    s = connect(server.port)
    send_frame(s, {"id": 1, "type": "Ping"})
    assert recv_frame(s)["code"] == "INTERNAL"


def test_many_in_flight_complete_out_of_order(server: ServerThread) -> None:
    s = connect(server.port)
    n = 50
    # Later requests sleep less, so they finish first.
    s.sendall(b"".join(s.frame({"id": i, "type": "Sleep", "delay_s": (n - i) * 0.01, "tag": i})
                       for i in range(1, n + 1)))
    replies = [recv_frame(s) for _ in range(n)]
    assert sorted(r["id"] for r in replies) == list(range(1, n + 1))
    assert all(r["tag"] == r["id"] for r in replies)
    order = [r["id"] for r in replies]
    assert order[0] > order[-1]  # answered as they completed, not as they arrived
    assert server.handler.running_max > 1  # and they ran concurrently


def test_in_flight_bound_is_backpressure_not_drops() -> None:
    srv = ServerThread(in_flight_max=8)
    try:
        s = connect(srv.port)
        s.sendall(b"".join(s.frame({"id": i, "type": "Gate"}) for i in range(1, 101)))
        time.sleep(0.3)
        assert srv.handler.running == 8 and srv.handler.calls.count("Gate") == 8
        (conn,) = srv.connections()
        assert conn.reading_paused
        srv.open_gate()
        assert sorted(recv_frame(s)["id"] for _ in range(100)) == list(range(1, 101))
        assert srv.handler.running_max == 8
        send_frame(s, {"id": 500, "type": "Ping"})
        assert recv_frame(s)["id"] == 500
    finally:
        srv.close()


def test_a_peer_that_does_not_read_stops_being_read(server: ServerThread) -> None:
    s = connect(server.port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    size = 1024 * 1024
    s.sendall(b"".join(s.frame({"id": i, "type": "Big", "size": size}) for i in range(1, 21)))
    time.sleep(0.3)  # 20 MiB of responses pile up unread: the transport pauses us
    (conn,) = server.connections()
    assert conn.writing_paused and conn.reading_paused
    s.sendall(b"".join(s.frame({"id": i, "type": "Big", "size": size}) for i in range(21, 301)))
    time.sleep(0.3)
    assert server.handler.calls.count("Big") == 20  # nothing more is produced for it
    for _ in range(300):
        assert len(recv_frame(s)["data"]) == size
    assert server.handler.calls.count("Big") == 300


def _auth_frame(hello: dict, cookie: str = COOKIE) -> dict:
    nonce = b"n" * 32
    return {
        "type": "Auth",
        "version": 2,
        "nonce": nonce,
        "mac": Cookie(cookie).mac(*client_proof(hello["nonce"], nonce)),
    }


def test_connection_limit_refuses_with_overloaded_after_the_handshake() -> None:
    srv = ServerThread(connections_max=2)
    try:
        a, b = connect(srv.port), connect(srv.port)
        c = connect(srv.port, authenticate_now=False)
        # Greeted: the handshake pool is apart from the authenticated one.
        send_frame(c, _auth_frame(c.hello))
        err = recv_frame(c)
        assert err["code"] == "OVERLOADED" and err["id"] == 0
        assert closed_by_peer(c)
        a.close()
        deadline = time.monotonic() + 5
        while len(srv.connections()) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert connect(srv.port)  # a slot freed up
        send_frame(b, {"id": 1, "type": "Ping"})
        assert recv_frame(b)["type"] == "Pong"
    finally:
        srv.close()


def test_connection_limit_without_auth_refuses_at_once() -> None:
    srv = ServerThread(cookie=None, connections_max=1)
    try:
        a = connect(srv.port)
        c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        err = recv_frame(c)
        assert err["code"] == "OVERLOADED" and err["id"] == 0
        assert closed_by_peer(c)
        send_frame(a, {"id": 1, "type": "Ping"})
        assert recv_frame(a)["type"] == "Pong"
    finally:
        srv.close()


def test_stop_closes_connections_and_cancels_requests() -> None:
    srv = ServerThread()
    port = srv.port
    s = connect(port)
    send_frame(s, {"id": 1, "type": "Gate"})
    time.sleep(0.1)
    srv.close()
    assert closed_by_peer(s)
    assert srv.server.bound_port == port  # still known after stop, for logs
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_bound_port_and_cookie_value(server: ServerThread) -> None:
    assert server.port > 0
    assert COOKIE not in repr(server.server.cookie)


def test_requests_handed_on_are_answered_through_finish_and_observed() -> None:
    """The plugin path's form of dispatch: the request goes to another thread, which answers
    later through finish on the loop, in any order; refusals at dispatch and handed-on errors
    are answered like awaited ones, and every answer is observed once."""
    observed: list[tuple[str, str]] = []
    handed: list[tuple[Finish, Token, dict[str, Any]]] = []
    srv: ServerThread | None = None

    def dispatch(request: dict[str, Any], finish: Finish, token: Token) -> Any:
        if request["type"] == "Refused":
            raise AspenError(ErrorCode.OVERLOADED, "queue full")
        handed.append((finish, token, request))
        if len(handed) == 4:  # answer all four from a thread, newest first, through the loop
            def answer() -> None:
                assert srv is not None
                for fin, tok, req in reversed(handed):
                    if req["n"] == 2:
                        srv.loop.call_soon_threadsafe(
                            fin, tok, None, AspenError(ErrorCode.TIMEOUT, "slow", applied="no")
                        )
                    elif req["n"] == 3:
                        srv.loop.call_soon_threadsafe(fin, tok, None, RuntimeError("plugin bug"))
                    else:
                        srv.loop.call_soon_threadsafe(fin, tok, {"type": "Done", "n": req["n"]}, None)

            threading.Thread(target=answer).start()
        return None

    srv = ServerThread(dispatch=dispatch, observe=lambda rtype, outcome, s: observed.append((rtype, outcome)))
    try:
        s = connect(srv.port)
        send_frame(s, {"id": 9, "type": "Refused"})
        assert recv_frame(s) == {"id": 9, "type": "Error", "code": "OVERLOADED", "message": "queue full"}
        s.sendall(b"".join(s.frame({"id": 10 + n, "type": "Handed", "n": n}) for n in range(4)))
        replies = {r["id"]: r for r in (recv_frame(s) for _ in range(4))}
        assert replies[10] == {"id": 10, "type": "Done", "n": 0} and replies[11]["n"] == 1
        assert replies[12]["code"] == "TIMEOUT" and replies[12]["applied"] == "no"
        assert replies[13]["code"] == "INTERNAL" and "13" in replies[13]["message"]
        send_frame(s, {"id": 20, "type": "Refused"})  # the connection is still served
        assert recv_frame(s)["id"] == 20
        assert sorted(observed) == sorted(
            [
                ("Refused", "OVERLOADED"),
                ("Handed", "ok"),
                ("Handed", "ok"),
                ("Handed", "TIMEOUT"),
                ("Handed", "INTERNAL"),
                ("Refused", "OVERLOADED"),
            ]
        )
    finally:
        srv.close()


def test_a_failing_observer_or_an_unencodable_error_still_answers_and_keeps_flow_control(
        caplog: pytest.LogCaptureFixture) -> None:
    def broken_observer(rtype: str, outcome: str, seconds: float) -> None:
        raise RuntimeError("metrics backend down")

    def dispatch(request: dict[str, Any], finish: Finish, token: Token) -> Any:
        if request["type"] == "Odd":  # details msgpack cannot encode
            raise AspenError(ErrorCode.INVALID_REQUEST, "odd", thing=object())
        return _pong()

    async def _pong() -> dict[str, Any]:
        return {"type": "Pong"}

    srv = ServerThread(dispatch=dispatch, observe=broken_observer, in_flight_max=4)
    try:
        s = connect(srv.port)
        # Far more requests than the in-flight bound: reading pauses and must resume every time.
        s.sendall(b"".join(s.frame({"id": i, "type": "Ping"}) for i in range(1, 201)))
        assert sorted(recv_frame(s)["id"] for _ in range(200)) == list(range(1, 201))
        send_frame(s, {"id": 300, "type": "Odd"})
        assert recv_frame(s) == {
            "id": 300,
            "type": "Error",
            "code": "INTERNAL",
            "message": "the answer failed to encode",
        }
    finally:
        srv.close()
    assert "observing request" in caplog.text and "failed to encode" in caplog.text


def test_unsent_bytes_past_the_budget_hold_requests_before_they_start() -> None:
    """48 pipelined big answers to a peer that does not read: only a budget's worth is built."""
    srv = ServerThread(unsent_max_bytes=2 * 1024 * 1024)
    try:
        s = connect(srv.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        size = 4 * 1024 * 1024
        s.sendall(b"".join(s.frame({"id": i, "type": "Big", "size": size}) for i in range(1, 49)))
        time.sleep(0.5)
        built = srv.handler.calls.count("Big")
        print(f"answers built for a peer that reads nothing: {built} of 48")
        assert built <= 8  # the kernel's socket buffers hold a few; the budget holds the rest back
        send_frame(s, {"id": 100, "type": "Ping"})  # nothing new is even read meanwhile
        time.sleep(0.2)
        assert "Ping" not in srv.handler.calls
        ids = [recv_frame(s)["id"] for _ in range(49)]
        assert sorted(ids) == [*range(1, 49), 100] and srv.handler.calls.count("Big") == 48
    finally:
        srv.close()


def test_requests_held_by_the_budget_never_start_once_the_peer_is_gone() -> None:
    srv = ServerThread(unsent_max_bytes=1024 * 1024)
    try:
        s = connect(srv.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"".join(s.frame({"id": i, "type": "Big", "size": 4 * 1024 * 1024}) for i in range(1, 33)))
        time.sleep(0.3)
        before = srv.handler.calls.count("Big")
        s.close()
        time.sleep(0.3)
        assert srv.handler.calls.count("Big") == before < 32
        assert srv.connections() == []
    finally:
        srv.close()


def test_authorize_sees_each_request_with_its_identity_before_dispatch() -> None:
    seen: list[tuple[bool, str]] = []

    def authorize(identity: Identity, request: dict[str, Any]) -> None:
        seen.append((identity.cookie, request["type"]))
        if request["type"] == "WriteKey":
            raise AspenError(ErrorCode.AUTH_FAILED, "WriteKey: this identity may not write")

    srv = ServerThread(authorize=authorize)
    try:
        s = connect(srv.port)
        send_frame(s, {"id": 1, "type": "WriteKey", "key": "k", "value": b"v"})
        assert recv_frame(s) == {"id": 1, "type": "Error", "code": "AUTH_FAILED",
                                 "message": "WriteKey: this identity may not write"}
        send_frame(s, {"id": 2, "type": "Ping"})
        assert recv_frame(s)["type"] == "Pong"
        assert seen == [(True, "WriteKey"), (True, "Ping")] and srv.handler.calls == ["Ping"]
    finally:
        srv.close()


def test_refusals_are_logged_once_a_period_with_a_count(server: ServerThread,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(50):
        s = connect(server.port, authenticate_now=False)
        send_frame(s, {"type": "Auth", "version": 2, "nonce": b"x" * 32, "mac": b"\0" * 32})
        assert recv_frame(s)["code"] == "AUTH_FAILED"
        s.close()
    refused = [r.getMessage() for r in caplog.records if "wrong or missing cookie" in r.getMessage()]
    assert len(refused) == 1  # not 50: a stranger cannot flood the node's log
    server.server.refusals.period_s = 0.0
    s = connect(server.port, authenticate_now=False)
    send_frame(s, {"type": "Auth", "version": 2, "nonce": b"x" * 32, "mac": b"\0" * 32})
    recv_frame(s)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        "49 more like it" in r.getMessage() for r in caplog.records
    ):
        time.sleep(0.01)
    assert any("49 more like it" in r.getMessage() for r in caplog.records)
