"""Aspen client library: AsyncClient (asyncio) and Client (synchronous wrapper).

One connection per node carries many requests in flight. The client finds the leader (it
answers fastest: followers forward writes to it) and follows NOT_LEADER hints. Retries are
bounded by count and by the request deadline, and happen only when the request certainly
did not execute, or when it is a read: a write whose outcome is unknown (connection lost
after sending, TIMEOUT, or UNAVAILABLE with applied=unknown) is reported to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from aspen.auth import CLIENT_CONTEXT, SERVER_CONTEXT, Cookie, new_nonce
from aspen.protocol import FRAME_MAX_BYTES, ProtocolError, decode_body, encode_frame
from storage.errors import AspenError, ErrorCode

T = TypeVar("T")

CONNECT_TIMEOUT_S = 3.0
RETRIES_MAX = 12
BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 1.0
# Requests that may be sent again when their first outcome is unknown.
IDEMPOTENT = frozenset({"Ping", "ReadKey", "ScanKeys", "GetBlob", "HasBlob", "PutBlob", "ClusterStatus"})
RETRYABLE_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.OVERLOADED, ErrorCode.NOT_LEADER})


class _Connection(asyncio.Protocol):
    def __init__(self, cookie: Cookie | None) -> None:
        loop = asyncio.get_running_loop()
        self.cookie = cookie
        self.ready: asyncio.Future[int] = loop.create_future()  # resolves to the node id
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False
        self.nonce = new_nonce()
        self.stage = "hello"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self._close(AspenError(ErrorCode.UNAVAILABLE, f"connection lost: {exc or 'closed by peer'}", sent=True))

    def _close(self, error: AspenError) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(error)
        self.pending.clear()
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= 4:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length > FRAME_MAX_BYTES:
                self._close(AspenError(ErrorCode.FRAME_TOO_LARGE, "server sent an oversized frame"))
                return
            if end - pos - 4 < length:
                break
            try:
                message = decode_body(bytes(buf[pos + 4 : pos + 4 + length]))
            except ProtocolError as exc:
                self._close(exc)
                return
            pos += 4 + length
            self._on_message(message)
            if self.closed:
                return
        if pos:
            del buf[:pos]

    def _on_message(self, message: dict[str, Any]) -> None:
        if self.stage == "ready":
            fut = self.pending.pop(message.get("id", 0), None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(message)
            elif message.get("type") == "Error":  # id 0: the server is closing on us
                self._close(_error_of(message))
            return
        if message.get("type") == "Error":
            self._close(_error_of(message))
            return
        if self.stage == "hello":
            if message.get("type") != "Hello":
                self._close(AspenError(ErrorCode.MALFORMED_FRAME, "server did not greet with Hello"))
                return
            if not message.get("auth"):
                self._ready(message.get("node_id", 0))
                return
            if self.cookie is None:
                self._close(AspenError(ErrorCode.AUTH_FAILED, "the cluster needs a cookie (--cookie or ASPEN_COOKIE)"))
                return
            server_nonce = message.get("nonce")
            if not isinstance(server_nonce, bytes):
                self._close(AspenError(ErrorCode.MALFORMED_FRAME, "Hello without a nonce"))
                return
            self._send({"type": "Auth", "mac": self.cookie.mac(CLIENT_CONTEXT, server_nonce), "nonce": self.nonce})
            self.stage = "auth"
            return
        if self.stage == "auth":
            if message.get("type") != "AuthOk" or self.cookie is None or not self.cookie.check(
                SERVER_CONTEXT, self.nonce, message.get("mac")
            ):
                self._close(AspenError(ErrorCode.AUTH_FAILED, "the node could not prove it holds the cluster cookie"))
                return
            self._ready(message.get("node_id", 0))

    def _ready(self, node_id: int) -> None:
        self.stage = "ready"
        if not self.ready.done():
            self.ready.set_result(node_id)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(encode_frame(message))

    def request(self, message: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        if self.closed:
            raise AspenError(ErrorCode.UNAVAILABLE, "connection closed", sent=False)
        request_id = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = fut
        message["id"] = request_id
        self._send(message)
        return fut


def _expire(fut: asyncio.Future[dict[str, Any]], rtype: str, timeout_s: float) -> None:
    if not fut.done():
        fut.set_exception(AspenError(ErrorCode.TIMEOUT, f"{rtype}: no answer within {timeout_s}s", applied="unknown"))


def _error_of(message: dict[str, Any]) -> AspenError:
    details = {k: v for k, v in message.items() if k not in ("type", "code", "message", "id")}
    try:
        code = ErrorCode(message.get("code"))
    except ValueError:
        code = ErrorCode.INTERNAL
    return AspenError(code, str(message.get("message", "")), **details)


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def parse_endpoints(endpoints: str | list[str]) -> list[str]:
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out = [e.strip() for e in items if e.strip()]
    if not out:
        raise ValueError("no cluster endpoints given")
    for e in out:
        host, _, port = e.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"not a host:port endpoint: {e!r}")
    return out


class AsyncClient:
    def __init__(
        self,
        endpoints: str | list[str],
        cookie: str | Cookie | None = None,
        timeout_s: float = 10.0,
        *,
        discover_leader: bool = True,
        retries_max: int = RETRIES_MAX,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.cookie = Cookie(cookie) if isinstance(cookie, str) else cookie
        self.timeout_s = timeout_s
        self.discover_leader = discover_leader
        self.retries_max = retries_max
        self._conns: dict[str, _Connection] = {}
        self._connecting: dict[str, asyncio.Future[_Connection]] = {}
        self._leader_addr: str | None = None
        self._rr = 0

    # -- connections -----------------------------------------------------------------------

    async def _connect(self, addr: str) -> _Connection:
        conn = self._conns.get(addr)
        if conn is not None and not conn.closed:
            return conn
        waiting = self._connecting.get(addr)
        if waiting is not None:
            return await asyncio.shield(waiting)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_Connection] = loop.create_future()
        self._connecting[addr] = fut
        try:
            host, port = _split(addr)
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self.cookie), host, port), CONNECT_TIMEOUT_S
            )
            await asyncio.wait_for(conn.ready, CONNECT_TIMEOUT_S)
            self._conns[addr] = conn
            fut.set_result(conn)
            return conn
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            self._connecting.pop(addr, None)

    def _next_endpoint(self) -> str:
        addr = self.endpoints[self._rr % len(self.endpoints)]
        self._rr += 1
        return addr

    async def _find_leader(self, deadline: float) -> None:
        for _ in range(len(self.endpoints)):
            addr = self._next_endpoint()
            try:
                conn = await self._connect(addr)
                reply = await asyncio.wait_for(
                    conn.request({"type": "ClusterStatus"}), max(0.05, min(2.0, deadline - time.monotonic()))
                )
            except (OSError, TimeoutError, AspenError):
                continue
            leader = reply.get("leader_id")
            for node in reply.get("nodes") or []:
                if node.get("node_id") == leader and node.get("client_addr"):
                    self._leader_addr = node["client_addr"]
                    return
            return

    # -- requests --------------------------------------------------------------------------

    async def request(self, rtype: str, **fields: Any) -> dict[str, Any]:
        """Send one request; return its response map or raise AspenError."""
        deadline = time.monotonic() + self.timeout_s
        backoff = BACKOFF_START_S
        last: AspenError | None = None
        for _ in range(self.retries_max):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self.discover_leader and self._leader_addr is None:
                await self._find_leader(deadline)
            addr = self._leader_addr or self._next_endpoint()
            try:
                conn = await self._connect(addr)
                message = {"type": rtype, **fields}
                fut = conn.request(message)
            except (OSError, TimeoutError, AspenError) as exc:
                last = exc if isinstance(exc, AspenError) else AspenError(ErrorCode.UNAVAILABLE, f"{addr}: {exc}")
                self._leader_addr = None
                await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            # A timer handle, not asyncio.wait_for: that makes a task per request in 3.11.
            handle = asyncio.get_running_loop().call_later(
                max(0.001, deadline - time.monotonic()), _expire, fut, rtype, self.timeout_s
            )
            try:
                reply = await fut
            except AspenError as exc:
                if exc.code == ErrorCode.TIMEOUT:
                    conn.pending.pop(message["id"], None)
                    raise
                # The connection was lost after sending.
                self._leader_addr = None
                if rtype not in IDEMPOTENT:
                    raise AspenError(exc.code, f"{exc.message}; the request may or may not have executed",
                                     applied="unknown") from None
                last = exc
                continue
            finally:
                handle.cancel()
            if reply.get("type") != "Error":
                del reply["id"]
                return reply
            error = _error_of(reply)
            if error.code == ErrorCode.NOT_LEADER:
                hint = error.error.details.get("leader_addr")
                self._leader_addr = hint if isinstance(hint, str) else None
                last = error
                continue
            retry = error.code in RETRYABLE_CODES and (
                rtype in IDEMPOTENT or error.error.details.get("applied") == "no"
            )
            if not retry:
                raise error
            last = error
            self._leader_addr = None
            await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        raise last or AspenError(ErrorCode.TIMEOUT, f"{rtype}: gave up after {self.timeout_s}s")

    async def close(self) -> None:
        for conn in self._conns.values():
            if conn.transport is not None:
                conn.transport.close()
        self._conns.clear()

    # -- typed helpers (thin: each is one request) -----------------------------------------

    async def ping(self) -> dict[str, Any]:
        return await self.request("Ping")

    async def get(self, key: str, *, stale: bool = False) -> dict[str, Any]:
        return await self.request("ReadKey", key=key, stale=stale)

    async def put(self, key: str, value: bytes) -> dict[str, Any]:
        return await self.request("WriteKey", key=key, value=value)

    async def delete(self, key: str) -> dict[str, Any]:
        return await self.request("DeleteKey", key=key)

    async def scan(
        self, prefix: str, limit: int | None = None, continuation_token: str | None = None, *, stale: bool = False
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"prefix": prefix, "stale": stale}
        if limit is not None:
            fields["limit"] = limit
        if continuation_token is not None:
            fields["continuation_token"] = continuation_token
        return await self.request("ScanKeys", **fields)

    async def scan_all(self, prefix: str, *, pages_max: int = 10_000, stale: bool = False) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(pages_max):
            page = await self.scan(prefix, None, token, stale=stale)
            entries.extend(page["entries"])
            token = page.get("continuation_token")
            if token is None:
                return entries
        raise AspenError(ErrorCode.INVALID_REQUEST, f"scan of {prefix!r} exceeded {pages_max} pages")

    async def cas(self, key: str, expected: bytes | None, new_value: bytes) -> dict[str, Any]:
        return await self.request("CompareAndSwapKey", key=key, expected=expected, new_value=new_value)

    async def cad(self, key: str, expected: bytes) -> dict[str, Any]:
        return await self.request("CompareAndDeleteKey", key=key, expected=expected)

    async def batch(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("BatchWrite", ops=ops)

    async def cond_batch(self, conditions: list[dict[str, Any]], ops: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("ConditionalBatchWrite", conditions=conditions, ops=ops)

    async def put_blob(self, data: bytes) -> dict[str, Any]:
        return await self.request("PutBlob", data=data)

    async def get_blob(self, blob_hash: str) -> dict[str, Any]:
        return await self.request("GetBlob", hash=blob_hash)

    async def has_blob(self, blob_hash: str) -> dict[str, Any]:
        return await self.request("HasBlob", hash=blob_hash)

    async def cluster_status(self) -> dict[str, Any]:
        return await self.request("ClusterStatus")


class Client:
    """Synchronous client: the AsyncClient's methods, run on a private event-loop thread."""

    def __init__(self, endpoints: str | list[str], cookie: str | Cookie | None = None, timeout_s: float = 10.0,
                 **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aspen-client", daemon=True)
        self._thread.start()
        self._async = AsyncClient(endpoints, cookie, timeout_s, **kwargs)
        self._timeout_s = timeout_s

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout_s + 5)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._async, name)
        if not asyncio.iscoroutinefunction(method):
            return method
        return lambda *a, **kw: self._run(method(*a, **kw))

    def close(self) -> None:
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self._run(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
