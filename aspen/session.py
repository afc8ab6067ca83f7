"""The per-connection session MAC of docs/PROTOCOL.md (version 2).

The cookie handshake proves who connected; these keys make every later frame prove it too.
Both sides derive one key per direction from the cookie and both nonces, and each frame after
the handshake carries a keyed BLAKE2b MAC (RFC 7693) of TAG_BYTES over the sequence number and
the body. The sequence number is not sent: each side counts its frames, so a frame that was
changed, dropped, reordered, replayed or injected fails its tag and the connection is closed.

Keyed BLAKE2b rather than HMAC-SHA256: half the cost of a tag on a small frame
(benchmarks/README.md), and every request and response carries one, each made once and checked
once (HMAC-SHA256 is faster only on multi-MiB frames, where SHA extensions exist).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from aspen.auth import Cookie

TAG_BYTES = 16  # 128 bits; a forger has one try per connection
C2S_CONTEXT = b"aspen-c2s-v2"
S2C_CONTEXT = b"aspen-s2c-v2"


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """This side's send and receive keys (never printed)."""

    send: bytes = field(repr=False)
    receive: bytes = field(repr=False)

    @classmethod
    def derive(cls, cookie: Cookie, server_nonce: bytes, client_nonce: bytes, *, server: bool) -> SessionKeys:
        nonces = server_nonce + client_nonce
        c2s = cookie.mac(C2S_CONTEXT, nonces)
        s2c = cookie.mac(S2C_CONTEXT, nonces)
        return cls(send=s2c, receive=c2s) if server else cls(send=c2s, receive=s2c)


class FrameMac:
    """One direction's tags: a key and the count of frames tagged so far."""

    __slots__ = ("_base", "_seq")

    def __init__(self, key: bytes) -> None:
        self._base = hashlib.blake2b(key=key, digest_size=TAG_BYTES)  # copied per frame: keyed once
        self._seq = 0

    def tag(self, body: bytes | memoryview) -> bytes:
        """The tag of the next frame in this direction (and count it)."""
        h = self._base.copy()
        h.update(self._seq.to_bytes(8, "big"))
        h.update(body)
        self._seq += 1
        return h.digest()

    def check(self, body: bytes | memoryview, tag: bytes | memoryview) -> bool:
        """Whether `tag` is the next frame's; a frame that fails ends the session anyway."""
        return hmac.compare_digest(self.tag(body), bytes(tag))
