"""The client port: framing, the handshake, many requests in flight per connection.

Built on asyncio.Protocol rather than streams: one buffer per connection, frames parsed in
place, each request run as a task, responses written as soon as they are ready (in any
order). Bounds: connections, requests in flight per connection (reading pauses when full),
frame size, handshake time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aspen.auth import CLIENT_CONTEXT, SERVER_CONTEXT, Cookie, new_nonce
from aspen.protocol import (
    FRAME_MAX_BYTES,
    PROTOCOL_VERSION,
    TYPE_MAX_CHARS,
    ProtocolError,
    decode_body,
    encode_frame,
)
from storage.errors import AspenError, Error, ErrorCode

log = logging.getLogger("aspen.server")

RequestHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

HANDSHAKE_TIMEOUT_S = 5.0
CONNECTIONS_MAX = 1024
IN_FLIGHT_MAX = 1024
ID_MAX = 2**64 - 1


def error_frame(request_id: int, code: ErrorCode, message: str, **details: Any) -> bytes:
    wire = Error(code, message, details).to_wire()
    wire["id"] = request_id
    return encode_frame(wire)


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.authed = server.cookie is None
        self.nonce = new_nonce()
        self.in_flight = 0
        self.paused = False
        self.closed = False
        self.handshake_timer: asyncio.TimerHandle | None = None

    # -- connection events -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        server = self.server
        if len(server.connections) >= server.connections_max:
            transport.write(error_frame(0, ErrorCode.OVERLOADED, "too many connections"))
            transport.close()
            self.closed = True
            return
        server.connections.add(self)
        hello: dict[str, Any] = {"type": "Hello", "version": PROTOCOL_VERSION, "node_id": server.node_id,
                                 "auth": server.cookie is not None}
        if server.cookie is not None:
            hello["nonce"] = self.nonce
            self.handshake_timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT_S, self._handshake_expired)
        transport.write(encode_frame(hello))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()

    def _handshake_expired(self) -> None:
        if not self.authed:
            self._fail(0, ErrorCode.AUTH_FAILED, f"no handshake within {HANDSHAKE_TIMEOUT_S}s")

    def _fail(self, request_id: int, code: ErrorCode, message: str) -> None:
        """Answer with an error and close: used when the stream can no longer be trusted."""
        if self.closed or self.transport is None:
            return
        self.transport.write(error_frame(request_id, code, message))
        self.transport.close()
        self.closed = True

    # -- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buf = self.buf
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length > FRAME_MAX_BYTES:
                self._fail(0, ErrorCode.FRAME_TOO_LARGE, f"frame of {length} bytes is over {FRAME_MAX_BYTES}")
                return
            if end - pos - 4 < length:
                break
            body = bytes(buf[pos + 4 : pos + 4 + length])
            pos += 4 + length
            try:
                message = decode_body(body)
            except ProtocolError as exc:
                self._fail(0, exc.code, exc.message)
                return
            self._on_message(message)
            if self.closed:
                return
        if pos:
            del buf[:pos]

    def _on_message(self, message: dict[str, Any]) -> None:
        if not self.authed:
            self._on_auth(message)
            return
        request_id = message.pop("id", None)
        if not isinstance(request_id, int) or isinstance(request_id, bool) or not 0 < request_id <= ID_MAX:
            self._write(error_frame(0, ErrorCode.INVALID_REQUEST, "id: must be an integer from 1 to 2^64-1"))
            return
        rtype = message.get("type")
        if not isinstance(rtype, str) or not 0 < len(rtype) <= TYPE_MAX_CHARS:
            self._write(
                error_frame(request_id, ErrorCode.INVALID_REQUEST, f"type: a string of 1 to {TYPE_MAX_CHARS} characters")
            )
            return
        self.in_flight += 1
        if self.in_flight >= self.server.in_flight_max and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        asyncio.get_running_loop().create_task(self._run(request_id, message))

    def _on_auth(self, message: dict[str, Any]) -> None:
        cookie = self.server.cookie
        assert cookie is not None
        client_nonce = message.get("nonce")
        if (
            message.get("type") != "Auth"
            or not isinstance(client_nonce, bytes)
            or len(client_nonce) < 16
            or not cookie.check(CLIENT_CONTEXT, self.nonce, message.get("mac"))
        ):
            log.warning("refused a client with a wrong or missing cookie")
            self._fail(0, ErrorCode.AUTH_FAILED, "wrong or missing cluster cookie")
            return
        self.authed = True
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
        self._write(encode_frame({"type": "AuthOk", "node_id": self.server.node_id,
                                  "mac": cookie.mac(SERVER_CONTEXT, client_nonce)}))

    # -- requests --------------------------------------------------------------------------

    async def _run(self, request_id: int, message: dict[str, Any]) -> None:
        try:
            response = await self.server.handler(message)
            response["id"] = request_id
            frame = encode_frame(response)
        except AspenError as exc:
            frame = error_frame(request_id, exc.code, exc.message, **exc.error.details)
        except Exception:
            log.exception("request %d (%s) failed", request_id, message.get("type"))
            frame = error_frame(request_id, ErrorCode.INTERNAL, f"internal error in request {request_id}; see node log")
        self._write(frame)
        self.in_flight -= 1
        if self.paused and self.in_flight <= self.server.in_flight_max // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def _write(self, frame: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(frame)


class Server:
    def __init__(
        self,
        handler: RequestHandler,
        host: str,
        port: int,
        *,
        cookie: Cookie | None,
        node_id: int,
        connections_max: int = CONNECTIONS_MAX,
        in_flight_max: int = IN_FLIGHT_MAX,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.cookie = cookie
        self.node_id = node_id
        self.connections_max = connections_max
        self.in_flight_max = in_flight_max
        self.connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port, reuse_address=True)

    @property
    def bound_port(self) -> int:
        assert self._server is not None and self._server.sockets
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self._server.wait_closed()
            self._server = None
