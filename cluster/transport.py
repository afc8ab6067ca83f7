"""The Raft transport: pysyncobj's messages between members, authenticated and encrypted.

pysyncobj's own TCP transport bound 0.0.0.0 whatever host the member was given, buffered
whatever a stranger sent before authenticating (a length prefix of any size, `bytes +=`),
unpickled every frame and logged nothing when a member had another cookie. This one is given
to pysyncobj as its `transportClass` and runs on pysyncobj's tick thread and poller:

- it binds exactly the member's own host;
- before a peer proves the cookie, a connection holds at most `HELLO_MAX_BYTES` of it: the
  handshake messages have fixed sizes and are read exactly, never more; a handshake has
  `HANDSHAKE_TIMEOUT_S`, and at most `PREAUTH_CONNECTIONS_MAX` such connections exist (the
  oldest is dropped for a new one);
- after it, every frame is length-checked before buffering (at most `frame_max_bytes`) and
  sealed with ChaCha20-Poly1305 under per-direction session keys, its nonce the frame's
  sequence number, so a changed, dropped, replayed, reordered or injected frame fails to open
  and closes the connection;
- frames carry msgpack, never pickle: nothing that arrives is unpickled here;
- a peer that reads slowly gets its messages dropped past `send_buffer_max_bytes` (Raft
  tolerates lost messages; the leader resends from the follower's next index), so one peer
  never stalls the tick thread or grows memory.

Handshake (sizes fixed; K = PBKDF2(cookie)): the connecting member sends HELLO (magic, nonce
Nc, its own Raft address), the listener answers REPLY (magic, nonce Ns, MAC_K("server", Nc, Ns,
addresses)) and the connector, having checked that proof, sends AUTH (MAC_K("client", ...)).
Session keys are MAC_K("c2s"/"s2c", Nc, Ns). The cookie never crosses the wire.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import itertools
import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pysyncobj.node import TCPNode
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.transport import Transport

from cluster.journal import DurabilityLost
from wire.address import split_host_port

log = logging.getLogger("aspen.cluster.transport")

MAGIC = b"ASPNRFT1"
NONCE_BYTES = 32
MAC_BYTES = 32
TAG_BYTES = 16
ADDR_MAX_BYTES = 255
HELLO_HEAD_BYTES = len(MAGIC) + NONCE_BYTES + 1  # then the address, its length in the last byte
HELLO_MAX_BYTES = HELLO_HEAD_BYTES + ADDR_MAX_BYTES
REPLY_BYTES = len(MAGIC) + NONCE_BYTES + MAC_BYTES
AUTH_BYTES = MAC_BYTES
REFUSAL = bytes(AUTH_BYTES)  # in place of AUTH: "you did not prove the cookie"
FRAME_HEADER_BYTES = 4
PREAUTH_CONNECTIONS_MAX = 32
HANDSHAKE_TIMEOUT_S = 2.0
ACCEPTS_PER_EVENT_MAX = 64
RECV_CHUNK_BYTES = 256 * 1024
RECV_PER_EVENT_MAX_BYTES = 8 * 1024 * 1024  # then the poller comes back: other peers get a turn
SENDMSG_BUFFERS_MAX = 64
KEEPALIVE_PERIOD_S = 0.25
FOREIGN_SENDS_MAX = 1024
LOG_PERIOD_S = 60.0
LOG_KEYS_MAX = 1024
KDF_SALT = b"aspen-raft-transport-v1"
KDF_ITERATIONS = 100_000
_KEEPALIVE = {"type": "aspen_keepalive"}


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """What RaftCore tells its transport (pysyncobj constructs the transport itself)."""

    key: bytes  # derive_key(cookie)
    frame_max_bytes: int
    send_buffer_max_bytes: int
    idle_timeout_s: float
    reconnect_period_s: float

    def __post_init__(self) -> None:
        assert len(self.key) == 32
        assert self.frame_max_bytes > HELLO_MAX_BYTES
        assert self.send_buffer_max_bytes >= self.frame_max_bytes
        assert self.idle_timeout_s > KEEPALIVE_PERIOD_S and self.reconnect_period_s > 0


def derive_key(cookie: str) -> bytes:
    """The transport key from the cluster cookie. Slow on purpose: the listener's proof is a
    MAC an unauthenticated connector can collect, so a weak cookie must be costly to guess."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=KDF_SALT, iterations=KDF_ITERATIONS)
    return kdf.derive(cookie.encode())


def _mac(key: bytes, label: bytes, *parts: bytes) -> bytes:
    h = hmac.new(key, label, hashlib.sha256)
    for part in parts:
        h.update(len(part).to_bytes(2, "big"))
        h.update(part)
    return h.digest()


class _RateLimitedLog:
    """At most one line per (kind, peer) per LOG_PERIOD_S: a hostile peer cannot flood the log."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}

    def __call__(self, level: int, kind: str, peer: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        key = (kind, peer)
        if now - self._last.get(key, -LOG_PERIOD_S) < LOG_PERIOD_S:
            return
        if len(self._last) >= LOG_KEYS_MAX:
            self._last.clear()
        self._last[key] = now
        log.log(level, msg, *args)


# Link states
CONNECTING = "connecting"  # outgoing, TCP connect in progress
AWAIT_REPLY = "await_reply"  # outgoing, HELLO sent
AWAIT_HELLO = "await_hello"  # incoming, nothing authenticated yet
AWAIT_AUTH = "await_auth"  # incoming, REPLY sent
READY = "ready"
CLOSED = "closed"


class _Link:
    """One TCP connection to a member: handshake, then sealed frames both ways."""

    def __init__(self, transport: RaftTransport, sock: socket.socket, state: str, peer_desc: str,
                 node: TCPNode | None) -> None:
        self.t = transport
        self.sock = sock
        self.fileno = sock.fileno()
        self.state = state
        self.peer_desc = peer_desc  # "ip" of a stranger, the address of a member
        self.node = node
        self.rbuf = bytearray()
        self.wbuf: deque[bytes] = deque()
        self.wbuf_head = 0  # bytes of wbuf[0] already sent
        self.buffered_bytes = 0
        now = time.monotonic()
        self.deadline = now + HANDSHAKE_TIMEOUT_S
        self.last_recv = now
        self.last_send = now
        self.nonce_mine = os.urandom(NONCE_BYTES)
        self.nonce_peer = b""
        self.claimed_addr = b""
        self.sealer: ChaCha20Poly1305 | None = None
        self.opener: ChaCha20Poly1305 | None = None
        self.send_seq = 0
        self.recv_seq = 0

    # -- poller ------------------------------------------------------------------------------

    def subscribe(self) -> None:
        mask = POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR
        if self.state == CONNECTING or self.wbuf:
            mask |= POLL_EVENT_TYPE.WRITE
        self.t.poller.subscribe(self.fileno, self.on_event, mask)

    def on_event(self, descr: int, event: int) -> None:
        if self.state == CLOSED or descr != self.fileno:
            return  # a stale registration (pysyncobj's poller keeps callbacks of closed fds)
        if event & POLL_EVENT_TYPE.ERROR and self.state == CONNECTING:
            self.close("connection refused")
            return
        if self.state == CONNECTING:
            if event & POLL_EVENT_TYPE.WRITE:
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.close(os.strerror(err))
                    return
                self.start_client_handshake()
            return
        if event & POLL_EVENT_TYPE.WRITE:
            self.flush()
        if self.state != CLOSED and event & (POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR):
            self.read()
        if self.state != CLOSED:
            self.subscribe()

    # -- writing -----------------------------------------------------------------------------

    def queue(self, data: bytes) -> None:
        self.wbuf.append(data)
        self.buffered_bytes += len(data)
        self.last_send = time.monotonic()
        self.flush()
        if self.wbuf and self.state != CLOSED:
            self.subscribe()
            if threading.get_ident() != self.t._tick_thread:
                # Sent from the event loop's thread (RaftCore.submit) while the tick thread
                # waits in a poll that predates this write interest: wake it to take it up.
                self.t._syncobj.wake()

    def flush(self) -> None:
        while self.wbuf:
            views = [memoryview(self.wbuf[0])[self.wbuf_head:]]
            views.extend(memoryview(b) for b in itertools.islice(self.wbuf, 1, SENDMSG_BUFFERS_MAX))
            try:
                sent = self.sock.sendmsg(views)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.close(f"send failed: {exc}")
                return
            self.buffered_bytes -= sent
            while sent:
                left = len(self.wbuf[0]) - self.wbuf_head
                if sent >= left:
                    sent -= left
                    self.wbuf.popleft()
                    self.wbuf_head = 0
                else:
                    self.wbuf_head += sent
                    sent = 0

    def send_message(self, message: dict[str, Any]) -> bool:
        assert self.sealer is not None and self.state == READY
        try:
            plain = msgpack.packb(message, use_bin_type=True)
        except (TypeError, ValueError) as exc:
            log.error("cannot encode a Raft message of type %s: %s", message.get("type"), exc)
            return False
        length = len(plain) + TAG_BYTES
        if length > self.t.settings.frame_max_bytes:
            log.error("Raft message of type %s is %d bytes, over the frame limit %d: not sent",
                      message.get("type"), length, self.t.settings.frame_max_bytes)
            return False
        if self.buffered_bytes + length > self.t.settings.send_buffer_max_bytes:
            # Raft tolerates a lost message: the leader resends from the peer's next index.
            self.t.ratelog(logging.WARNING, "backlog", self.peer_desc,
                           "Raft peer %s reads too slowly (%d bytes unsent): dropping messages to it",
                           self.peer_desc, self.buffered_bytes)
            return False
        sealed = self.sealer.encrypt(_nonce(self.send_seq), plain, None)
        self.send_seq += 1
        self.queue(length.to_bytes(FRAME_HEADER_BYTES, "big") + sealed)
        return self.state != CLOSED

    # -- reading -----------------------------------------------------------------------------

    def want_bytes(self) -> int:
        """How many more bytes this state may take from the socket, never more."""
        have = len(self.rbuf)
        if self.state == AWAIT_HELLO:
            if have < HELLO_HEAD_BYTES:
                return HELLO_HEAD_BYTES - have
            return HELLO_HEAD_BYTES + self.rbuf[HELLO_HEAD_BYTES - 1] - have
        if self.state == AWAIT_REPLY:
            return REPLY_BYTES - have
        if self.state == AWAIT_AUTH:
            return AUTH_BYTES - have
        return RECV_CHUNK_BYTES

    def read(self) -> None:
        taken = 0
        buffer = self.t.recv_buffer
        while self.state != CLOSED and taken < RECV_PER_EVENT_MAX_BYTES:
            want = self.want_bytes()
            if want <= 0:
                break  # a handshake step waits for nothing more: handled below
            try:
                got = self.sock.recv_into(buffer, want)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.close(f"receive failed: {exc}")
                return
            if not got:
                self.close("closed by peer")
                return
            taken += got
            self.last_recv = time.monotonic()
            self.rbuf += buffer[:got]
            if self.state == READY:
                self.open_frames()
            else:
                self.step_handshake()
            if got < want:
                break  # drained: the poller is level-triggered and reports whatever comes next

    def open_frames(self) -> None:
        rbuf = self.rbuf
        while self.state == READY and len(rbuf) >= FRAME_HEADER_BYTES:
            length = int.from_bytes(rbuf[:FRAME_HEADER_BYTES], "big")
            if not TAG_BYTES <= length <= self.t.settings.frame_max_bytes:
                self.t.ratelog(logging.ERROR, "frame", self.peer_desc,
                               "Raft peer %s sent a frame of %d bytes (limit %d): disconnected",
                               self.peer_desc, length, self.t.settings.frame_max_bytes)
                self.close("bad frame length")
                return
            if len(rbuf) < FRAME_HEADER_BYTES + length:
                return
            sealed = bytes(rbuf[FRAME_HEADER_BYTES:FRAME_HEADER_BYTES + length])
            del rbuf[:FRAME_HEADER_BYTES + length]
            assert self.opener is not None
            try:
                plain = self.opener.decrypt(_nonce(self.recv_seq), sealed, None)
            except InvalidTag:
                self.t.ratelog(logging.ERROR, "tamper", self.peer_desc,
                               "Raft frame from %s failed authentication (changed, replayed or "
                               "injected on the path): disconnected", self.peer_desc)
                self.close("frame failed authentication")
                return
            self.recv_seq += 1
            try:
                message = msgpack.unpackb(plain, raw=False, strict_map_key=False, max_bin_len=len(plain),
                                          max_str_len=len(plain), max_array_len=len(plain),
                                          max_map_len=len(plain))
            except Exception as exc:
                log.error("Raft peer %s sent an undecodable message: %s", self.peer_desc, exc)
                self.close("undecodable message")
                return
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                log.error("Raft peer %s sent a message that is not a typed map", self.peer_desc)
                self.close("malformed message")
                return
            if message["type"] == _KEEPALIVE["type"]:
                continue
            assert self.node is not None
            self.t.deliver(self.node, _as_pysyncobj(message))

    def step_handshake(self) -> None:
        if self.want_bytes() > 0:
            return
        if self.state == AWAIT_HELLO:
            self.on_hello()
        elif self.state == AWAIT_REPLY:
            self.on_reply()
        elif self.state == AWAIT_AUTH:
            self.on_auth()

    # -- handshake ---------------------------------------------------------------------------

    def start_client_handshake(self) -> None:
        addr = self.t.self_addr
        self.state = AWAIT_REPLY
        self.deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        self.queue(MAGIC + self.nonce_mine + bytes([len(addr)]) + addr)
        if self.state != CLOSED:
            self.subscribe()

    def on_hello(self) -> None:
        head = bytes(self.rbuf)
        self.rbuf.clear()
        if head[: len(MAGIC)] != MAGIC:
            self.t.ratelog(logging.WARNING, "junk", self.peer_desc,
                           "connection from %s to the Raft port is not an Aspen member (bad magic): dropped",
                           self.peer_desc)
            self.close("bad magic")
            return
        self.nonce_peer = head[len(MAGIC):len(MAGIC) + NONCE_BYTES]
        self.claimed_addr = head[HELLO_HEAD_BYTES:]
        node = self.t.member_node(self.claimed_addr)
        if node is None:
            self.t.ratelog(logging.WARNING, "unknown", self.peer_desc,
                           "connection from %s claims Raft address %r, not a member here: dropped",
                           self.peer_desc, self.claimed_addr[:64])
            self.close("unknown member")
            return
        self.node = node
        proof = _mac(self.t.settings.key, b"server", self.nonce_peer, self.nonce_mine, self.claimed_addr,
                     self.t.self_addr)
        self.state = AWAIT_AUTH
        self.queue(MAGIC + self.nonce_mine + proof)

    def on_reply(self) -> None:
        reply = bytes(self.rbuf)
        self.rbuf.clear()
        assert self.node is not None
        server_addr = self.node.address.encode()
        expected = _mac(
            self.t.settings.key,
            b"server",
            self.nonce_mine,
            reply[len(MAGIC) : len(MAGIC) + NONCE_BYTES],
            self.t.self_addr,
            server_addr,
        )
        if reply[: len(MAGIC)] != MAGIC or not hmac.compare_digest(
            expected, reply[len(MAGIC) + NONCE_BYTES :]
        ):
            self.t.ratelog(
                logging.ERROR,
                "cookie",
                self.peer_desc,
                "Raft member %s did not prove the cluster cookie: it has a different cluster "
                "cookie (or is not an Aspen member); not connected",
                self.peer_desc,
            )
            # Tell it so (an all-zero proof), so its log names the problem too; our own proof
            # is not sent to a peer that could not prove itself.
            with contextlib.suppress(OSError):
                self.sock.send(REFUSAL)
            self.close("peer failed authentication")
            return
        self.nonce_peer = reply[len(MAGIC):len(MAGIC) + NONCE_BYTES]
        proof = _mac(
            self.t.settings.key, b"client", self.nonce_mine, self.nonce_peer, self.t.self_addr, server_addr
        )
        self.queue(proof)
        if self.state == CLOSED:
            return
        self.become_ready(c2s_first=True)

    def on_auth(self) -> None:
        proof = bytes(self.rbuf)
        self.rbuf.clear()
        expected = _mac(self.t.settings.key, b"client", self.nonce_peer, self.nonce_mine, self.claimed_addr,
                        self.t.self_addr)
        if proof == REFUSAL:
            self.t.ratelog(logging.ERROR, "cookie", self.peer_desc,
                           "Raft member %r (from %s) refused our proof: it has a different cluster cookie",
                           self.claimed_addr[:64], self.peer_desc)
            self.close("refused by peer")
            return
        if not hmac.compare_digest(expected, proof):
            self.t.ratelog(logging.ERROR, "cookie", self.peer_desc,
                           "Raft connection from %s (claiming %r) failed authentication: it has a "
                           "different cluster cookie; dropped", self.peer_desc, self.claimed_addr[:64])
            self.close("wrong cookie")
            return
        self.become_ready(c2s_first=False)

    def become_ready(self, *, c2s_first: bool) -> None:
        nonce_c, nonce_s = (
            (self.nonce_mine, self.nonce_peer) if c2s_first else (self.nonce_peer, self.nonce_mine)
        )
        c2s = _mac(self.t.settings.key, b"c2s", nonce_c, nonce_s)
        s2c = _mac(self.t.settings.key, b"s2c", nonce_c, nonce_s)
        send_key, recv_key = (c2s, s2c) if c2s_first else (s2c, c2s)
        self.sealer = ChaCha20Poly1305(send_key)
        self.opener = ChaCha20Poly1305(recv_key)
        self.state = READY
        assert self.node is not None
        self.t.attach(self.node, self)

    # -- closing -----------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        if self.state == CLOSED:
            return
        was_ready = self.state == READY
        self.state = CLOSED
        log.debug("Raft link to %s closed: %s", self.peer_desc, reason)
        self.t.poller.unsubscribe(self.fileno)
        try:
            self.sock.close()
        except OSError:
            pass
        self.wbuf.clear()
        self.rbuf = bytearray()
        self.buffered_bytes = 0
        self.t.detach(self, was_ready)


def _nonce(seq: int) -> bytes:
    return b"\0\0\0\0" + seq.to_bytes(8, "big")


def _as_pysyncobj(message: dict[str, Any]) -> dict[str, Any]:
    """msgpack gives lists where pysyncobj built tuples (log entries, snapshot chunks)."""
    entries = message.get("entries")
    if isinstance(entries, list):
        message["entries"] = [tuple(e) if isinstance(e, list) else e for e in entries]
    serialized = message.get("serialized")
    if isinstance(serialized, list):
        message["serialized"] = tuple(serialized)
    return message


def _split_host_port(address: str) -> tuple[str, int]:
    host, port = split_host_port(address)
    return host.strip("[]"), port


class RaftTransport(Transport):
    """pysyncobj's Transport over `_Link`s; pysyncobj builds it as transportClass(syncObj, ...)."""

    def __init__(self, syncObj: Any, selfNode: TCPNode | None, otherNodes: Any) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        assert selfNode is not None, "read-only members are not supported"
        self.settings: TransportSettings = syncObj.transport_settings
        self.poller = syncObj._poller
        self.self_node = selfNode
        self.self_addr = selfNode.address.encode()
        assert len(self.self_addr) <= ADDR_MAX_BYTES
        self.ratelog = _RateLimitedLog()
        self._nodes: dict[bytes, TCPNode] = {}
        self._links: dict[TCPNode, _Link] = {}  # ready links, one per member
        self._outgoing: dict[TCPNode, _Link] = {}  # connecting or in handshake, one per member
        self._preauth: deque[_Link] = deque()  # incoming, not yet authenticated, oldest first
        self._last_attempt: dict[TCPNode, float] = {}
        self._server: socket.socket | None = None
        self._ready = False
        self._bind_attempted = threading.Event()
        self._next_bind_try = 0.0
        self.messages_dropped = 0
        # Every link reads into this one buffer (reads run in poll callbacks, under RaftCore's
        # tick lock, one at a time): recv() of RECV_CHUNK_BYTES allocated and released that
        # much for each message, ~15 us apiece.
        self.recv_buffer = memoryview(bytearray(RECV_CHUNK_BYTES))
        self._tick_thread = -1  # set by the first tick; links are touched under the tick lock only
        self._foreign: deque[tuple[Any, Any]] = deque()
        self._syncobj = syncObj
        for node in otherNodes:
            self.addNode(node)
        syncObj.addOnTickCallback(self._on_tick)

    # -- pysyncobj's Transport interface ---------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    def tryGetReady(self) -> None:
        self._tick_thread = threading.get_ident()  # pysyncobj calls this first on its tick thread
        if self._ready or time.monotonic() < self._next_bind_try:
            return
        self._next_bind_try = time.monotonic() + 1.0
        host, port = _split_host_port(self.self_node.address)
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            server = socket.socket(family, kind, proto)
            try:
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind(sockaddr)
                server.listen(64)
                server.setblocking(False)
            except OSError:
                server.close()
                raise
        except OSError as exc:
            self.ratelog(logging.ERROR, "bind", self.self_node.address,
                         "cannot bind the Raft port %s: %s (retrying)", self.self_node.address, exc)
            self._bind_attempted.set()
            return
        self._server = server
        self.poller.subscribe(server.fileno(), self._on_accept, POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR)
        self._ready = True
        self._bind_attempted.set()
        log.info("Raft transport listening on %s (authenticated, encrypted)", self.self_node.address)

    def waitReady(self) -> None:
        self._bind_attempted.wait()

    def addNode(self, node: TCPNode) -> None:
        self._nodes[node.address.encode()] = node

    def dropNode(self, node: TCPNode) -> None:
        self._nodes.pop(node.address.encode(), None)
        self._last_attempt.pop(node, None)
        for links in (self._links, self._outgoing):
            link = links.pop(node, None)
            if link is not None:
                link.node = None
                link.close("member removed")

    def send(self, node: Any, message: Any) -> bool:
        if not self._syncobj.in_tick():
            # pysyncobj's transferLeadership sends from the caller's thread; links belong to
            # the holder of RaftCore's tick lock, so hand the message over and wake the tick.
            if len(self._foreign) >= FOREIGN_SENDS_MAX:
                return False
            self._foreign.append((node, message))
            self._syncobj.wake()  # RaftCore: wakes the poller (once pysyncobj has made its pipe)
            return True
        link = self._links.get(node)
        if link is None or link.state != READY:
            return False
        if not link.send_message(message):
            self.messages_dropped += 1
            return False
        return True

    def destroy(self) -> None:
        self.setOnMessageReceivedCallback(None)
        self.setOnNodeConnectedCallback(None)
        self.setOnNodeDisconnectedCallback(None)
        for link in [*self._links.values(), *self._outgoing.values(), *self._preauth]:
            link.close("transport destroyed")
        self._links.clear()
        self._outgoing.clear()
        self._preauth.clear()
        if self._server is not None:
            self.poller.unsubscribe(self._server.fileno())
            self._server.close()
            self._server = None
        self._ready = False

    # -- links -------------------------------------------------------------------------------

    def member_node(self, addr: bytes) -> TCPNode | None:
        """The member whose connections we accept: it connects to us (see _should_connect)."""
        node = self._nodes.get(addr)
        if node is None or self._should_connect(node):
            return None
        return node

    def _should_connect(self, node: TCPNode) -> bool:
        # One connection per pair of members: the one with the greater address connects.
        return self.self_node.address > node.address

    def attach(self, node: TCPNode, link: _Link) -> None:
        if link in self._preauth:
            self._preauth.remove(link)
        if self._outgoing.get(node) is link:
            del self._outgoing[node]
        if node.address.encode() not in self._nodes:
            link.node = None
            link.close("no longer a member")
            return
        old = self._links.get(node)
        if old is not None:
            old.close("replaced by a new connection")
        self._links[node] = link
        log.info("Raft link to %s is up", node.address)
        self._onNodeConnected(node)

    def detach(self, link: _Link, was_ready: bool) -> None:
        if link in self._preauth:
            self._preauth.remove(link)
        node = link.node
        if node is None:
            return
        if self._outgoing.get(node) is link:
            del self._outgoing[node]
        if was_ready and self._links.get(node) is link:
            del self._links[node]
            log.info("Raft link to %s is down", node.address)
            self._onNodeDisconnected(node)

    def deliver(self, node: TCPNode, message: dict[str, Any]) -> None:
        try:
            self._onMessageReceived(node, message)
        except DurabilityLost:  # the disk failed: up to the tick, which stops the node
            raise
        except Exception:  # a bug in a handler must not close the link or stop the tick
            log.exception(
                "handling a Raft message of type %s from %s failed", message.get("type"), node.address
            )

    def _on_accept(self, descr: int, event: int) -> None:
        server = self._server
        if server is None or descr != server.fileno():
            return
        for _ in range(ACCEPTS_PER_EVENT_MAX):
            try:
                sock, addr = server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.ratelog(logging.ERROR, "accept", self.self_node.address, "Raft accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._preauth) >= PREAUTH_CONNECTIONS_MAX:
                oldest = self._preauth.popleft()
                self.ratelog(
                    logging.WARNING,
                    "preauth",
                    oldest.peer_desc,
                    "too many unauthenticated connections to the Raft port: dropping the oldest (%s)",
                    oldest.peer_desc,
                )
                oldest.close("pre-auth pool full")
            link = _Link(self, sock, AWAIT_HELLO, str(addr[0]), None)
            self._preauth.append(link)
            link.subscribe()

    def _connect(self, node: TCPNode) -> None:
        self._last_attempt[node] = time.monotonic()
        host, port = _split_host_port(node.address)
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            self.ratelog(
                logging.WARNING, "resolve", node.address, "cannot reach Raft member %s: %s", node.address, exc
            )
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.connect(sockaddr)
        except BlockingIOError:
            pass
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH):
                self.ratelog(
                    logging.WARNING, "connect", node.address, "connect to %s failed: %s", node.address, exc
                )
            return
        link = _Link(self, sock, CONNECTING, node.address, node)
        self._outgoing[node] = link
        link.subscribe()

    def _on_tick(self) -> None:
        self._tick_thread = threading.get_ident()
        while self._foreign:
            node, message = self._foreign.popleft()
            self.send(node, message)
        now = time.monotonic()
        while self._preauth and self._preauth[0].deadline < now:
            link = self._preauth.popleft()
            self.ratelog(logging.WARNING, "slow", link.peer_desc,
                         "connection from %s did not authenticate within %.1fs: dropped", link.peer_desc,
                         HANDSHAKE_TIMEOUT_S)
            link.close("handshake timeout")
        for link in list(self._outgoing.values()):
            if link.deadline < now:
                link.close("handshake timeout")
        for link in list(self._links.values()):
            if now - link.last_recv > self.settings.idle_timeout_s:
                link.close("silent for too long")
            elif now - link.last_send > KEEPALIVE_PERIOD_S:
                link.send_message(_KEEPALIVE)
        if not self._ready:
            return
        for node in list(self._nodes.values()):
            if (self._should_connect(node) and node not in self._links and node not in self._outgoing
                    and now - self._last_attempt.get(node, 0.0) >= self.settings.reconnect_period_s):
                self._connect(node)


__all__ = ["RaftTransport", "TransportSettings", "derive_key"]

