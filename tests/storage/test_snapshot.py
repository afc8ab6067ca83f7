"""Snapshots round-trip exactly and refuse anything corrupt."""

from __future__ import annotations

import time
from typing import Any

import blake3
import msgpack
import pytest

from storage import codec, snapshot
from storage.errors import StorageCode, StorageError
from storage.kv import Entry
from storage.snapshot import SnapshotError
from storage.state import StateMachine
from tests.storage.test_determinism import random_log, replay


def _rich_state() -> StateMachine:
    state, _ = replay(random_log(seed=11, entries=400))
    return state


def _reseal(body: bytes) -> bytes:
    """A snapshot around this body with a valid checksum: tests the decoder behind it."""
    return snapshot.MAGIC + bytes([snapshot.FORMAT_VERSION]) + body + blake3.blake3(body).digest()


def test_round_trip_keeps_every_part_of_the_state() -> None:
    state = _rich_state()
    again = snapshot.load(snapshot.dump(state))
    assert again.state_hash() == state.state_hash()
    assert again.revision == state.revision
    assert again.applied_index == state.applied_index == 400
    assert list(again.kv.items()) == list(state.kv.items())
    assert again.blob_records() == state.blob_records()
    for table in ("nodes", "plugins", "settings"):
        assert again.meta_items(table) == state.meta_items(table)
    assert snapshot.dump(again) == snapshot.dump(state)


def test_round_trip_of_an_empty_state() -> None:
    again = snapshot.load(snapshot.dump(StateMachine()))
    assert again.state_hash() == StateMachine().state_hash()
    assert again.revision == again.applied_index == 0


def test_a_loaded_state_keeps_applying_like_the_original() -> None:
    state = _rich_state()
    again = snapshot.load(snapshot.dump(state))
    more = random_log(seed=12, entries=100)
    for index, ops in enumerate(more, start=401):
        assert state.apply_ops(ops, index, 9) == again.apply_ops(ops, index, 9)
    assert again.state_hash() == state.state_hash()


def test_kv_spanning_several_codec_chunks_round_trips() -> None:
    state = StateMachine()
    n = codec.KV_CHUNK_ENTRIES * 2 + 17
    for start in range(0, n, 1000):
        state.apply_ops(
            [["put", f"key/{i:07d}", str(i).encode()] for i in range(start, min(n, start + 1000))], 1, 1
        )
    again = snapshot.load(snapshot.dump(state))
    assert len(again.kv) == n
    assert again.state_hash() == state.state_hash()
    assert again.get(f"key/{n - 1:07d}") == state.get(f"key/{n - 1:07d}")
    assert [k for k, _ in again.scan("key/00081", 3).entries] == ["key/0008100", "key/0008101", "key/0008102"]


def test_snapshot_errors_are_aspen_internal_errors() -> None:
    with pytest.raises(StorageError) as caught:
        snapshot.load(b"")
    assert caught.value.code == StorageCode.INTERNAL
    assert isinstance(caught.value, SnapshotError)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: b"",
        lambda d: d[:10],
        lambda d: d[:-1],
        lambda d: d[:-40] + d[-32:],
        lambda d: d + b"\x00",
        lambda d: b"NOTASNAP" + d[8:],
        lambda d: d[:8] + bytes([1]) + d[9:],
        lambda d: d[:8] + bytes([99]) + d[9:],
        lambda d: d[:-33] + bytes([d[-33] ^ 1]) + d[-32:],
        lambda d: d[:-1] + bytes([d[-1] ^ 0x80]),
    ],
    ids=[
        "empty",
        "truncated-header",
        "truncated-1",
        "cut-middle",
        "trailing-byte",
        "magic",
        "old-format",
        "future-format",
        "body-bit",
        "checksum-bit",
    ],
)
def test_corruption_is_detected(mangle: Any) -> None:
    data = snapshot.dump(_rich_state())
    with pytest.raises(SnapshotError):
        snapshot.load(mangle(data))


def test_every_single_bit_flip_in_a_small_snapshot_is_detected() -> None:
    state = StateMachine()
    state.apply_ops(
        [["put", "k", b"v"], ["meta_put", "nodes", "1", b"n"], ["blob_add", "c" * 64, 3, 1]], 5, 2
    )
    data = snapshot.dump(state)
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            flipped = data[:i] + bytes([data[i] ^ bit]) + data[i + 1 :]
            with pytest.raises(SnapshotError):
                snapshot.load(flipped)


def _body(*objects: Any) -> bytes:
    return b"".join(msgpack.packb(o, use_bin_type=True) for o in objects)


@pytest.mark.parametrize(
    "objects",
    [
        [],
        [[1]],
        [{"applied_index": "1"}],
        [{"applied_index": 1}],
        [{"applied_index": 1}, [2, 0, 0, 0, 0], [], [[], [], []]],  # unknown codec version
        [{"applied_index": 1}, [1, 0, 1, 0, 0], [], [[], [], []]],  # kv count without kv chunks
        [{"applied_index": 1}, [1, 1, 1, 0, 0], [["b"], [b""], [1], [1], [1]], [], [[], [], []], "extra"],
        [
            {"applied_index": 1},
            [1, 1, 2, 0, 0],
            [["b", "a"], [b"", b""], [1, 1], [1, 1], [1, 1]],
            [],
            [[], [], []],
        ],
        [
            {"applied_index": 1},
            [1, 1, 2, 0, 0],
            [["a", "a"], [b"", b""], [1, 1], [1, 1], [1, 1]],
            [],
            [[], [], []],
        ],
        [{"applied_index": 1}, [1, 1, 1, 0, 0], [["a"], ["str"], [1], [1], [1]], [], [[], [], []]],
        [{"applied_index": 1}, [1, 1, 1, 0, 0], [["a"], [b""], [1], [1]], [], [[], [], []]],
        [{"applied_index": 1}, [1, 1, 1, 0, 0], [["a"], [b""], [1, 2], [1], [1]], [], [[], [], []]],
        [{"applied_index": 1}, [1, 0, 0, 1, 0], [], [[], [], []]],  # meta count mismatch
        [{"applied_index": 1}, [1, 0, 0, 1, 0], [["t", ["k"], ["v"]]], [[], [], []]],
        [{"applied_index": 1}, [1, 0, 0, 0, 1], [], [["h"], [1], [[1]]]],
        [{"applied_index": 1}, [1, 0, 0, 0, 1], [], [["d" * 64], [1], [[1.5]]]],
        [{"applied_index": 1}, [1, 0, 0, 0, 2], [], [["d" * 64, "d" * 64], [1, 1], [[1], [1]]]],
        [{"applied_index": 1}, [1, 0, 0, 0, 0], [], [[], []]],
        [{"applied_index": 1}, [1, -1, 0, 0, 0], [], [[], [], []]],
    ],
)
def test_well_sealed_but_malformed_bodies_are_refused(objects: list[Any]) -> None:
    with pytest.raises(SnapshotError):
        snapshot.load(_reseal(_body(*objects)))


def test_a_hand_built_body_in_the_documented_layout_loads() -> None:
    body = _body(
        {"applied_index": 9},
        [1, 4, 2, 1, 1],
        [["a", "b"], [b"1", b"2"], [1, 3], [1, 2], [1, 4]],
        [["nodes", ["1"], [b"n"]]],
        [["d" * 64], [5], [[1, 2]]],
    )
    state = snapshot.load(_reseal(body))
    assert state.applied_index == 9 and state.revision == 4
    assert state.get("b") == Entry(b"2", 3, 2, 4)
    assert state.meta_get("nodes", "1") == b"n"
    assert state.blob_record("d" * 64) is not None


@pytest.mark.timeout(120)
def test_a_large_state_dumps_and_loads_in_linear_time() -> None:
    state = StateMachine()
    n = 200_000
    value = b"v" * 16
    for start in range(0, n, 1000):
        state.apply_ops(
            [["put", f"user/{i:08d}", value] for i in range(start, start + 1000)], start // 1000 + 1, 1
        )
    t0 = time.perf_counter()
    data = snapshot.dump(state)
    t1 = time.perf_counter()
    again = snapshot.load(data)
    t2 = time.perf_counter()
    assert len(again.kv) == n
    assert again.state_hash() == state.state_hash()
    # Generous bounds (about 10x what a laptop needs): catches quadratic behaviour, not noise.
    assert t1 - t0 < 5.0
    assert t2 - t1 < 8.0
