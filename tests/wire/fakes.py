"""Test doubles for the wire layer: a dict-backed handler, a server on a background loop
thread, a scripted raw server, and raw-socket helpers. Real sockets on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import blake3
import msgpack

from aspen import fields
from aspen import protocol as p
from aspen.auth import Cookie, client_proof, server_proof
from aspen.server import Dispatch, Server, awaiting
from aspen.session import TAG_BYTES, FrameMac, SessionKeys
from storage.limits import SCAN_LIMIT_DEFAULT, SCAN_LIMIT_MAX
from wire.errors import AspenError, ErrorCode

T = TypeVar("T")
COOKIE = "test-cookie-0123456789abcdef"


class DictHandler:
    """A tiny in-process node: PROTOCOL.md's KV, blob and status requests over dicts, plus
    test-only types (Sleep, Gate, Boom, Big) to drive the server's concurrency paths."""

    def __init__(self, node_id: int = 1) -> None:
        self.node_id = node_id
        self.kv: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.revision = 0
        self.calls: list[str] = []
        self.running = 0
        self.running_max = 0
        self.gate: asyncio.Event | None = None  # created on the server's loop
        self.leader_id: int | None = node_id
        self.client_addr = ""
        self.peers: list[dict[str, Any]] = []
        self.has_quorum = True
        # Optional override: (request) -> awaitable response, for scripted failures.
        self.intercept: Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]] | None = None

    async def __call__(self, req: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(req["type"])
        self.running += 1
        self.running_max = max(self.running_max, self.running)
        try:
            if self.intercept is not None:
                reply = await self.intercept(req)
                if reply is not None:
                    return reply
            method = getattr(self, "do_" + req["type"], None)
            if method is None:
                raise AspenError(ErrorCode.UNKNOWN_REQUEST, f"no handler for request type {req['type']!r}")
            return await method(req)
        finally:
            self.running -= 1

    def _bump(self) -> int:
        self.revision += 1
        return self.revision

    async def do_Ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"type": "Pong", "node_id": self.node_id}

    async def do_ReadKey(self, req: dict[str, Any]) -> dict[str, Any]:
        key = fields.require_str(req, "key")
        fields.optional_bool(req, "stale", False)
        value = self.kv.get(key)
        return {
            "type": "ReadResult",
            "was_found": value is not None,
            "value": value,
            "version": 1 if value else 0,
            "create_revision": 0,
            "mod_revision": 0,
        }

    async def do_WriteKey(self, req: dict[str, Any]) -> dict[str, Any]:
        key = fields.require_str(req, "key")
        self.kv[key] = fields.require_bytes(req, "value", max_bytes=1024 * 1024)
        rev = self._bump()
        return {
            "type": "WriteResult",
            "revision": rev,
            "version": 1,
            "create_revision": rev,
            "mod_revision": rev,
        }

    async def do_DeleteKey(self, req: dict[str, Any]) -> dict[str, Any]:
        existed = self.kv.pop(fields.require_str(req, "key"), None) is not None
        return {
            "type": "DeleteResult",
            "deleted": existed,
            "revision": self._bump() if existed else self.revision,
        }

    async def do_ScanKeys(self, req: dict[str, Any]) -> dict[str, Any]:
        prefix = fields.optional_str(req, "prefix") or ""
        limit = fields.optional_int(req, "limit", SCAN_LIMIT_DEFAULT, 1, SCAN_LIMIT_MAX)
        after = fields.optional_str(req, "continuation_token") or ""
        keys = sorted(k for k in self.kv if k.startswith(prefix) and k > after)
        page = keys[:limit]
        entries = [
            {"key": k, "value": self.kv[k], "version": 1, "create_revision": 1, "mod_revision": 1}
            for k in page
        ]
        return {
            "type": "ScanResult",
            "entries": entries,
            "continuation_token": page[-1] if len(keys) > limit else None,
        }

    async def do_CompareAndSwapKey(self, req: dict[str, Any]) -> dict[str, Any]:
        key = fields.require_str(req, "key")
        expected = fields.optional_bytes(req, "expected")
        actual = self.kv.get(key)
        if actual != expected:
            raise AspenError(ErrorCode.CAS_FAILED, f"{key}: value differs", actual_found=actual is not None,
                             actual_value=actual)
        self.kv[key] = fields.require_bytes(req, "new_value")
        rev = self._bump()
        return {"type": "CompareAndSwapResult", "revision": rev, "version": 1, "create_revision": rev,
                "mod_revision": rev}

    async def do_BatchWrite(self, req: dict[str, Any]) -> dict[str, Any]:
        ops = fields.require_list(req, "ops", 1000)
        for i, op in enumerate(ops):
            if not isinstance(op, dict) or op.get("op") not in ("Set", "Delete"):
                raise AspenError(ErrorCode.INVALID_REQUEST, f"ops[{i}].op: must be Set or Delete")
            key = fields.require_str(op, "key", where=f"ops[{i}]")
            if op["op"] == "Set":
                self.kv[key] = fields.require_bytes(op, "value", where=f"ops[{i}]")
            else:
                self.kv.pop(key, None)
        return {"type": "BatchWriteResult", "revision": self._bump(), "count": len(ops)}

    async def do_PutBlob(self, req: dict[str, Any]) -> dict[str, Any]:
        data = fields.require_bytes(req, "data", max_bytes=50 * 1024 * 1024, code=ErrorCode.BLOB_TOO_LARGE)
        digest = blake3.blake3(data).hexdigest()
        self.blobs[digest] = data
        return {"type": "BlobPutResult", "hash": digest, "size": len(data)}

    async def do_GetBlob(self, req: dict[str, Any]) -> dict[str, Any]:
        data = self.blobs.get(fields.require_hash(req, "hash"))
        return {"type": "BlobResult", "found": data is not None, "data": data, "size": len(data or b"")}

    async def do_HasBlob(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"type": "BlobExistsResult", "exists": fields.require_hash(req, "hash") in self.blobs}

    async def do_ClusterStatus(self, req: dict[str, Any]) -> dict[str, Any]:
        me = {"node_id": self.node_id, "raft_addr": "127.0.0.1:1", "client_addr": self.client_addr,
              "role": "leader" if self.leader_id == self.node_id else "follower", "connected": True}
        return {
            "type": "ClusterStatusResult",
            "node_id": self.node_id,
            "leader_id": self.leader_id,
            "term": 3,
            "commit_index": self.revision,
            "applied_index": self.revision,
            "has_quorum": self.has_quorum,
            "nodes": [me, *self.peers],
        }

    # -- test-only request types -----------------------------------------------------------

    async def do_Sleep(self, req: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(req["delay_s"])
        return {"type": "Slept", "tag": req.get("tag")}

    async def do_Gate(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.gate is None:
            self.gate = asyncio.Event()
        await self.gate.wait()
        return {"type": "Passed"}

    async def do_Boom(self, req: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a handler bug")

    async def do_Big(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"type": "BigResult", "data": b"x" * req["size"]}


class ServerThread:
    """A real aspen.server.Server on its own event loop thread (so sync code can use it)."""

    def __init__(self, handler: DictHandler | None = None, cookie: str | None = COOKIE,
                 dispatch: Dispatch | None = None, **kwargs: Any) -> None:
        self.handler = handler or DictHandler()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = Server(
            dispatch or awaiting(self.handler),
            "127.0.0.1",
            0,
            cookie=Cookie(cookie) if cookie else None,
            node_id=self.handler.node_id,
            **kwargs,
        )
        self.call(self.server.start())
        self.handler.client_addr = self.addr

    @property
    def port(self) -> int:
        return self.server.bound_port

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def soon(self, fn: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def open_gate(self) -> None:
        def _open() -> None:
            if self.handler.gate is None:
                self.handler.gate = asyncio.Event()
            self.handler.gate.set()

        self.soon(_open)

    def connections(self) -> list[Any]:
        fut: Future[list[Any]] = Future()
        self.soon(lambda: fut.set_result(list(self.server.connections)))
        return fut.result(5)

    def close(self) -> None:
        if self.loop.is_running():
            self.call(self.server.stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        self.loop.close()


# -- raw sockets -------------------------------------------------------------------------------


class RawConn:
    """A raw client socket that speaks the session tags once `keys` are set (connect does),
    so tests can write frames byte by byte, pipeline them, or break them on purpose."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.hello: dict[str, Any] = {}
        self.send_mac: FrameMac | None = None
        self.recv_mac: FrameMac | None = None

    def start_session(self, keys: SessionKeys) -> None:
        self.send_mac, self.recv_mac = FrameMac(keys.send), FrameMac(keys.receive)

    def frame(self, msg: dict[str, Any]) -> bytes:
        """The next frame's bytes (tagged when the session started): for pipelining."""
        body = msgpack.packb(msg, use_bin_type=True)
        tag = self.send_mac.tag(body) if self.send_mac is not None else b""
        return struct.pack(">I", len(body) + len(tag)) + body + tag

    def __getattr__(self, name: str) -> Any:  # sendall, recv, setsockopt, close, ...
        return getattr(self.sock, name)


def _exactly(s: socket.socket | RawConn, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def recv_frame(s: socket.socket | RawConn) -> dict[str, Any]:
    (n,) = struct.unpack(">I", _exactly(s, 4))
    data = _exactly(s, n)
    mac = s.recv_mac if isinstance(s, RawConn) else None
    if mac is not None:
        body, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        assert mac.check(body, tag), "the node's frame failed its session tag"
        data = body
    return msgpack.unpackb(data, raw=False)


def send_frame(s: socket.socket | RawConn, msg: dict[str, Any]) -> None:
    if isinstance(s, RawConn):
        s.sendall(s.frame(msg))
    else:
        body = msgpack.packb(msg, use_bin_type=True)
        s.sendall(struct.pack(">I", len(body)) + body)


def authenticate(s: RawConn, hello: dict[str, Any], cookie: str) -> dict[str, Any]:
    """Auth as a v2 client; checks the node's proof and starts the session. Returns AuthOk."""
    c = Cookie(cookie)
    nonce = b"n" * 32
    send_frame(s, {"type": "Auth", "version": p.PROTOCOL_VERSION, "nonce": nonce,
                   "mac": c.mac(*client_proof(hello["nonce"], nonce))})
    ok = recv_frame(s)
    assert ok["type"] == "AuthOk", ok
    assert c.check(*server_proof(hello["nonce"], nonce, ok["node_id"]), ok["mac"])
    s.start_session(SessionKeys.derive(c, hello["nonce"], nonce, server=False))
    return ok


def connect(port: int, cookie: str | None = COOKIE, authenticate_now: bool = True,
            host: str = "127.0.0.1") -> RawConn:
    s = RawConn(socket.create_connection((host, port), timeout=10))
    hello = s.hello = recv_frame(s)
    assert hello["type"] == "Hello" and hello["version"] == p.PROTOCOL_VERSION
    if hello["auth"] and authenticate_now:
        assert cookie is not None
        authenticate(s, hello, cookie)
    return s


def closed_by_peer(s: socket.socket | RawConn) -> bool:
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return True


class ScriptedServer:
    """A raw no-auth server for client tests: `script(conn_index, request) -> reply | None`;
    None closes the connection without answering (the outcome is unknown to the client)."""

    def __init__(self, script: Callable[[int, dict[str, Any]], dict[str, Any] | None]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        writer.write(
            p.encode_frame({"type": "Hello", "version": p.PROTOCOL_VERSION, "node_id": 9, "auth": False})
        )
        try:
            while True:
                req = await p.read_frame(reader)
                self.requests.append(req)
                reply = self.script(index, req)
                if reply is None:
                    return
                writer.write(p.encode_frame({**reply, "id": req["id"]}))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


# -- an attacker on the path -------------------------------------------------------------------

# (index of the client's frame since the connection began, its bytes) -> the bytes to forward
# in its place: [] drops it, [frame, frame] replays it, anything else rewrites or injects.
Mangle = Callable[[int, bytes], list[bytes]]


class FrameRelay:
    """A TCP relay in front of a server that forwards the server's bytes untouched and hands
    each of the client's frames (u32 length + body, whatever the body) to `mangle`; with
    tls_records, each TLS record (5-byte header, u16 length at bytes 3-4) instead."""

    def __init__(self, target_port: int, mangle: Mangle, tls_records: bool = False) -> None:
        self.target_port = target_port
        self.mangle = mangle
        self.header_bytes, self.length_at = (
            (5, struct.Struct(">3xH")) if tls_records else (4, struct.Struct(">I"))
        )
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self.socks += [client, server]
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()
            threading.Thread(target=self._frames, args=(client, server), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            _shut_both(src, dst)

    def _frames(self, src: socket.socket, dst: socket.socket) -> None:
        buf, index = b"", 0
        try:
            while chunk := src.recv(65536):
                buf += chunk
                head = self.header_bytes
                while len(buf) >= head and len(buf) >= head + self.length_at.unpack(buf[:head])[0]:
                    end = head + self.length_at.unpack(buf[:head])[0]
                    frame, buf = buf[:end], buf[end:]
                    for out in self.mangle(index, frame):
                        dst.sendall(out)
                    index += 1
        except OSError:
            pass
        finally:
            _shut_both(src, dst)

    def close(self) -> None:
        self.listener.close()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.close()


def _shut_both(*socks: socket.socket) -> None:
    """One side of a relay ended: end the other too, as a real middlebox would."""
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
