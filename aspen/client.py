"""Aspen client library: AsyncClient (asyncio) and Client (synchronous wrapper).

One connection per node carries many requests in flight, matched to responses by id. The
client asks ClusterStatus once to find the leader (it answers fastest: followers forward
writes to it) and follows NOT_LEADER hints.

Retries are bounded by count and by the request's deadline, with exponential backoff, and
happen only when the request certainly did not execute, or when it is a read:
- connection refused / reset before the request was sent: another endpoint;
- NOT_LEADER (the node refused it): the hinted leader;
- UNAVAILABLE / OVERLOADED: wait and retry, for a write only when the node says applied="no";
- a write whose outcome is unknown (connection lost after sending, TIMEOUT, applied="unknown")
  is raised to the caller with applied="unknown"; it is never silently sent again.

A client with a cookie accepts only a node that proves it holds the cookie too (a node that
does not ask for it is an impostor or a downgrade), and then tags every frame and checks the
node's (aspen/session.py). With `tls` (an ssl.SSLContext, or cacert/cert/key paths:
aspen/tls.py) it speaks TLS and checks the node's certificate and address.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aspen import tls as tlsconf
from aspen.auth import NONCE_BYTES, Cookie, client_proof, new_nonce, server_proof
from aspen.credentials import Token
from aspen.protocol import (
    FRAME_MAX_BYTES,
    PREAUTH_FRAME_MAX_BYTES,
    PROTOCOL_VERSION,
    FrameDecoder,
    ProtocolError,
    encode_frame,
    write_frames,
)
from aspen.session import FrameMac, SessionKeys
from wire.address import split_host_port
from wire.deadline import with_deadline
from wire.errors import AspenError, ErrorCode

T = TypeVar("T")

CONNECT_TIMEOUT_S = 3.0
RETRIES_MAX = 12
BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 1.0
IN_FLIGHT_MAX = 1024  # per client; the server's per-connection bound is the same
SCAN_PAGES_MAX = 10_000
# Per watch, received and not yet taken by the caller: past either the watch ends (overflow).
STREAM_EVENTS_MAX = 10_000
STREAM_BUFFER_MAX_BYTES = 64 * 1024 * 1024
DELETE_RANGE_ROUNDS_MAX = 100_000  # DeleteRange requests one delete_prefix makes at most (1,000 keys each)
# Requests that may be sent again when their first outcome is unknown (PutBlob is content
# addressed: storing the same bytes twice is the same as once).
IDEMPOTENT = frozenset({"Ping", "ReadKey", "ScanKeys", "GetBlob", "HasBlob", "PutBlob", "ClusterStatus"})
# Errors about one endpoint's connection that no retry of that endpoint can fix; another
# endpoint may still take the request (during a cookie rotation some nodes have the new one).
_FATAL_CONNECT = frozenset({ErrorCode.AUTH_FAILED, ErrorCode.INVALID_REQUEST})
# Nothing listens there, or the name does not resolve: retrying the same endpoint within one
# request's deadline will not help, so such an endpoint is skipped until the request ends.
_DEAD_ENDPOINT = (ConnectionRefusedError, socket.gaierror)


class _NotSent(Exception):
    """The connection closed before the request was written: safe to send elsewhere."""


class _Connection(asyncio.Protocol):
    def __init__(self, cookie: Cookie | None, addr: str, closed_early: AspenError,
                 credential: Token | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.cookie = cookie
        self.credential = credential
        self.addr = addr
        self.closed_early = closed_early  # what a close before Hello most likely means
        self.ready: asyncio.Future[int] = self.loop.create_future()  # resolves to the node id
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # Streaming requests (Watch): every frame with the id goes to its callback, and the
        # connection's end as an AspenError.
        self.streams: dict[int, Callable[[dict[str, Any] | AspenError], None]] = {}
        self.ids = itertools.count(1)
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(PREAUTH_FRAME_MAX_BYTES)
        self.send_mac: FrameMac | None = None
        self.closed = False
        self.nonce = new_nonce()
        self.server_nonce = b""
        self.stage = "hello"
        self.out: list[bytes] = []
        self.flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, ssl.SSLError):
            self._close(tls_error(self.addr, exc))
        elif self.stage == "hello" and exc is None:
            self._close(self.closed_early)
        else:
            self._close(AspenError(ErrorCode.UNAVAILABLE, f"connection lost: {exc or 'closed by the node'}"))

    def _close(self, error: AspenError) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: no "never retrieved" warning if nobody waits
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)
        streams, self.streams = self.streams, {}
        for on_frame in streams.values():
            on_frame(error)
        self.out.clear()
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.decoder.feed(data)
        while not self.closed:
            try:
                message = self.decoder.next()
            except ProtocolError as exc:
                self._close(AspenError(exc.code, f"from {self.addr}: {exc.message}"))
                return
            if message is None:
                return
            self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        if self.stage == "ready":
            on_frame = self.streams.get(message.get("id", 0))
            if on_frame is not None:
                on_frame(message)
                return
            fut = self.pending.pop(message.get("id", 0), None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(message)
            elif message.get("type") == "Error" and message.get("id", 0) == 0:
                self._close(error_of(message))  # id 0: the node is closing the connection
            return  # a response to a request we gave up on (TIMEOUT)
        if message.get("type") == "Error":
            self._close(error_of(message))
        elif self.stage == "hello":
            self._on_hello(message)
        else:
            self._on_auth_ok(message)

    def _on_hello(self, message: dict[str, Any]) -> None:
        nonce = message.get("nonce")
        if message.get("type") != "Hello":
            self._close(AspenError(ErrorCode.MALFORMED_FRAME, f"{self.addr} did not greet with Hello"))
        elif message.get("version") != PROTOCOL_VERSION:
            self._close(
                AspenError(
                    ErrorCode.INVALID_REQUEST,
                    f"{self.addr} speaks protocol version "
                    f"{message.get('version')!r}, this client {PROTOCOL_VERSION}; upgrade the older side",
                )
            )
        elif not message.get("auth"):
            if self.cookie is not None or self.credential is not None:
                # A client that holds the cookie never talks to a node that does not prove it:
                # a relay could rewrite Hello{auth: true} to false and then read and answer
                # everything itself (a downgrade).
                self._close(
                    AspenError(
                        ErrorCode.AUTH_FAILED,
                        f"{self.addr} did not ask for the cluster cookie, so it "
                        "cannot prove it holds it: refused (an impostor, or a node without a cookie)",
                    )
                )
            else:
                self._ready(message.get("node_id", 0))
        elif self.cookie is None and self.credential is None:
            self._close(
                AspenError(
                    ErrorCode.AUTH_FAILED,
                    "the cluster needs a cookie (--cookie or ASPEN_COOKIE) "
                    "or a credential (--credential or ASPEN_CREDENTIAL); none given",
                )
            )
        elif not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
            self._close(AspenError(ErrorCode.MALFORMED_FRAME, f"{self.addr}: Hello without a valid nonce"))
        elif self.cookie is None and self.credential is not None:
            # The secret itself goes to the node, so only inside TLS, whose certificate (checked
            # against the cluster's CA) is the node's proof.
            if self.transport is None or self.transport.get_extra_info("ssl_object") is None:
                self._close(AspenError(ErrorCode.AUTH_FAILED, "a credential is sent only over TLS: give the "
                                       "cluster's CA (--cacert or ASPEN_CACERT)"))
                return
            self.stage = "auth"
            self.server_nonce = nonce
            self._write(encode_frame({"type": "Auth", "version": PROTOCOL_VERSION, "nonce": self.nonce,
                                      "credential": self.credential.name, "secret": self.credential.secret}))
        else:
            self.stage = "auth"
            self.server_nonce = nonce
            self._write(encode_frame({"type": "Auth", "version": PROTOCOL_VERSION, "nonce": self.nonce,
                                      "mac": self.cookie.mac(*client_proof(nonce, self.nonce))}))

    def _on_auth_ok(self, message: dict[str, Any]) -> None:
        node_id = message.get("node_id")
        if self.cookie is None and self.credential is not None:
            if message.get("type") != "AuthOk" or type(node_id) is not int or not 0 <= node_id < 2**63:
                self._close(AspenError(ErrorCode.AUTH_FAILED, f"{self.addr} did not accept the credential"))
                return
            keys = SessionKeys.derive(Cookie(self.credential.session_secret), self.server_nonce, self.nonce,
                                      server=False)
            self.send_mac = FrameMac(keys.send)
            self.decoder.mac = FrameMac(keys.receive)
            self._ready(node_id)
            return
        cookie = self.cookie
        if (
            message.get("type") != "AuthOk"
            or cookie is None
            or type(node_id) is not int
            or not 0 <= node_id < 2**63
            or not cookie.check(*server_proof(self.server_nonce, self.nonce, node_id), message.get("mac"))
        ):
            self._close(
                AspenError(ErrorCode.AUTH_FAILED, f"{self.addr} could not prove it holds the cluster cookie")
            )
            return
        keys = SessionKeys.derive(cookie, self.server_nonce, self.nonce, server=False)
        self.send_mac = FrameMac(keys.send)
        self.decoder.mac = FrameMac(keys.receive)
        self._ready(node_id)

    def _ready(self, node_id: int) -> None:
        self.stage = "ready"
        self.decoder.limit_bytes = FRAME_MAX_BYTES
        if not self.ready.done():
            self.ready.set_result(node_id)

    def _write(self, frame: bytes) -> None:
        self.out.append(frame)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        # Requests issued in one event-loop turn leave in one writev.
        self.flush_scheduled = False
        out, self.out = self.out, []
        if out and not self.closed and self.transport is not None:
            write_frames(self.transport, out, sum(map(len, out)))

    def send(self, message: dict[str, Any]) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        if self.closed:
            raise _NotSent("connection closed")
        request_id = next(self.ids)
        message["id"] = request_id
        frame = encode_frame(
            message, self.send_mac
        )  # an oversized request raises here, before anything is sent
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.pending[request_id] = fut
        self._write(frame)
        return request_id, fut


    def open_stream(
        self, message: dict[str, Any], on_frame: Callable[[dict[str, Any] | AspenError], None]
    ) -> int:
        """Send a streaming request; its frames (and the connection's end) go to on_frame."""
        if self.closed:
            raise _NotSent("connection closed")
        request_id = next(self.ids)
        message["id"] = request_id
        frame = encode_frame(message, self.send_mac)
        self.streams[request_id] = on_frame
        self._write(frame)
        return request_id

    def cancel_stream(self, request_id: int) -> None:
        """Stop delivering a stream and ask the node to end it (its answers are not awaited)."""
        if self.streams.pop(request_id, None) is None or self.closed:
            return
        # Nobody waits for either answer (the stream's last frame, the cancel's result): frames
        # with an id nobody expects are dropped when they come.
        _, fut = self.send({"type": "CancelStream", "request_id": request_id})
        fut.add_done_callback(_ignore_outcome)


def _ignore_outcome(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: no "never retrieved" warning


def tls_error(addr: str, exc: ssl.SSLError) -> AspenError:
    """A TLS failure as one line that says what to fix."""
    reason = str(getattr(exc, "reason", None) or exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AspenError(
            ErrorCode.AUTH_FAILED,
            f"{addr}: the node's TLS certificate is not trusted: "
            f"{exc.verify_message} (--cacert: the cluster's CA)",
        )
    if "CERTIFICATE_REQUIRED" in reason or "BAD_CERTIFICATE" in reason or "UNKNOWN_CA" in reason:
        return AspenError(
            ErrorCode.AUTH_FAILED,
            f"{addr}: the node refused this client's TLS certificate "
            f"({reason}): give --cert and --key signed by the cluster's CA",
        )
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason:
        return AspenError(
            ErrorCode.INVALID_REQUEST, f"{addr}: TLS handshake failed ({reason}): the node does not serve TLS"
        )
    return AspenError(ErrorCode.UNAVAILABLE, f"{addr}: TLS failed: {reason}", applied="no")


def _no_answer(rtype: str, timeout_s: float) -> AspenError:
    return AspenError(ErrorCode.TIMEOUT, f"{rtype}: no answer within {timeout_s}s", applied="unknown")


def error_of(message: dict[str, Any]) -> AspenError:
    """An Error response map as an AspenError (details: every other field)."""
    details = {k: v for k, v in message.items() if k not in ("type", "code", "message", "id")}
    raw = message.get("code")
    code: ErrorCode | str = ErrorCode.INTERNAL
    if isinstance(raw, str) and raw:
        try:
            code = ErrorCode(raw)
        except ValueError:
            code = raw[:128]  # a plugin's own code (FUEL_EXHAUSTED, READ_FAILED, ...): kept as sent
    return AspenError(code, str(message.get("message", "")), **details)


def _dead_endpoint_error(addr: str, exc: OSError) -> AspenError:
    why = "nothing listens there" if isinstance(exc, ConnectionRefusedError) else f"unknown host: {exc}"
    return AspenError(ErrorCode.UNAVAILABLE, f"{addr}: {why}", applied="no")


def _first_fatal(dead: dict[str, AspenError]) -> AspenError:
    """Every endpoint failed: an AUTH_FAILED or protocol error says more than a refusal."""
    errors = list(dead.values())
    for e in errors:
        if e.code in _FATAL_CONNECT:
            return e
    if len(errors) == 1:
        return errors[0]
    return AspenError(
        ErrorCode.UNAVAILABLE, "no endpoint reachable: " + "; ".join(e.message for e in errors), applied="no"
    )


def parse_endpoints(endpoints: str | list[str]) -> list[str]:
    """'h:p,h:p' or a list of 'h:p' -> a non-empty list of 'h:p' (ValueError if malformed)."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out = [e.strip() for e in items if e.strip()]
    if not out:
        raise ValueError("no cluster endpoints given")
    for e in out:
        try:
            split_host_port(e)
        except ValueError:
            raise ValueError(f"not a host:port endpoint: {e!r}") from None
    return out


class AsyncClient:
    def __init__(
        self,
        endpoints: str | list[str],
        cookie: str | Cookie | None = None,
        timeout_s: float = 10.0,
        *,
        discover_leader: bool = True,
        pin: bool = False,
        retries_max: int = RETRIES_MAX,
        in_flight_max: int = IN_FLIGHT_MAX,
        tls: ssl.SSLContext | None = None,
        cacert: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        credential: str | Token | None = None,
    ) -> None:
        """tls: an SSLContext for TLS, or give the files (cacert: the CA that signed the nodes'
        certificates; cert and key: this client's own, for nodes run with --client-cert-auth).
        credential: a named credential (`aspen1.NAME.SECRET`, aspen-cli auth create) used instead
        of the cookie; it is sent only over TLS.
        pin: every request is served by the one endpoint given, never another (no leader
        discovery, NOT_LEADER is raised rather than followed): to ask one node what it has."""
        if timeout_s <= 0 or retries_max < 1 or in_flight_max < 1:
            raise ValueError("timeout_s, retries_max and in_flight_max must be positive")
        self.endpoints = parse_endpoints(endpoints)
        if pin and len(self.endpoints) != 1:
            raise ValueError(f"a pinned client talks to one endpoint, not {len(self.endpoints)}")
        self.pin = pin
        if pin:
            discover_leader = False
        self.cookie = Cookie(cookie) if isinstance(cookie, str) else cookie
        self.credential = Token.parse(credential) if isinstance(credential, str) else credential
        if tls is None and (cacert or cert or key):
            tls = tlsconf.client_context(tlsconf.TLSFiles.of(cacert, cert, key))
        self.tls = tls
        self._tls_cert = bool(cert) or (tls is not None and cacert is None)  # a caller's context: unknown
        self.timeout_s = timeout_s
        self.discover_leader = discover_leader
        self.retries_max = retries_max
        self.in_flight_max = in_flight_max
        self._conns: dict[str, _Connection] = {}
        self._connecting: dict[str, asyncio.Future[_Connection]] = {}
        self._leader_addr: str | None = None
        self._discovered = False
        # Created lazily: they bind to the loop the client is first used on.
        self._discover_lock: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        self._rr = 0

    @property
    def leader_addr(self) -> str | None:
        """Where requests go by default, once discovered."""
        return self._leader_addr

    # -- connections -----------------------------------------------------------------------

    async def _connect(self, addr: str, timeout_s: float) -> _Connection:
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
            host, port = split_host_port(addr)
            timeout_s = max(0.01, min(CONNECT_TIMEOUT_S, timeout_s))
            tls: dict[str, Any] = {}
            closed_early = AspenError(
                ErrorCode.UNAVAILABLE,
                f"{addr} closed the connection before greeting (restarting, or it requires TLS: --cacert)",
            )
            if self.tls is not None:
                tls = {"ssl": self.tls, "server_hostname": host, "ssl_handshake_timeout": timeout_s}
                if not self._tls_cert:
                    # TLS 1.3 finishes the client's handshake before the node checks for a
                    # client certificate: its refusal arrives as a close before Hello.
                    closed_early = AspenError(
                        ErrorCode.AUTH_FAILED,
                        f"{addr} closed the TLS connection before "
                        "greeting: it requires a client certificate (--cert and --key, signed "
                        "by the cluster's CA)",
                    )
            try:
                async with asyncio.timeout(timeout_s):
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self.cookie, addr, closed_early, self.credential),
                        host,
                        port,
                        **tls,
                    )
                    try:
                        await conn.ready
                    except BaseException:
                        conn._close(AspenError(ErrorCode.UNAVAILABLE, "handshake abandoned"))
                        raise
            except ssl.SSLError as exc:
                raise tls_error(addr, exc) from None
            except TimeoutError:
                hint = "" if self.tls is not None else " (does it require TLS? --cacert)"
                raise TimeoutError(f"no handshake with {addr} before the deadline{hint}") from None
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

    def _forget_leader(self) -> None:
        self._leader_addr = None
        self._discovered = False

    async def _target(self, deadline: float, dead: dict[str, AspenError]) -> str:
        """Where to send next: the leader when known, else the next endpoint not found dead
        during this request."""
        if self._leader_addr is not None and self._leader_addr not in dead:
            return self._leader_addr
        if self.discover_leader and not self._discovered:
            if self._discover_lock is None:
                self._discover_lock = asyncio.Lock()
            async with self._discover_lock:  # one ClusterStatus for many concurrent first requests
                if not self._discovered:
                    await self._find_leader(deadline, dead)
                    self._discovered = True
            if self._leader_addr is not None and self._leader_addr not in dead:
                return self._leader_addr
        for _ in range(len(self.endpoints)):
            addr = self._next_endpoint()
            if addr not in dead:
                return addr
        raise _first_fatal(dead)  # discovery found every endpoint dead

    async def _find_leader(self, deadline: float, dead: dict[str, AspenError]) -> None:
        """Ask ClusterStatus of the endpoints in turn; one that cannot be used at all (refused,
        AUTH_FAILED, ...) goes into `dead`, so the request does not knock on it again."""
        loop = asyncio.get_running_loop()
        for _ in range(len(self.endpoints)):
            addr = self._next_endpoint()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                conn = await self._connect(addr, remaining)
                _, fut = conn.send({"type": "ClusterStatus"})
                async with asyncio.timeout(max(0.01, min(2.0, deadline - loop.time()))):
                    reply = await fut
            except AspenError as exc:
                if exc.code in _FATAL_CONNECT:
                    dead[addr] = exc
                continue
            except _DEAD_ENDPOINT as exc:
                dead[addr] = _dead_endpoint_error(addr, exc)
                continue
            except (OSError, TimeoutError, _NotSent):
                continue
            if reply.get("type") != "ClusterStatusResult":
                self._leader_addr = addr  # a node without cluster status (a test server): use it
                return
            leader = reply.get("leader_id")
            if leader is None:
                return  # an election is under way: spread requests, the nodes forward them
            if leader == reply.get("node_id"):
                self._leader_addr = addr
                return
            for node in reply.get("nodes") or []:
                if node.get("node_id") == leader and isinstance(node.get("client_addr"), str):
                    self._leader_addr = node["client_addr"]
                    return
            return

    async def _sleep(self, backoff_s: float, deadline: float) -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, min(backoff_s, deadline - loop.time())))
        return min(backoff_s * 2, BACKOFF_MAX_S)

    # -- requests --------------------------------------------------------------------------

    async def request(self, rtype: str, **fields: Any) -> dict[str, Any]:
        """Send one request; return its response map (without id) or raise AspenError."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.in_flight_max)
        async with self._slots:
            return await self._request(rtype, fields)

    async def _request(self, rtype: str, fields: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        idempotent = rtype in IDEMPOTENT
        backoff = BACKOFF_START_S
        last: AspenError | None = None
        dead: dict[str, AspenError] = {}  # endpoints that cannot take this request, and why
        for attempt in range(self.retries_max):
            if deadline - loop.time() <= 0:
                break
            addr = await self._target(deadline, dead)
            try:
                conn = await self._connect(addr, deadline - loop.time())
                request_id, fut = conn.send({**fields, "type": rtype})
            except AspenError as exc:
                if exc.code == ErrorCode.FRAME_TOO_LARGE:
                    raise
                last = exc
                if exc.code in _FATAL_CONNECT:
                    dead[addr] = exc
            except _DEAD_ENDPOINT as exc:
                last = dead[addr] = _dead_endpoint_error(addr, exc)
            except (OSError, TimeoutError, _NotSent) as exc:
                last = AspenError(ErrorCode.UNAVAILABLE, f"{addr}: {exc or type(exc).__name__}", applied="no")
            else:
                try:
                    reply = await with_deadline(
                        fut, max(0.001, deadline - loop.time()), partial(_no_answer, rtype, self.timeout_s)
                    )
                except AspenError as exc:
                    conn.pending.pop(request_id, None)
                    if exc.code == ErrorCode.TIMEOUT:
                        raise
                    # The connection went down after the request was written.
                    self._forget_leader()
                    if not idempotent:
                        raise AspenError(
                            exc.code,
                            f"{exc.message}; {rtype} may or may not have executed",
                            applied="unknown",
                        ) from None
                    last = exc
                    continue
                if reply.get("type") != "Error":
                    del reply["id"]
                    return reply
                error = error_of(reply)
                details = error.error.details
                if error.code == ErrorCode.NOT_LEADER and self.pin:
                    raise error  # asked of this node only: its answer is the answer
                if error.code == ErrorCode.NOT_LEADER:
                    hint = details.get("leader_addr")
                    last = error
                    if isinstance(hint, str) and hint and hint != addr:
                        self._leader_addr = hint
                        if attempt < 2:
                            continue  # the first hops follow hints at once; later ones back off
                    else:
                        self._forget_leader()
                elif error.code in (ErrorCode.UNAVAILABLE, ErrorCode.OVERLOADED) and (
                    idempotent or details.get("applied") == "no"
                ):
                    last = error
                    if error.code == ErrorCode.UNAVAILABLE:
                        self._forget_leader()  # likely an election: ask again who leads
                else:
                    raise error
            if len(dead) >= len(self.endpoints):
                raise _first_fatal(dead)
            if last is not None and last.code == ErrorCode.UNAVAILABLE:
                self._forget_leader()
            if addr in dead:
                continue  # another endpoint at once: this one failed without taking any time
            backoff = await self._sleep(backoff, deadline)
        raise last or AspenError(
            ErrorCode.TIMEOUT, f"{rtype}: no answer within {self.timeout_s}s", applied="unknown"
        )

    async def close(self) -> None:
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            conn._close(AspenError(ErrorCode.UNAVAILABLE, "client closed"))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- typed helpers (thin: each is one request; responses are PROTOCOL.md's maps) -------

    async def ping(self) -> dict[str, Any]:
        return await self.request("Ping")

    async def get(self, key: str, *, stale: bool = False) -> dict[str, Any]:
        """ReadResult {was_found, value, version, create_revision, mod_revision}."""
        return await self.request("ReadKey", key=key, stale=stale)

    async def put(self, key: str, value: bytes | str, *, lease: int | None = None) -> dict[str, Any]:
        """value: bytes, or str (stored as its UTF-8 bytes); lease: a LeaseGrant id, the key
        is deleted when the lease expires or is revoked."""
        fields: dict[str, Any] = {"key": key, "value": value.encode() if isinstance(value, str) else value}
        if lease is not None:
            fields["lease"] = lease
        return await self.request("WriteKey", **fields)

    async def delete(self, key: str) -> dict[str, Any]:
        return await self.request("DeleteKey", key=key)

    async def delete_prefix(
        self, prefix: str, *, rounds_max: int = DELETE_RANGE_ROUNDS_MAX
    ) -> dict[str, Any]:
        """Delete every key starting with prefix ("": every key), in DeleteRange rounds of at
        most 1,000 keys (one log entry and one revision each): {deleted, revision, rounds}.
        Not atomic across rounds: keys written meanwhile may be deleted too, or remain."""
        deleted, revision = 0, None
        for rounds in range(1, rounds_max + 1):
            r = await self.request("DeleteRange", prefix=prefix)
            deleted += r["deleted"]
            revision = r["revision"]
            if not r["more"]:
                return {"deleted": deleted, "revision": revision, "rounds": rounds}
        raise AspenError(
            ErrorCode.INVALID_REQUEST,
            f"delete of prefix {prefix!r} exceeded {rounds_max} rounds ({deleted} keys deleted so far)",
            deleted=deleted,
        )

    async def _stream_connection(self) -> _Connection:
        """A connection for a stream: the leader when known, else any endpoint that answers
        (every node serves watches from its own applied log)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        dead: dict[str, AspenError] = {}
        last: AspenError = AspenError(ErrorCode.UNAVAILABLE, "no endpoint answered")
        for _ in range(2 * len(self.endpoints)):
            if deadline - loop.time() <= 0:
                break
            addr = await self._target(deadline, dead)
            try:
                return await self._connect(addr, deadline - loop.time())
            except AspenError as exc:
                last = exc
                if exc.code in _FATAL_CONNECT:
                    dead[addr] = exc
            except _DEAD_ENDPOINT as exc:
                last = dead[addr] = _dead_endpoint_error(addr, exc)
            except (OSError, TimeoutError) as exc:
                last = AspenError(ErrorCode.UNAVAILABLE, f"{addr}: {exc or type(exc).__name__}")
            self._forget_leader()
            if len(dead) >= len(self.endpoints):
                raise _first_fatal(dead)
        raise last

    async def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        start_revision: int = 0,
        progress_ms: int = 0,
    ) -> AsyncIterator[dict[str, Any]]:
        """Events on one key or a prefix, in revision order, from start_revision (0: from now):
        {"type": "PUT", key, value, mod_revision, version, create_revision} or {"type":
        "DELETE", key, mod_revision}; with progress_ms, {"type": "PROGRESS", revision} when
        nothing happened for that long (every event up to revision was delivered). Runs until
        the caller stops iterating (aclose: the node ends the watch) or raises AspenError:
        COMPACTED (oldest_revision), WATCH_OVERFLOW or a lost connection (resume_revision:
        watch again from there to miss nothing)."""
        fields: dict[str, Any] = {
            "type": "Watch",
            "start_revision": start_revision,
            "progress_ms": progress_ms,
        }
        if key is not None:
            fields["key"] = key
        if prefix is not None:
            fields["prefix"] = prefix
        conn = await self._stream_connection()
        frames: asyncio.Queue[tuple[dict[str, Any] | AspenError, int, int]] = asyncio.Queue()
        overflow = False
        buffered_events = buffered_bytes = 0

        def on_frame(frame: dict[str, Any] | AspenError) -> None:
            nonlocal overflow, buffered_events, buffered_bytes
            events = frame.get("events") if isinstance(frame, dict) else None
            count = len(events) if isinstance(events, list) else 1
            size = (
                sum(len(e.get("key") or "") + len(e.get("value") or b"") for e in events)
                if count > 1 or events
                else 0
            )
            if (
                overflow
                or buffered_events + count > STREAM_EVENTS_MAX
                or buffered_bytes + size > STREAM_BUFFER_MAX_BYTES
            ):
                overflow = True  # the caller does not keep up: end the watch, never skip
                return
            buffered_events += count
            buffered_bytes += size
            frames.put_nowait((frame, count, size))

        request_id = conn.open_stream(fields, on_frame)
        resume = start_revision
        ended = False
        try:
            while True:
                if overflow and frames.empty():
                    raise AspenError(
                        ErrorCode.WATCH_OVERFLOW,
                        f"the caller did not take events as fast as they came (this "
                        f"client buffers {STREAM_EVENTS_MAX} events or {STREAM_BUFFER_MAX_BYTES} bytes)",
                        resume_revision=resume,
                    )
                frame, count, size = await frames.get()
                buffered_events -= count
                buffered_bytes -= size
                if isinstance(frame, AspenError):
                    ended = True
                    raise AspenError(frame.code, f"watch ended: {frame.message}", resume_revision=resume)
                kind = frame.get("type")
                if kind == "WatchCreated":
                    resume = frame.get("start_revision", resume)
                elif kind == "WatchEvents":
                    events = frame.get("events") or []
                    for event in events:
                        # Its revision may have more events (a frame can end inside a batch's
                        # revision): a resume starts at it, so some of its events may come again.
                        resume = event["mod_revision"]
                        yield event
                elif kind == "WatchProgress":
                    resume = max(resume, frame["revision"] + 1)
                    yield {"type": "PROGRESS", "revision": frame["revision"]}
                elif kind == "StreamCanceled":
                    ended = True
                    return
                else:
                    ended = True
                    error = error_of(frame)
                    details = {"resume_revision": resume, **error.error.details}
                    raise AspenError(error.code, error.message, **details)
        finally:
            if not ended:
                conn.cancel_stream(request_id)
            else:
                conn.streams.pop(request_id, None)

    async def move_leader(self, node_id: int) -> dict[str, Any]:
        """Make node node_id the leader (Raft's TimeoutNow, from the current leader)."""
        return await self.request("MoveLeader", node_id=node_id)

    async def scan(
        self,
        prefix: str,
        limit: int | None = None,
        continuation_token: str | None = None,
        *,
        stale: bool = False,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"prefix": prefix, "stale": stale}
        if limit is not None:
            fields["limit"] = limit
        if continuation_token is not None:
            fields["continuation_token"] = continuation_token
        return await self.request("ScanKeys", **fields)

    async def scan_all(
        self, prefix: str, *, pages_max: int = SCAN_PAGES_MAX, stale: bool = False
    ) -> list[dict[str, Any]]:
        """Every entry under prefix, following continuation tokens for at most pages_max pages."""
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
        """expected=None: the key must not exist. CAS_FAILED carries actual_found/actual_value."""
        return await self.request("CompareAndSwapKey", key=key, expected=expected, new_value=new_value)

    async def cad(self, key: str, expected: bytes) -> dict[str, Any]:
        return await self.request("CompareAndDeleteKey", key=key, expected=expected)

    async def batch(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """ops: [{"op": "Set", "key", "value"} | {"op": "Delete", "key"}], all or nothing."""
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
    """Synchronous client: AsyncClient's methods, run on a private event-loop thread.

    Usable from plain scripts and tests (including ones that run their own event loop in
    another thread); close() stops the thread. Not for use from inside its own callbacks.
    """

    def __init__(
        self,
        endpoints: str | list[str],
        cookie: str | Cookie | None = None,
        timeout_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        self._async = AsyncClient(endpoints, cookie, timeout_s, **kwargs)  # validates before a thread exists
        self._timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aspen-client", daemon=True)
        self._thread.start()

    def _run(self, coro: Coroutine[Any, Any, T], wait_s: float | None = None) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            # Every request is bounded by its own deadline; this is only a safety net.
            return fut.result(wait_s if wait_s is not None else 2 * self._timeout_s + CONNECT_TIMEOUT_S)
        except TimeoutError:
            fut.cancel()
            raise AspenError(ErrorCode.TIMEOUT, "no answer in time", applied="unknown") from None
        except BaseException:  # KeyboardInterrupt: the request's task must not outlive the call
            fut.cancel()
            raise

    @property
    def endpoints(self) -> list[str]:
        return self._async.endpoints

    def request(self, rtype: str, **fields: Any) -> dict[str, Any]:
        return self._run(self._async.request(rtype, **fields))

    def ping(self) -> dict[str, Any]:
        return self._run(self._async.ping())

    def get(self, key: str, *, stale: bool = False) -> dict[str, Any]:
        return self._run(self._async.get(key, stale=stale))

    def put(self, key: str, value: bytes | str, *, lease: int | None = None) -> dict[str, Any]:
        return self._run(self._async.put(key, value, lease=lease))

    def delete(self, key: str) -> dict[str, Any]:
        return self._run(self._async.delete(key))

    def delete_prefix(self, prefix: str, *, rounds_max: int = DELETE_RANGE_ROUNDS_MAX) -> dict[str, Any]:
        # Each round has its own deadline; the whole may take many of them.
        return self._run(
            self._async.delete_prefix(prefix, rounds_max=rounds_max),
            wait_s=None if rounds_max < 2 else rounds_max * (2 * self._timeout_s + CONNECT_TIMEOUT_S),
        )

    def move_leader(self, node_id: int) -> dict[str, Any]:
        return self._run(self._async.move_leader(node_id))

    def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        start_revision: int = 0,
        progress_ms: int = 0,
    ) -> Iterator[dict[str, Any]]:
        """AsyncClient.watch as a plain iterator; closing it (or leaving a for loop) ends the watch."""
        agen = self._async.watch(key, prefix=prefix, start_revision=start_revision, progress_ms=progress_ms)
        try:
            while True:
                fut = asyncio.run_coroutine_threadsafe(agen.__anext__(), self._loop)
                try:
                    # A watch waits as long as nothing happens: no deadline here (Ctrl-C ends it).
                    yield fut.result()
                except StopAsyncIteration:
                    return
                except BaseException:
                    fut.cancel()
                    raise
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(agen.aclose(), self._loop).result(CONNECT_TIMEOUT_S)

    def scan(
        self,
        prefix: str,
        limit: int | None = None,
        continuation_token: str | None = None,
        *,
        stale: bool = False,
    ) -> dict[str, Any]:
        return self._run(self._async.scan(prefix, limit, continuation_token, stale=stale))

    def scan_all(
        self, prefix: str, *, pages_max: int = SCAN_PAGES_MAX, stale: bool = False
    ) -> list[dict[str, Any]]:
        wait_s = pages_max * (2 * self._timeout_s + CONNECT_TIMEOUT_S)
        return self._run(self._async.scan_all(prefix, pages_max=pages_max, stale=stale), wait_s)

    def cas(self, key: str, expected: bytes | None, new_value: bytes) -> dict[str, Any]:
        return self._run(self._async.cas(key, expected, new_value))

    def cad(self, key: str, expected: bytes) -> dict[str, Any]:
        return self._run(self._async.cad(key, expected))

    def batch(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return self._run(self._async.batch(ops))

    def cond_batch(self, conditions: list[dict[str, Any]], ops: list[dict[str, Any]]) -> dict[str, Any]:
        return self._run(self._async.cond_batch(conditions, ops))

    def put_blob(self, data: bytes) -> dict[str, Any]:
        return self._run(self._async.put_blob(data))

    def get_blob(self, blob_hash: str) -> dict[str, Any]:
        return self._run(self._async.get_blob(blob_hash))

    def has_blob(self, blob_hash: str) -> dict[str, Any]:
        return self._run(self._async.has_blob(blob_hash))

    def cluster_status(self) -> dict[str, Any]:
        return self._run(self._async.cluster_status())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self._run(self._shutdown(), 5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    async def _shutdown(self) -> None:
        # Requests still running (the caller was interrupted) end here, not as "Task was
        # destroyed but it is pending!" when the loop is closed.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._async.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
