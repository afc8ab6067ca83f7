"""Raw-socket abuse of a node's client port: the node answers with a code and keeps serving."""

from __future__ import annotations

import socket
import struct

import pytest

from deploy.launcher import LocalCluster
from tests.wire import fakes
from tests.wire.fakes import RawConn, connect, recv_frame, send_frame
from wire.errors import AspenError


def _connect(cluster: LocalCluster, node: int = 1, authenticate: bool = True) -> RawConn:
    host, port = cluster.nodes[node].client_addr.rsplit(":", 1)
    s = connect(int(port), cluster.cookie, authenticate_now=False, host=host)
    assert s.hello["auth"] is True and len(s.hello["nonce"]) == 32
    if authenticate:
        fakes.authenticate(s, s.hello, cluster.cookie)  # checks the node's proof too
    return s


_recv_frame = recv_frame
_send = send_frame


def _closed(s: socket.socket | RawConn) -> bool:
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return True


def test_wrong_cookie_is_refused_and_nothing_runs(shared_cluster: LocalCluster) -> None:
    s = _connect(shared_cluster, authenticate=False)
    _send(s, {"type": "Auth", "version": 2, "mac": b"\0" * 32, "nonce": b"x" * 32})
    _send(s, {"id": 1, "type": "WriteKey", "key": "wire/evil", "value": b"x"})
    err = _recv_frame(s)
    assert err["type"] == "Error" and err["code"] == "AUTH_FAILED"
    assert _closed(s)
    # Requests before authenticating are refused too.
    s = _connect(shared_cluster, authenticate=False)
    _send(s, {"id": 1, "type": "WriteKey", "key": "wire/evil", "value": b"x"})
    assert _recv_frame(s)["code"] == "AUTH_FAILED"
    with shared_cluster.client() as c:
        assert c.get("wire/evil")["was_found"] is False
    with shared_cluster.client() as c:
        c._async.cookie = None  # a client without any cookie
        with pytest.raises(AspenError) as e:
            c.ping()
    assert e.value.code == "AUTH_FAILED"


def test_oversized_frame_drops_the_connection_only(shared_cluster: LocalCluster) -> None:
    s = _connect(shared_cluster)
    s.sendall(struct.pack(">I", 64 * 1024 * 1024 + 1))
    err = _recv_frame(s)
    assert err["code"] == "FRAME_TOO_LARGE" and err["id"] == 0
    assert _closed(s)
    with shared_cluster.client() as c:
        assert c.ping()["type"] == "Pong"


@pytest.mark.parametrize("body", [b"\xc1", b"\x93\x01\x02\x03", b"\xa3abc", b"\xdd\xff\xff\xff\xff"])
def test_malformed_frame_body(shared_cluster: LocalCluster, body: bytes) -> None:
    s = _connect(shared_cluster)
    assert s.send_mac is not None
    tag = s.send_mac.tag(body)  # well tagged, not a map
    s.sendall(struct.pack(">I", len(body) + len(tag)) + body + tag)
    err = _recv_frame(s)
    assert err["code"] == "MALFORMED_FRAME"
    assert _closed(s)
    with shared_cluster.client() as c:
        assert c.ping()["type"] == "Pong"


def test_bad_envelopes_get_errors_on_a_live_connection(shared_cluster: LocalCluster) -> None:
    s = _connect(shared_cluster)
    _send(s, {"type": "Ping"})  # no id
    assert _recv_frame(s)["code"] == "INVALID_REQUEST"
    _send(s, {"id": 7, "type": 12})
    r = _recv_frame(s)
    assert r["id"] == 7 and r["code"] == "INVALID_REQUEST"
    _send(s, {"id": 8, "type": "Frobnicate"})
    r = _recv_frame(s)
    assert r["id"] == 8 and r["code"] == "UNKNOWN_REQUEST"
    # Many requests in flight on one connection, answered by id.
    for i in range(100, 200):
        _send(s, {"id": i, "type": "WriteKey", "key": f"wire/m{i}", "value": b"x"})
    seen = {_recv_frame(s)["id"] for _ in range(100)}
    assert seen == set(range(100, 200))


def test_handshake_deadline(shared_cluster: LocalCluster) -> None:
    s = _connect(shared_cluster, authenticate=False)
    s.settimeout(10)
    err = _recv_frame(s)  # silent client: refused after the 2 s handshake deadline
    assert err["code"] == "AUTH_FAILED"
