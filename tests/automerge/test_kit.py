"""The plugin in the test kit (real sandbox, in-memory host): its bounds, and logs longer than
one scan page. Chunks here are made by hand with valid checksums: the plugin never reads ops,
so these exercise exactly what it checks (the real client's chunks are in the other files)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aspen import automerge
from aspen.testing import PluginHarness

PUSH_MAX_BYTES = 32 * 1024 * 1024
PAGE_SLOTS = 100


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def chunk(body: bytes, chunk_type: int = 1) -> bytes:
    hashed = bytes([chunk_type]) + uleb(len(body)) + body
    return automerge.MAGIC + hashlib.sha256(hashed).digest()[:4] + hashed


def change(actor: bytes, seq: int, deps: tuple[bytes, ...] = (), filler: bytes = b"\x00\x00\x00") -> bytes:
    body = uleb(len(deps)) + b"".join(deps) + uleb(len(actor)) + actor + uleb(seq) + filler
    return chunk(body)


def hash_of(c: bytes) -> bytes:
    return hashlib.sha256(c[8:]).digest()  # type byte to the end of the body


def padded_length(c: bytes) -> bytes:
    """The same chunk with its (one-byte) length written in two bytes, checksum recomputed."""
    body = c[10:]
    hashed = c[8:9] + bytes([0x80 | c[9], 0x00]) + body
    return automerge.MAGIC + hashlib.sha256(hashed).digest()[:4] + hashed


@pytest.fixture
def kit(automerge_wasm: Path) -> Iterator[PluginHarness]:
    with PluginHarness.load(automerge_wasm, json.loads(automerge.MANIFEST.read_text())) as h:
        yield h


def test_a_log_longer_than_one_scan_page(kit: PluginHarness) -> None:
    # One change per push: one slot each, so 250 slots span three scan pages.
    chain = []
    for seq in range(1, 251):
        c = change(b"\x01\x02", seq, (hash_of(chain[-1]),) if chain else ())
        r = kit.request("AmPush", doc="long", changes=c)
        assert r["stored"] == 1, r
        chain.append(c)
    assert sum(k.startswith("automerge:log:long:") for k in kit.kv) == 250 > 2 * PAGE_SLOTS
    r = kit.request("AmHeads", doc="long")
    assert (r["heads"], r["changes"], r["pending"]) == ([hash_of(chain[-1]).hex()], 250, 0)
    assert kit.request("AmPull", doc="long")["changes"] == b"".join(chain)
    r = kit.request("AmPull", doc="long", heads=[hash_of(chain[199]).hex()])
    assert r["changes"] == b"".join(chain[200:])
    assert kit.request("AmDeleteDoc", doc="long")["keys_deleted"] == 251
    assert not any(k.startswith("automerge:") for k in kit.kv)


def test_the_biggest_push_is_stored_as_a_blob_and_pulled(kit: PluginHarness) -> None:
    big = change(b"\x07", 1, filler=os.urandom(PUSH_MAX_BYTES - 64))
    assert len(big) <= PUSH_MAX_BYTES
    r = kit.request("AmPush", doc="big", changes=big)
    assert (r["stored"], r["rejected"]) == (1, 0), r
    assert len(kit.blobs) == 1
    assert kit.request("AmPull", doc="big")["changes"] == big
    r = kit.request("AmPush", doc="big", changes=big + b"x" * 64)
    assert r["code"] == "INVALID_REQUEST" and "at most" in r["message"]


@pytest.mark.parametrize(("data", "code"), [
    (chunk(b"\x00\x01\x01\x01", chunk_type=2), "COMPRESSED_UNSUPPORTED"),
    (chunk(b"\x00\x01\x01\x01", chunk_type=0), "DOCUMENT_CHUNK"),
    (chunk(b"\x00\x01\x01\x01", chunk_type=3), "BUNDLE_CHUNK"),
    (chunk(b"\x00\x01\x01\x01", chunk_type=9), "UNKNOWN_CHUNK_TYPE"),
    (chunk(uleb(1025) + bytes(32 * 1025) + b"\x01\x01\x01"), "TOO_MANY_DEPS"),
    (chunk(b"\x00" + uleb(129) + bytes(129) + b"\x01"), "INVALID_CHANGE"),
    (chunk(b"\x00\x01\x01\x00"), "INVALID_CHANGE"),  # seq 0
    (change(b"\x01", 1)[:-1], "TRUNCATED"),
    (padded_length(change(b"\x01", 1)), "INVALID_CHANGE"),
])
def test_refused_chunks(kit: PluginHarness, data: bytes, code: str) -> None:
    r = kit.request("AmPush", doc="refused", changes=data)
    assert (r["stored"], r["rejected"], [e["code"] for e in r["errors"]]) == (0, 1, [code]), r


def test_answers_cut_their_lists_but_count_everything(kit: PluginHarness) -> None:
    # 150 bad chunks: all counted, the first 100 described.
    bad = bytearray(change(b"\x01", 1))
    bad[4] ^= 0xFF
    r = kit.request("AmPush", doc="cut", changes=bytes(bad) * 150)
    assert (r["rejected"], len(r["errors"])) == (150, 100)


def test_missing_deps_are_cut_at_a_thousand(kit: PluginHarness) -> None:
    deps = tuple(bytes([i % 256, i // 256]) * 16 for i in range(1024))  # 1,024 absent changes
    r = kit.request("AmPush", doc="orphan", changes=change(b"\x01", 1, tuple(sorted(deps))))
    assert (r["stored"], r["pending"], len(r["missing_deps"]), r["heads"]) == (1, 1, 1000, [])
    assert kit.request("AmPull", doc="orphan")["count"] == 0  # held back


def test_a_list_of_docs_is_cut_at_ten_thousand(kit: PluginHarness) -> None:
    for i in range(10_001):
        kit.kv[f"automerge:doc:d{i:05}"] = b""
    r = kit.request("AmListDocs")
    assert (len(r["docs"]), r["truncated"]) == (10_000, True)
    r = kit.request("AmListDocs", prefix="d0999")
    assert (len(r["docs"]), r["truncated"]) == (10, False)


def test_segments_stay_under_their_bound(kit: PluginHarness) -> None:
    many = b"".join(change(b"\x05", seq, filler=os.urandom(1000)) for seq in range(1, 301))
    assert kit.request("AmPush", doc="segments", changes=many)["stored"] == 300
    segments = [v for k, v in kit.kv.items() if k.startswith("automerge:log:segments:")]
    assert len(segments) > 1 and all(len(v) <= 64 * 1024 for v in segments)
