"""Frame codec round trips and limits; request field helpers."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest

from aspen import fields
from aspen import protocol as p
from wire.errors import AspenError, ErrorCode


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "Ping"},
        {"id": 2**64 - 1, "type": "WriteKey", "key": "k/é", "value": b"\x00\xff" * 100},
        {"id": 1, "type": "X", "nested": {"list": [1, None, True, 2.5, b"b", "s"]}, "empty": b""},
    ],
)
def test_round_trip_keeps_str_and_bytes_apart(msg: dict) -> None:
    frame = p.encode_frame(msg)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    decoded = p.decode_body(frame[4:])
    assert decoded == msg
    d = p.FrameDecoder()
    d.feed(frame)
    assert d.next() == msg and d.next() is None and d.buffered_bytes == 0


def test_decoder_takes_frames_split_anywhere() -> None:
    msgs = [{"id": i, "type": "Ping", "pad": b"x" * i} for i in range(1, 40)]
    stream = b"".join(p.encode_frame(m) for m in msgs)
    d = p.FrameDecoder()
    out = []
    for i in range(0, len(stream), 7):  # 7-byte reads cut headers and bodies
        d.feed(stream[i : i + 7])
        while (m := d.next()) is not None:
            out.append(m)
    assert out == msgs


def test_decoder_refuses_an_oversized_claim_from_the_header_alone() -> None:
    d = p.FrameDecoder()
    d.feed(struct.pack(">I", p.FRAME_MAX_BYTES + 1))
    with pytest.raises(p.ProtocolError) as e:
        d.next()
    assert e.value.code == ErrorCode.FRAME_TOO_LARGE


def test_frame_max_is_accepted_exactly() -> None:
    assert p.frame_length(struct.pack(">I", p.FRAME_MAX_BYTES)) == p.FRAME_MAX_BYTES
    assert p.FRAME_MAX_BYTES == 64 * 1024 * 1024


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # never-used byte
        msgpack.packb([1, 2, 3]),  # not a map
        msgpack.packb("abc"),
        b"\xdd\xff\xff\xff\xff",  # array claiming 4 billion items
        b"\x91" * 100_000 + b"\x00",  # nesting deeper than the unpacker's stack
        msgpack.packb({"a": 1}) + b"\x00",  # trailing bytes
        msgpack.packb({1: "int key"}),
        b"\xd4\x01\x00",  # ext types are not part of the protocol
        b"",
    ],
)
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(p.ProtocolError) as e:
        p.decode_body(body)
    assert e.value.code == ErrorCode.MALFORMED_FRAME


def test_encode_refuses_an_oversized_frame() -> None:
    with pytest.raises(AspenError) as e:
        p.encode_frame({"data": b"x" * (p.FRAME_MAX_BYTES + 1)})
    assert e.value.code == ErrorCode.FRAME_TOO_LARGE


def test_read_frame_from_a_stream_reader() -> None:
    async def go() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(p.encode_frame({"type": "Ping"}) + struct.pack(">I", p.FRAME_MAX_BYTES + 1))
        assert await p.read_frame(reader) == {"type": "Ping"}
        with pytest.raises(p.ProtocolError) as e:
            await p.read_frame(reader)
        assert e.value.code == ErrorCode.FRAME_TOO_LARGE
        reader.feed_eof()
        with pytest.raises(asyncio.IncompleteReadError):
            await p.read_frame(reader)

    asyncio.run(go())


# -- field helpers ---------------------------------------------------------------------------


def _code_and_message(fn, *args, **kwargs) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(AspenError) as e:
        fn(*args, **kwargs)
    return str(e.value.code), e.value.message


def test_require_str_is_the_key_check() -> None:
    assert fields.require_str({"key": "a/b"}, "key") == "a/b"
    assert _code_and_message(fields.require_str, {}, "key") == ("INVALID_REQUEST", "key: is required")
    code, msg = _code_and_message(fields.require_str, {"key": b"bytes"}, "key")
    assert code == "INVALID_REQUEST" and msg.startswith("key")
    assert _code_and_message(fields.require_str, {"key": ""}, "key")[0] == "INVALID_REQUEST"
    assert _code_and_message(fields.require_str, {"key": "k" * 1025}, "key")[0] == "KEY_TOO_LARGE"
    assert fields.require_str({"key": "k" * 1024}, "key")
    assert (
        _code_and_message(fields.require_str, {"key": "é" * 513}, "key")[0] == "KEY_TOO_LARGE"
    )  # bytes, not chars
    assert _code_and_message(fields.require_str, {"key": "__aspen/x"}, "key")[0] == "RESERVED_KEY"
    code, msg = _code_and_message(fields.require_str, {"key": 5}, "key", where="ops[3]")
    assert code == "INVALID_REQUEST" and msg.startswith("ops[3].key")


def test_require_bytes() -> None:
    assert fields.require_bytes({"v": b""}, "v") == b""
    assert _code_and_message(fields.require_bytes, {"v": "text"}, "v") == (
        "INVALID_REQUEST",
        "v: must be bytes (msgpack bin)",
    )
    assert _code_and_message(fields.require_bytes, {}, "v", where="ops[0]") == (
        "INVALID_REQUEST",
        "ops[0].v: is required",
    )
    code, msg = _code_and_message(fields.require_bytes, {"v": b"xx"}, "v", max_bytes=1)
    assert code == "VALUE_TOO_LARGE" and msg.startswith("v: 2 bytes")
    assert _code_and_message(
        fields.require_bytes, {"d": b"xx"}, "d", max_bytes=1, code=ErrorCode.BLOB_TOO_LARGE
    )[0] == ("BLOB_TOO_LARGE")


def test_int_bool_list_str_hash_helpers() -> None:
    assert fields.optional_int({}, "limit", 1000, 1, 10_000) == 1000
    assert fields.optional_int({"limit": 5}, "limit", 1000, 1, 10_000) == 5
    for bad in (0, 10_001, True, "5", 1.5):
        assert _code_and_message(fields.optional_int, {"limit": bad}, "limit", 1000, 1, 10_000) == (
            "INVALID_REQUEST", "limit: must be an integer from 1 to 10000")
    assert fields.require_int({"n": 3}, "n", 0, 3) == 3
    assert _code_and_message(fields.require_int, {}, "n", 0, 3)[1] == "n: must be an integer from 0 to 3"
    assert fields.optional_bool({}, "stale", False) is False
    assert (
        _code_and_message(fields.optional_bool, {"stale": 1}, "stale", False)[1] == "stale: must be a boolean"
    )
    assert fields.require_list({"ops": [1]}, "ops", 1) == [1]
    assert _code_and_message(fields.require_list, {"ops": [1, 2]}, "ops", 1)[1] == "ops: at most 1 items"
    assert _code_and_message(fields.require_list, {"ops": {}}, "ops", 1)[1] == "ops: must be a list"
    assert fields.optional_str({}, "prefix") is None
    assert _code_and_message(fields.optional_str, {"prefix": b"x"}, "prefix")[0] == "INVALID_REQUEST"
    assert fields.optional_bytes({"e": None}, "e") is None
    assert _code_and_message(fields.optional_bytes, {"e": "x"}, "e")[0] == "INVALID_REQUEST"
    assert fields.require_hash({"hash": "a" * 64}, "hash") == "a" * 64
    assert _code_and_message(fields.require_hash, {"hash": "A" * 64}, "hash")[0] == "INVALID_REQUEST"


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, frames: list[bytes]) -> None:
        self.calls.append(("writelines", list(frames)))


def test_small_batches_are_joined_and_large_ones_are_not_copied() -> None:
    t = _Recorder()
    small = [b"a" * 100, b"b" * 100]
    p.write_frames(t, small, 200)
    big = [b"x" * p.JOIN_MAX_BYTES, b"y"]
    p.write_frames(t, big, p.JOIN_MAX_BYTES + 1)
    at_bound = [b"x" * (p.JOIN_MAX_BYTES - 1), b"y"]
    p.write_frames(t, at_bound, p.JOIN_MAX_BYTES)
    assert t.calls == [("write", b"a" * 100 + b"b" * 100), ("writelines", big), ("write", b"".join(at_bound))]


def test_tagged_frames_round_trip_and_a_flipped_bit_is_refused() -> None:
    from aspen.session import FrameMac

    key = b"k" * 32
    sender, receiver = FrameMac(key), FrameMac(key)
    frames = [p.encode_frame({"id": i, "type": "Ping"}, sender) for i in range(1, 4)]
    d = p.FrameDecoder(p.FRAME_MAX_BYTES)
    d.mac = receiver
    d.feed(frames[0] + frames[1])
    assert d.next() == {"id": 1, "type": "Ping"} and d.next() == {"id": 2, "type": "Ping"}
    broken = bytearray(frames[2])
    broken[10] ^= 1
    d.feed(bytes(broken))
    with pytest.raises(p.ProtocolError) as e:
        d.next()
    assert e.value.code == ErrorCode.AUTH_FAILED
