"""Wire format (docs/PROTOCOL.md): u32 big-endian length + msgpack map, and field checks.

The field helpers are the one place request fields are checked, by the node and by plugins'
request routing alike; each raises AspenError(INVALID_REQUEST) naming the field.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from storage.blobs import check_hash
from storage.errors import AspenError, ErrorCode
from storage.state import validate_key

PROTOCOL_VERSION = 1
FRAME_MAX_BYTES = 64 * 1024 * 1024
TYPE_MAX_CHARS = 128
_LEN = struct.Struct(">I")
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


class ProtocolError(AspenError):
    """A framing error: the stream can no longer be trusted and is closed."""


def encode_frame(message: dict[str, Any]) -> bytes:
    body = _packb(message)
    if len(body) > FRAME_MAX_BYTES:
        raise AspenError(ErrorCode.FRAME_TOO_LARGE, f"frame of {len(body)} bytes is over {FRAME_MAX_BYTES}")
    return _LEN.pack(len(body)) + body


def decode_body(body: bytes | bytearray) -> dict[str, Any]:
    # The per-type limits bound what one small frame can make us allocate (a 5-byte array
    # header may claim 4 billion items); msgpack also refuses nesting deeper than its stack.
    try:
        message = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            max_bin_len=FRAME_MAX_BYTES,
            max_str_len=FRAME_MAX_BYTES,
            max_array_len=1_000_000,
            max_map_len=100_000,
            max_ext_len=0,
        )
    except Exception as exc:
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, f"frame body is not msgpack: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, "frame body must be a msgpack map")
    return message


def frame_length(header: bytes | bytearray) -> int:
    (length,) = _LEN.unpack(header)
    if length > FRAME_MAX_BYTES:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"frame of {length} bytes is over {FRAME_MAX_BYTES}")
    return length


async def read_frame(reader: Any) -> dict[str, Any]:
    """Read one frame from an asyncio StreamReader (raises IncompleteReadError at EOF).

    The length is checked before the body is read, so an oversized claim costs nothing.
    """
    length = frame_length(await reader.readexactly(4))
    return decode_body(await reader.readexactly(length))


class FrameDecoder:
    """Incremental frame parser for asyncio.Protocol users (the server and the client).

    `feed` appends received bytes; `next` returns one decoded frame or None when the buffer
    holds no complete frame, so a caller can stop taking frames (backpressure) and resume
    later without losing what is buffered. A length claim over FRAME_MAX_BYTES is refused as
    soon as its 4 header bytes arrive. The buffer holds at most one frame plus one read.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of the first unconsumed byte; compacted on the next feed

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next(self) -> dict[str, Any] | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return None
        length = frame_length(buf[pos : pos + 4])
        end = pos + 4 + length
        if len(buf) < end:
            return None
        message = decode_body(buf[pos + 4 : end])
        self._pos = end
        return message

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos


# -- request fields ---------------------------------------------------------------------------


def _name(name: str, where: str | None) -> str:
    return f"{where}.{name}" if where else name


def _invalid(name: str, where: str | None, what: str) -> AspenError:
    return AspenError(ErrorCode.INVALID_REQUEST, f"{_name(name, where)}: {what}")


def require_str(req: dict[str, Any], name: str, *, where: str | None = None) -> str:
    """A key field: a UTF-8 str of 1 to 1,024 bytes outside the reserved prefix.

    Raises INVALID_REQUEST (missing, not a str, empty), KEY_TOO_LARGE or RESERVED_KEY.
    """
    value = req.get(name)
    if value is None:
        raise _invalid(name, where, "is required")
    error = validate_key(value, _name(name, where))
    if error is not None:
        raise AspenError(error.code, error.message)
    return value


def optional_str(req: dict[str, Any], name: str, max_chars: int = 4096) -> str | None:
    value = req.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_chars:
        raise _invalid(name, None, f"must be a string of at most {max_chars} characters")
    return value


def require_bytes(
    req: dict[str, Any],
    name: str,
    *,
    where: str | None = None,
    max_bytes: int | None = None,
    code: ErrorCode = ErrorCode.VALUE_TOO_LARGE,
) -> bytes:
    value = req.get(name)
    if value is None:
        raise _invalid(name, where, "is required")
    if not isinstance(value, bytes):
        raise _invalid(name, where, "must be bytes (msgpack bin)")
    if max_bytes is not None and len(value) > max_bytes:
        raise AspenError(code, f"{_name(name, where)}: {len(value)} bytes is over {max_bytes}")
    return value


def optional_bytes(req: dict[str, Any], name: str) -> bytes | None:
    value = req.get(name)
    if value is not None and not isinstance(value, bytes):
        raise _invalid(name, None, "must be bytes (msgpack bin) or nil")
    return value


def optional_bool(req: dict[str, Any], name: str, default: bool) -> bool:
    value = req.get(name, default)
    if not isinstance(value, bool):
        raise _invalid(name, None, "must be a boolean")
    return value


def require_int(req: dict[str, Any], name: str, lo: int, hi: int, *, where: str | None = None) -> int:
    value = req.get(name)
    # bool is an int subclass in Python but not an integer on the wire.
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _invalid(name, where, f"must be an integer from {lo} to {hi}")
    return value


def optional_int(req: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = req.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _invalid(name, None, f"must be an integer from {lo} to {hi}")
    return value


def require_list(req: dict[str, Any], name: str, max_items: int) -> list[Any]:
    value = req.get(name)
    if not isinstance(value, list):
        raise _invalid(name, None, "must be a list")
    if len(value) > max_items:
        raise _invalid(name, None, f"at most {max_items} items")
    return value


def require_hash(req: dict[str, Any], name: str) -> str:
    return check_hash(req.get(name))
