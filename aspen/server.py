"""The client port: framing, the handshake, many requests in flight per connection.

Built on asyncio.Protocol rather than streams: one buffer per connection, frames parsed in
place, each request run as a task, responses written in any order as they complete.

Bounds: authenticated connections per server, and a separate small pool of connections still
in the handshake (a newcomer evicts the oldest, so silent sockets never take a client's slot);
frame size (a few KiB before authentication); handshake time; requests in flight per
connection (past the bound the server stops taking frames and pauses reading: backpressure,
not drops); and unsent response bytes per connection: while more than `unsent_max_bytes` wait
for a peer that does not read, requests already taken wait before they start (so they build no
response) and no new ones are read.

After the cookie handshake every frame both ways carries a session tag (aspen/session.py); a
frame that fails it closes the connection before anything in it runs. With `ssl` the port
speaks TLS (aspen/tls.py) under all of this.

Writes are coalesced: responses completed in one event-loop turn leave in one writev, which
is most of the difference between a syscall per response and ~10k+ requests/s.

Requests reach the node through `dispatch(request, finish, token)`, which either returns an
awaitable (run as a task; its result or exception is the answer) or takes the request itself
and calls `finish(token, response, error)` later, on the loop, exactly once. The second form is
how plugin calls travel: handed to the plugin's worker thread and answered from its batch, with
no task, future or coroutine per request (that machinery cost more than the guest call).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from aspen.auth import NONCE_BYTES, Cookie, client_proof, new_nonce, server_proof
from aspen.codes import LAYER_ERRORS, wire_error
from aspen.protocol import (
    FRAME_MAX_BYTES,
    PREAUTH_FRAME_MAX_BYTES,
    PROTOCOL_VERSION,
    TYPE_MAX_CHARS,
    FrameDecoder,
    ProtocolError,
    encode_frame,
    write_frames,
)
from aspen.session import FrameMac, SessionKeys
from wire.errors import AspenError, Error, ErrorCode

log = logging.getLogger("aspen.server")

RequestHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Token = tuple[int, str, float]  # request id, type, start time: what finish needs to answer and measure
Finish = Callable[[Token, "dict[str, Any] | None", "BaseException | None"], None]
Dispatch = Callable[[dict[str, Any], Finish, Token], "Awaitable[dict[str, Any]] | None"]
Observe = Callable[[str, str, float], None]  # request type, outcome ("ok" or an error code), seconds


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is on a connection, as far as the handshakes proved it."""

    cookie: bool  # proved the cluster cookie (False: a no-auth loopback node, or a credential)
    tls_subject: str | None = None  # the client certificate's subject, with --client-cert-auth
    credential: str | None = None  # the named credential it proved (aspen/credentials.py), if any


# A streaming request (Watch): the handler sends any number of intermediate frames with the
# request's id through Emit (False: the connection is closed, or its peer leaves more than the
# unsent budget unread, so the stream must end), and its return value (or error) is the final
# frame. `CancelStream {request_id}` on the same connection ends one early: its final frame is
# `StreamCanceled`. Streams end with their connection.
Emit = Callable[[dict[str, Any]], bool]
StreamHandler = Callable[[dict[str, Any], Emit], Awaitable[dict[str, Any]]]
CANCEL_STREAM = "CancelStream"
STREAMS_MAX = 64  # per connection

# Called with the connection's identity and the request (without its id) before dispatch; it
# raises an AspenError to refuse the request, which is answered like any other failure. The one
# place a per-request permission check goes.
Authorize = Callable[[Identity, dict[str, Any]], None]

HANDSHAKE_TIMEOUT_S = 2.0  # TLS and cookie handshakes each: a few round trips on any network
CONNECTIONS_MAX = 1024  # authenticated
PREAUTH_CONNECTIONS_MAX = 64  # still in the cookie handshake; the oldest makes room for a newcomer
IN_FLIGHT_MAX = 1024
UNSENT_MAX_BYTES = 16 * 1024 * 1024  # per connection: past it requests wait before they start
ID_MAX = 2**64 - 1


REFUSAL_LOG_PERIOD_S = 60.0


class RefusalLog:
    """Refusals logged at most once per period per kind, with how many were not: anyone who can
    reach the port can cause them, and must not be able to fill the disk with our log."""

    def __init__(self, period_s: float = REFUSAL_LOG_PERIOD_S) -> None:
        self.period_s = period_s
        self.counts: dict[str, int] = {}  # every refusal, logged or not (for metrics)
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = perf_counter()
        last = self._last.get(kind)
        if last is not None and now - last < self.period_s:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        self._last[kind] = now
        quiet = self._quiet.pop(kind, 0)
        suffix = f" ({quiet} more like it in the last {self.period_s:g}s not logged)" if quiet else ""
        log.warning(message + suffix, *args)


def awaiting(handler: RequestHandler) -> Dispatch:
    """A Dispatch for a handler that answers every request with an awaitable."""
    return lambda request, finish, token: handler(request)


def error_frame(
    request_id: int, code: ErrorCode, message: str, mac: FrameMac | None = None, **details: Any
) -> bytes:
    wire = Error(code, message, details).to_wire()
    wire["id"] = request_id
    return encode_frame(wire, mac)


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(PREAUTH_FRAME_MAX_BYTES)
        self.authed = False
        self.send_mac: FrameMac | None = None  # set by the handshake: every later frame is tagged
        self.identity = Identity(cookie=False)
        self.nonce = new_nonce()
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.reading_paused = False
        self.writing_paused = False  # set by the transport above its high-water mark
        self.closed = False
        self.handshake_timer: asyncio.TimerHandle | None = None
        self.out: list[bytes] = []
        self.out_bytes = 0  # in self.out, not yet handed to the transport
        self.flush_scheduled = False
        self.waiting: deque[asyncio.Future[None]] = deque()  # requests held back by the unsent budget
        self.streams: dict[int, asyncio.Task[None]] = {}  # streaming requests running, by request id
        self.canceled_streams: set[int] = set()  # ended by CancelStream (not by the server stopping)
        # Resume below the bound, not at it, so a saturated connection does not flip
        # reading on and off (two syscalls) for every completed request.
        self.resume_below = max(1, server.in_flight_max - server.in_flight_max // 4)

    # -- connection events -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        server = self.server
        hello: dict[str, Any] = {
            "type": "Hello",
            "version": PROTOCOL_VERSION,
            "node_id": server.node_id,
            "auth": server.cookie is not None,
        }
        if server.cookie is None:
            if not self._admit():
                return
        else:
            server.admit_preauth(self)
            hello["nonce"] = self.nonce
            self.handshake_timer = self.loop.call_later(server.handshake_timeout_s, self._handshake_expired)
        self.transport.write(encode_frame(hello))

    def _admit(self) -> bool:
        """Take an authenticated slot, or answer OVERLOADED and close."""
        server = self.server
        if len(server.connections) >= server.connections_max:
            server.refusals.warn(
                "overloaded", "refused a connection: %d connections open", len(server.connections)
            )
            self._fail(0, ErrorCode.OVERLOADED, "too many connections; retry later")
            return False
        server.connections.add(self)
        self.authed = True
        self.decoder.limit_bytes = FRAME_MAX_BYTES
        self.identity = Identity(cookie=server.cookie is not None, tls_subject=self._tls_subject())
        return True

    def _tls_subject(self) -> str | None:
        cert = self.transport.get_extra_info("peercert") if self.transport is not None else None
        if not cert:
            return None
        return ",".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)

    def connection_lost(self, exc: Exception | None) -> None:
        # In-flight requests run to completion (a write may already be proposed); their
        # responses are dropped. Requests still waiting for their turn never start.
        self.closed = True
        self.out.clear()
        self.out_bytes = 0
        self.server.connections.discard(self)
        self.server.preauth.pop(self, None)
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
        waiting, self.waiting = self.waiting, deque()
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)
        for task in list(self.streams.values()):  # nobody to stream to: stop watching
            task.cancel()

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._next_turn()
        self._maybe_resume()

    def _handshake_expired(self) -> None:
        if not self.authed:
            self._fail(0, ErrorCode.AUTH_FAILED, f"no handshake within {self.server.handshake_timeout_s}s")

    def evict(self) -> None:
        """Make room in the handshake pool for a newer connection."""
        self._fail(0, ErrorCode.OVERLOADED, "handshake not finished; dropped for a newer connection")

    def _fail(self, request_id: int, code: ErrorCode, message: str) -> None:
        """Answer with an error and close: the stream can no longer be trusted."""
        if self.closed or self.transport is None:
            return
        self._flush()
        self.transport.write(error_frame(request_id, code, message, self.send_mac))
        self.transport.close()  # sends what is buffered first
        self.closed = True
        self.server.preauth.pop(self, None)

    # -- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.decoder.feed(data)
        self._take_frames()

    def _take_frames(self) -> None:
        decoder = self.decoder
        while not self.closed:
            if self.in_flight >= self.server.in_flight_max or self.writing_paused:
                self._pause_reading()
                return
            try:
                message = decoder.next()
            except ProtocolError as exc:
                if exc.code == ErrorCode.AUTH_FAILED:
                    self.server.refusals.warn("tag", "closed a connection: %s", exc.message)
                self._fail(0, exc.code, exc.message)
                return
            if message is None:
                return
            if self.authed:
                self._on_request(message)
            else:
                self._on_auth(message)

    def _pause_reading(self) -> None:
        if not self.reading_paused and not self.closed and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _maybe_resume(self) -> None:
        if (
            self.reading_paused
            and not self.closed
            and not self.writing_paused
            and self.in_flight < self.resume_below
            and self.transport is not None
        ):
            self.reading_paused = False
            self.transport.resume_reading()
            self._take_frames()  # frames that arrived before the pause are still buffered

    def _on_request(self, message: dict[str, Any]) -> None:
        request_id = message.pop("id", None)
        if type(request_id) is not int or not 0 < request_id <= ID_MAX:
            self._write(error_frame(0, ErrorCode.INVALID_REQUEST, "id: must be an integer from 1 to 2^64-1",
                                    self.send_mac))
            return
        rtype = message.get("type")
        if type(rtype) is not str or not 0 < len(rtype) <= TYPE_MAX_CHARS:
            self._write(
                error_frame(
                    request_id,
                    ErrorCode.INVALID_REQUEST,
                    f"type: must be a string of 1 to {TYPE_MAX_CHARS} characters",
                    self.send_mac,
                )
            )
            return
        self.in_flight += 1
        token = (request_id, rtype, perf_counter())
        authorize = self.server.authorize
        try:
            if authorize is not None:
                authorize(self.identity, message)
            if rtype == CANCEL_STREAM:
                self._finish(token, self._cancel_stream(message), None)
                return
            stream = self.server.streams.get(rtype)
            if stream is not None:
                self._start_stream(token, stream, message)
                return
            pending = self.server.dispatch(message, self._finish, token)
        except Exception as exc:  # refused before any work: answered like an awaited failure
            self._finish(token, None, exc)
            return
        if pending is not None:
            task = self.loop.create_task(self._run(token, pending))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _on_auth(self, message: dict[str, Any]) -> None:
        cookie = self.server.cookie
        assert cookie is not None
        version = message.get("version")
        if message.get("type") == "Auth" and version != PROTOCOL_VERSION:
            self._fail(
                0,
                ErrorCode.INVALID_REQUEST,
                f"the client speaks protocol version {version!r}, this node {PROTOCOL_VERSION}; upgrade it",
            )
            return
        client_nonce = message.get("nonce")
        if message.get("type") != "Auth":
            self._fail(0, ErrorCode.AUTH_FAILED, "the first frame must be Auth (the cluster cookie's proof)")
            return
        if "credential" in message:
            self._on_credential(message)
            return
        if (
            not isinstance(client_nonce, bytes)
            or len(client_nonce) != NONCE_BYTES
            or not cookie.check(*client_proof(self.nonce, client_nonce), message.get("mac"))
        ):
            self.server.refusals.warn("cookie", "refused a client with a wrong or missing cookie")
            self._fail(0, ErrorCode.AUTH_FAILED, "wrong or missing cluster cookie")
            return
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        self.server.preauth.pop(self, None)
        if not self._admit():
            return
        keys = SessionKeys.derive(cookie, self.nonce, client_nonce, server=True)
        self._write(
            encode_frame(
                {
                    "type": "AuthOk",
                    "node_id": self.server.node_id,
                    "mac": cookie.mac(*server_proof(self.nonce, client_nonce, self.server.node_id)),
                }
            )
        )
        self.send_mac = FrameMac(keys.send)
        self.decoder.mac = FrameMac(keys.receive)

    def _on_credential(self, message: dict[str, Any]) -> None:
        """Auth with a named credential instead of the cookie: its secret travels in the frame,
        so only inside TLS, where the node's certificate already proved the node."""
        server = self.server
        name, secret, client_nonce = message.get("credential"), message.get("secret"), message.get("nonce")
        if self.transport is None or self.transport.get_extra_info("ssl_object") is None:
            self._fail(
                0, ErrorCode.AUTH_FAILED, "credentials are accepted only over TLS (this node has no TLS)"
            )
            return
        if (
            server.check_credential is None
            or not isinstance(name, str)
            or not isinstance(secret, bytes)
            or not isinstance(client_nonce, bytes)
            or len(client_nonce) != NONCE_BYTES
            or not server.check_credential(name, secret)
        ):
            server.refusals.warn("credential", "refused a client with a wrong, revoked or unknown credential")
            self._fail(
                0, ErrorCode.AUTH_FAILED, f"credential {str(name)[:64]!r} is wrong, revoked or unknown"
            )
            return
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        server.preauth.pop(self, None)
        if not self._admit():
            return
        self.identity = Identity(cookie=False, tls_subject=self._tls_subject(), credential=name)
        keys = SessionKeys.derive(Cookie(base64.urlsafe_b64encode(secret).decode()), self.nonce, client_nonce,
                                  server=True)
        self._write(encode_frame({"type": "AuthOk", "node_id": server.node_id, "credential": name}))
        self.send_mac = FrameMac(keys.send)
        self.decoder.mac = FrameMac(keys.receive)

    # -- streams ---------------------------------------------------------------------------

    def _start_stream(self, token: Token, handler: StreamHandler, message: dict[str, Any]) -> None:
        request_id = token[0]
        if request_id in self.streams:
            raise AspenError(ErrorCode.INVALID_REQUEST, f"id {request_id} already names a running stream")
        if len(self.streams) >= self.server.streams_max:
            raise AspenError(ErrorCode.OVERLOADED, f"{self.server.streams_max} streams already run on this "
                             "connection; cancel one or open another connection")
        task = self.loop.create_task(self._run_stream(token, handler, message))
        self.streams[request_id] = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _emit(self, request_id: int, message: dict[str, Any]) -> bool:
        if self.closed or self._over_budget():
            return False
        message["id"] = request_id
        self._write(encode_frame(message, self.send_mac))
        return True

    async def _run_stream(self, token: Token, handler: StreamHandler, message: dict[str, Any]) -> None:
        request_id = token[0]
        try:
            response = await handler(message, lambda m: self._emit(request_id, m))
        except asyncio.CancelledError:
            if request_id not in self.canceled_streams:
                raise  # the server is stopping, or the connection is gone
            response = {"type": "StreamCanceled"}
        except Exception as exc:
            self._finish(token, None, exc)
            return
        finally:
            self.streams.pop(request_id, None)
            self.canceled_streams.discard(request_id)
        self._finish(token, response, None)

    def _cancel_stream(self, message: dict[str, Any]) -> dict[str, Any]:
        target = message.get("request_id")
        task = self.streams.get(target) if type(target) is int else None
        if task is not None and not task.done():
            self.canceled_streams.add(target)  # type: ignore[arg-type]
            task.cancel()
        return {"type": "CancelStreamResult", "canceled": task is not None}

    # -- requests --------------------------------------------------------------------------

    def _over_budget(self) -> bool:
        buffered = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return self.out_bytes + buffered > self.server.unsent_max_bytes

    async def _my_turn(self) -> None:
        """Wait while the peer leaves more than the budget unread; first come, first served.

        A request is held before it starts, not after: what is held is a small request, not
        its response (48 pipelined 16 MiB GetBlobs would otherwise all be read from disk and
        encoded at once). Each one let through checks again and lets the next one check.
        """
        front = False
        while True:
            fut: asyncio.Future[None] = self.loop.create_future()
            if front:
                self.waiting.appendleft(fut)
            else:
                self.waiting.append(fut)
            await fut
            if self.closed or not self._over_budget():
                break
            front = True
        self._next_turn()

    def _next_turn(self) -> None:
        if self.waiting and not self.closed and not self._over_budget():
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_result(None)

    async def _run(self, token: Token, pending: Awaitable[dict[str, Any]]) -> None:
        if self.waiting or self._over_budget():
            await self._my_turn()
            if self.closed:
                if asyncio.iscoroutine(pending):
                    pending.close()  # never started: nothing ran, nothing to answer
                self.in_flight -= 1
                return
        try:
            response = await pending
        except asyncio.CancelledError:
            raise  # the server is stopping
        except Exception as exc:
            self._finish(token, None, exc)
            return
        self._finish(token, response, None)

    def _finish(self, token: Token, response: dict[str, Any] | None, error: BaseException | None) -> None:
        """Answer a request: its response map (which the server now owns) or its error."""
        request_id, rtype, started = token
        if self.closed:  # the response would be dropped: do not encode (or tag) it
            self.in_flight -= 1
            return
        try:
            frame, outcome = _answer(request_id, rtype, response, error, self.send_mac)
        except Exception:  # an error whose details do not encode, say: still answered
            log.exception("request %d (%s): the answer failed to encode", request_id, rtype)
            frame = error_frame(request_id, ErrorCode.INTERNAL, "the answer failed to encode", self.send_mac)
            outcome = "INTERNAL"
        self._write(frame)
        self.in_flight -= 1
        observe = self.server.observe
        if observe is not None:
            try:
                observe(rtype, outcome, perf_counter() - started)
            except Exception:  # metrics must never cost a connection its flow control
                log.exception("observing request %d (%s) failed", request_id, rtype)
        if self.reading_paused:
            self._maybe_resume()

    def _write(self, frame: bytes) -> None:
        if self.closed:
            return
        self.out.append(frame)
        self.out_bytes += len(frame)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        out, total_bytes = self.out, self.out_bytes
        self.out_bytes = 0
        if not out or self.closed or self.transport is None:
            out.clear()
            return
        self.out = []
        write_frames(self.transport, out, total_bytes)
        if self.waiting:
            self._next_turn()


def _answer(request_id: int, rtype: str, response: dict[str, Any] | None,
            error: BaseException | None, mac: FrameMac | None) -> tuple[bytes, str]:
    """The response frame and the outcome to observe ("ok" or an error code)."""
    if error is None and response is not None:
        try:
            response["id"] = request_id
            frame = encode_frame(response, mac)
            if response.get("type") == "Error":
                return frame, str(response.get("code", "error"))[:64]
            return frame, "ok"
        except Exception as exc:
            error = exc
    if isinstance(error, LAYER_ERRORS):
        error = wire_error(error)
        return error_frame(request_id, error.code, error.message, mac, **error.error.details), str(
            error.code
        )[:64]
    log.error("request %d (%s) failed", request_id, rtype, exc_info=error)
    return (
        error_frame(
            request_id, ErrorCode.INTERNAL, f"internal error in request {request_id}; see node log", mac
        ),
        "INTERNAL",
    )


class Server:
    """Serves docs/PROTOCOL.md on host:port; `dispatch` answers each request (module docstring).

    Dispatch receives the request map without its "id"; the answer is the response map (the
    server adds the id and owns the map from then on) or an AspenError. `authorize`, when
    given, sees each request first with the connection's Identity and may refuse it. Any other exception
    becomes INTERNAL, logged with the request id; the connection stays up. `observe`, when
    given, is told each request's type, outcome and duration.
    """

    def __init__(
        self,
        dispatch: Dispatch,
        host: str,
        port: int,
        *,
        cookie: Cookie | None,
        node_id: int,
        connections_max: int = CONNECTIONS_MAX,
        preauth_connections_max: int = PREAUTH_CONNECTIONS_MAX,
        in_flight_max: int = IN_FLIGHT_MAX,
        unsent_max_bytes: int = UNSENT_MAX_BYTES,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        observe: Observe | None = None,
        ssl_context: ssl.SSLContext | None = None,
        authorize: Authorize | None = None,
        check_credential: Callable[[str, bytes], bool] | None = None,
        streams: dict[str, StreamHandler] | None = None,
        streams_max: int = STREAMS_MAX,
    ) -> None:
        if (
            min(connections_max, preauth_connections_max, in_flight_max, unsent_max_bytes) < 1
            or handshake_timeout_s <= 0
        ):
            raise ValueError(
                "connection bounds, in_flight_max, unsent_max_bytes and handshake_timeout_s must be positive"
            )
        self.dispatch = dispatch
        self.streams: dict[str, StreamHandler] = dict(streams or {})
        self.streams_max = streams_max
        self.observe = observe
        self.authorize = authorize
        self.check_credential = check_credential
        self.host = host
        self.port = port
        self.cookie = cookie
        self.node_id = node_id
        self.connections_max = connections_max
        self.preauth_connections_max = preauth_connections_max
        self.in_flight_max = in_flight_max
        self.unsent_max_bytes = unsent_max_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.ssl_context = ssl_context
        self.refusals = RefusalLog()
        self.connections: set[_Connection] = set()  # authenticated
        self.preauth: dict[_Connection, None] = {}  # in the handshake, oldest first
        self._server: asyncio.AbstractServer | None = None
        self._bound_port: int | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if self.ssl_context is not None:
            tls = {"ssl": self.ssl_context, "ssl_handshake_timeout": self.handshake_timeout_s}
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True, **tls
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]

    def admit_preauth(self, conn: _Connection) -> None:
        """Add a connection to the handshake pool, evicting the oldest when it is full."""
        while len(self.preauth) >= self.preauth_connections_max:
            oldest = next(iter(self.preauth))
            del self.preauth[oldest]
            oldest.evict()
        self.preauth[conn] = None

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._bound_port is None:
            raise RuntimeError("Server.start() first")
        return self._bound_port

    async def stop(self) -> None:
        """Stop listening, close every connection and cancel requests still running."""
        if self._server is None:
            return
        self._server.close()
        tasks: list[asyncio.Task[None]] = []
        for conn in [*self.connections, *self.preauth]:
            tasks.extend(conn.tasks)
            if conn.transport is not None:
                conn.transport.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
