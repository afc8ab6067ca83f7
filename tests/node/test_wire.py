"""Raw-socket abuse of a node's client port: the node answers with a code and keeps serving."""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct

import msgpack
import pytest

from deploy.launcher import LocalCluster
from storage.errors import AspenError


def _recv_frame(s: socket.socket) -> dict:
    header = b""
    while len(header) < 4:
        chunk = s.recv(4 - len(header))
        if not chunk:
            raise ConnectionError("closed")
        header += chunk
    (n,) = struct.unpack(">I", header)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return msgpack.unpackb(body, raw=False)


def _send(s: socket.socket, msg: dict) -> None:
    body = msgpack.packb(msg, use_bin_type=True)
    s.sendall(struct.pack(">I", len(body)) + body)


def _connect(cluster: LocalCluster, node: int = 1, authenticate: bool = True) -> socket.socket:
    host, port = cluster.nodes[node].client_addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    hello = _recv_frame(s)
    assert hello["type"] == "Hello" and hello["auth"] is True and len(hello["nonce"]) == 32
    if authenticate:
        mac = hmac.new(cluster.cookie.encode(), b"aspen-client-v1" + hello["nonce"], hashlib.sha256).digest()
        nonce = b"n" * 32
        _send(s, {"type": "Auth", "mac": mac, "nonce": nonce})
        ok = _recv_frame(s)
        assert ok["type"] == "AuthOk"
        expected = hmac.new(cluster.cookie.encode(), b"aspen-server-v1" + nonce, hashlib.sha256).digest()
        assert ok["mac"] == expected  # the node proved it holds the cookie too
    return s


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return True


def test_wrong_cookie_is_refused_and_nothing_runs(shared_cluster: LocalCluster) -> None:
    s = _connect(shared_cluster, authenticate=False)
    _send(s, {"type": "Auth", "mac": b"\0" * 32, "nonce": b"x" * 32})
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
    s.sendall(struct.pack(">I", len(body)) + body)
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
    err = _recv_frame(s)  # silent client: refused after the 5 s handshake deadline
    assert err["code"] == "AUTH_FAILED"
