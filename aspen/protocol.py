"""Wire format (docs/PROTOCOL.md): u32 big-endian length + msgpack map [+ session tag].

Every frame that arrives is bounded before it is buffered (its length: a few KiB before the
peer authenticated, FRAME_MAX_BYTES after) and before it is decoded (WIRE_BOUND: the C walker
of wire/msgwalk.h prices the whole message, so decoded memory stays within a small multiple of
the frame, however its containers nest). After the handshake each frame also carries a session
tag (aspen/session.py), checked before its body is decoded.

The client and the server both use it; it loads nothing of the server (request fields are
checked in aspen/fields.py).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from aspen.session import TAG_BYTES, FrameMac
from wire import _msgwalk
from wire.errors import AspenError, ErrorCode
from wire.limits import FRAME_MAX_BYTES, PREAUTH_FRAME_MAX_BYTES

PROTOCOL_VERSION = 2
TYPE_MAX_CHARS = 128
# Whole-message decoding bound (wire/msgwalk.h's model of what CPython allocates), in the order
# its Bound has them (sandbox/decode.py's DecodeBound): at most 32 times the frame plus 64 KiB,
# never over 256 MiB, nested at most 32 deep. A page of 10,000 small scan entries prices at ~16
# times its bytes; a blob at about once.
WIRE_BOUND = (32, 32, 64 * 1024, 256 * 1024 * 1024)  # depth_max, bytes_per_byte, slack_bytes, max_bytes
_LEN = struct.Struct(">I")
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


# Frames queued in one event-loop turn leave together. Up to this many bytes they are joined
# into one write: under TLS that is one record (one encryption) instead of one per frame, which
# was most of TLS's CPU cost per small request (benchmarks/README.md). Past the bound they go
# as a writev, so a large blob is never copied to be joined.
JOIN_MAX_BYTES = 64 * 1024


def write_frames(transport: Any, frames: list[bytes], total_bytes: int) -> None:
    """Write queued frames in one call: joined when small, a writev when large."""
    if len(frames) == 1:
        transport.write(frames[0])
    elif total_bytes <= JOIN_MAX_BYTES:
        transport.write(b"".join(frames))
    else:
        transport.writelines(frames)


class ProtocolError(AspenError):
    """A framing error: the stream can no longer be trusted and is closed."""


def encode_frame(message: dict[str, Any], mac: FrameMac | None = None) -> bytes:
    """One frame; with `mac` (after the handshake) its body is followed by the session tag."""
    body = _packb(message)
    length = len(body) + (TAG_BYTES if mac is not None else 0)
    if length > FRAME_MAX_BYTES:
        raise AspenError(ErrorCode.FRAME_TOO_LARGE, f"frame of {length} bytes is over {FRAME_MAX_BYTES}")
    if mac is None:
        return _LEN.pack(length) + body
    return b"".join((_LEN.pack(length), body, mac.tag(body)))


def decode_body(body: bytes) -> dict[str, Any]:
    """One msgpack map with str keys, within WIRE_BOUND, or ProtocolError(MALFORMED_FRAME).

    msgpack's own max_*_len options bound one container, not how many there are (a 15 MiB
    frame of nested arrays decoded to over 1 GiB), so the C walker prices the whole message
    first, without allocating; only then is it decoded.
    """
    problem = _msgwalk.decode_bound(body, *WIRE_BOUND)  # no allocation
    if problem is not None:
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, f"frame body refused: {problem}")
    try:
        # Walked: complete, within the bound, no ext types; the per-container limits are moot.
        message = msgpack.unpackb(body, raw=False, strict_map_key=True, max_ext_len=0)
    except Exception as exc:
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, f"frame body is not msgpack: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, "frame body must be a msgpack map")
    return message


def frame_length(header: bytes | bytearray, limit_bytes: int = FRAME_MAX_BYTES) -> int:
    (length,) = _LEN.unpack(header)
    if length > limit_bytes:
        when = " before authentication" if limit_bytes < FRAME_MAX_BYTES else ""
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"frame of {length} bytes is over {limit_bytes}{when}")
    return length


async def read_frame(reader: Any, limit_bytes: int = FRAME_MAX_BYTES) -> dict[str, Any]:
    """Read one untagged frame from an asyncio StreamReader (IncompleteReadError at EOF).

    The length is checked before the body is read, so an oversized claim costs nothing.
    """
    length = frame_length(await reader.readexactly(4), limit_bytes)
    return decode_body(await reader.readexactly(length))


class FrameDecoder:
    """Incremental frame parser for asyncio.Protocol users (the server and the client).

    `feed` appends received bytes; `next` returns one decoded frame or None when the buffer
    holds no complete frame, so a caller can stop taking frames (backpressure) and resume
    later without losing what is buffered. A length claim over `limit_bytes` is refused as
    soon as its 4 header bytes arrive. The buffer holds at most one frame plus one read.
    Once `mac` is set (the handshake is over) every frame must end with its session tag: a
    frame that does not is ProtocolError(AUTH_FAILED), before its body is decoded.
    """

    __slots__ = ("_buf", "_pos", "limit_bytes", "mac")

    def __init__(self, limit_bytes: int = PREAUTH_FRAME_MAX_BYTES) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of the first unconsumed byte; compacted on the next feed
        self.limit_bytes = limit_bytes
        self.mac: FrameMac | None = None

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next(self) -> dict[str, Any] | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return None
        length = frame_length(buf[pos : pos + 4], self.limit_bytes)
        end = pos + 4 + length
        if len(buf) < end:
            return None
        mac = self.mac
        if mac is None:
            body = bytes(memoryview(buf)[pos + 4 : end])
        else:
            if length < TAG_BYTES:
                raise ProtocolError(ErrorCode.AUTH_FAILED, "a frame without its session tag")
            view = memoryview(buf)
            try:
                body = bytes(view[pos + 4 : end - TAG_BYTES])
                ok = mac.check(body, view[end - TAG_BYTES : end])
            finally:
                view.release()  # a live view would pin the bytearray's size
            if not ok:
                raise ProtocolError(
                    ErrorCode.AUTH_FAILED,
                    "a frame failed its session tag (changed, replayed, reordered or injected on the way)",
                )
        self._pos = end
        return decode_body(body)

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos
