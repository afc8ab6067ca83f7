"""The canonical encoding of a state: what state_hash hashes and what a snapshot stores.

A stream of msgpack objects, so neither side needs the whole state as one object in memory:

    header   [CODEC_VERSION, revision, kv_count, meta_row_count, blob_count]
    kv       [keys, values, versions, create_revisions, mod_revisions] per KV_CHUNK_ENTRIES keys,
             keys ascending (columns, because msgpack packs a list of scalars in C)
    meta     [[table, [keys], [values]], ...] tables and keys ascending, no empty tables
    blobs    [[hashes], [sizes], [[holder, ...], ...]] hashes and holders ascending

Equal states give equal bytes, so two nodes compare states by comparing hashes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

import msgpack

from storage.hashing import is_blob_hash
from storage.kv import KvStore, Row

CODEC_VERSION = 1
KV_CHUNK_ENTRIES = 4096


class CodecError(ValueError):
    """The stream is not a state this codec wrote."""


def encode_state(
    revision: int, kv: KvStore, meta: Mapping[str, Mapping[str, bytes]], blobs: Mapping[str, Any]
) -> Iterator[bytes]:
    pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
    meta_rows = sum(len(rows) for rows in meta.values())
    yield pack([CODEC_VERSION, revision, len(kv), meta_rows, len(blobs)])
    rows = kv.rows()
    while chunk := list(islice(rows, KV_CHUNK_ENTRIES)):
        keys = [k for k, _ in chunk]
        values, versions, creates, mods = (list(col) for col in zip(*(r for _, r in chunk), strict=True))
        yield pack([keys, values, versions, creates, mods])
    tables = []
    for table in sorted(meta):
        rows = sorted(meta[table].items())
        if rows:
            tables.append([table, [k for k, _ in rows], [v for _, v in rows]])
    yield pack(tables)
    hashes = sorted(blobs)
    records = [blobs[h] for h in hashes]
    yield pack([hashes, [r.size for r in records], [sorted(r.holders) for r in records]])


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise CodecError(f"state encoding: {what}")


def _all_of(items: list[Any], kind: type) -> bool:
    return all(type(x) is kind for x in items)


def decode_state(
    objects: Iterator[Any],
) -> tuple[int, KvStore, dict[str, dict[str, bytes]], dict[str, tuple[int, frozenset[int]]]]:
    """(revision, kv, meta, blobs as hash -> (size, holders)) from encode_state's objects.

    Raises CodecError when the objects are not a well-formed state. The encoding is under a
    checksum, so this guards against bugs and truncation more than against an attacker.
    """
    try:
        header = next(objects)
        _check(type(header) is list and len(header) == 5 and _all_of(header, int), "bad header")
        version, revision, kv_count, meta_rows, blob_count = header
        _check(version == CODEC_VERSION, f"codec version {version} is not {CODEC_VERSION}")
        _check(min(header) >= 0, "negative count")

        data: dict[str, Row] = {}
        last_key: str | None = None
        while len(data) < kv_count:
            chunk = next(objects)
            _check(type(chunk) is list and len(chunk) == 5 and _all_of(chunk, list), "bad kv chunk")
            keys, values, versions, creates, mods = chunk
            n = len(keys)
            _check(0 < n <= kv_count - len(data), "kv chunk overruns the count")
            _check(all(len(col) == n for col in chunk), "kv columns of unequal length")
            _check(_all_of(keys, str) and _all_of(values, bytes), "kv key or value of the wrong type")
            _check(_all_of(versions, int) and _all_of(creates, int) and _all_of(mods, int), "kv numbers")
            _check(last_key is None or last_key < keys[0], "kv keys out of order")
            _check(
                all(a < b for a, b in zip(keys, islice(keys, 1, None), strict=False)), "kv keys out of order"
            )
            last_key = keys[-1]
            data.update(zip(keys, zip(values, versions, creates, mods, strict=True), strict=True))

        tables = next(objects)
        _check(type(tables) is list, "bad meta")
        meta: dict[str, dict[str, bytes]] = {}
        for table in tables:
            _check(type(table) is list and len(table) == 3 and type(table[0]) is str, "bad meta table")
            name, keys, values = table
            _check(type(keys) is list and type(values) is list and len(keys) == len(values) > 0, "bad rows")
            _check(_all_of(keys, str) and _all_of(values, bytes) and name not in meta, "bad meta rows")
            meta[name] = dict(zip(keys, values, strict=True))
        _check(sum(len(rows) for rows in meta.values()) == meta_rows, "meta row count")

        blob_columns = next(objects)
        _check(
            type(blob_columns) is list and len(blob_columns) == 3 and _all_of(blob_columns, list), "bad blobs"
        )
        hashes, sizes, holders = blob_columns
        _check(len(hashes) == len(sizes) == len(holders) == blob_count, "blob count")
        _check(all(map(is_blob_hash, hashes)), "blob hash")
        _check(_all_of(sizes, int) and _all_of(holders, list), "blob field types")
        _check(all(_all_of(h, int) for h in holders), "blob holder types")
        blobs = {h: (size, frozenset(nodes)) for h, size, nodes in zip(hashes, sizes, holders, strict=True)}
        _check(len(blobs) == blob_count, "duplicate blob hash")
    except StopIteration:
        raise CodecError("state encoding: truncated") from None
    except CodecError:
        raise
    except Exception as exc:  # msgpack's own errors, and anything unforeseen in bad input
        raise CodecError(f"state encoding: {exc}") from exc
    return revision, KvStore.from_rows(data), meta, blobs
