"""aspen-cli snapshot save FILE | status FILE.

`save` streams a consistent snapshot from one node (the leader, or the node given with --node
or --endpoint) in chunks, checks the BLAKE3 the node named for the whole file, and only then
moves it into place; `status` checks a file and describes it. `aspen-node --restore FILE`
starts a member from it (docs/OPERATIONS.md).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import blake3

from aspen.cli.registry import Commands
from aspen.client import Client
from wire.errors import AspenError, ErrorCode

ORDER = 35
CHUNKS_MAX = 1_000_000  # 4 TiB at 4 MiB each: a node that never says "done" still ends the loop


def save(c: Client, path: Path) -> dict[str, Any]:
    begin = c.request("SnapshotBegin")
    size_bytes, want = begin["size_bytes"], begin["blake3"]
    tmp = path.with_name(path.name + ".part")
    hasher = blake3.blake3()
    offset = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds every value
        with open(fd, "wb") as f:
            for _ in range(CHUNKS_MAX):
                chunk = c.request("SnapshotChunk", snapshot_id=begin["snapshot_id"], offset=offset)
                data = chunk["data"]
                if (
                    chunk["offset"] != offset
                    or not isinstance(data, bytes)
                    or (not data and not chunk["done"])
                ):
                    raise AspenError(
                        ErrorCode.SNAPSHOT_CORRUPT, f"node {begin['node_id']} sent a chunk out of order"
                    )
                f.write(data)
                hasher.update(data)
                offset += len(data)
                if chunk["done"]:
                    break
            f.flush()
            os.fsync(f.fileno())
        if offset != size_bytes or hasher.hexdigest() != want:
            raise AspenError(
                ErrorCode.SNAPSHOT_CORRUPT,
                f"received {offset} bytes with BLAKE3 {hasher.hexdigest()}; node "
                f"{begin['node_id']} announced {size_bytes} bytes with {want}",
            )
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {
        "file": str(path),
        "node_id": begin["node_id"],
        "size_bytes": size_bytes,
        "blake3": want,
        "applied_index": begin["applied_index"],
        "revision": begin["revision"],
        "keys": begin["keys"],
    }


def describe(path: Path) -> dict[str, Any]:
    # Reading a snapshot file needs storage's state machine: loaded here, by the two snapshot
    # commands only, so every other command runs without the server stack.
    from aspen.maintenance import load_snapshot_file

    state = load_snapshot_file(path)
    return {
        "file": str(path),
        "applied_index": state.applied_index,
        "revision": state.revision,
        "keys": len(state.kv),
        "state_hash": state.state_hash(),
    }


def _save(args: argparse.Namespace, c: Client) -> Any:
    r = save(c, Path(args.file))
    if args.json:
        return r
    return (
        f"saved {r['file']}: {r['size_bytes']} bytes from node {r['node_id']}, revision {r['revision']}, "
        f"{r['keys']} keys, applied index {r['applied_index']}, blake3 {r['blake3']}"
    )


def _status(args: argparse.Namespace, c: Client) -> Any:
    r = describe(Path(args.file))
    if args.json:
        return r
    return f"{r['file']}: ok, revision {r['revision']}, {r['keys']} keys, applied index {r['applied_index']}"


def register(commands: Commands) -> None:
    commands.group("snapshot", "save a consistent snapshot; check one (restore: aspen-node --restore FILE)")
    p = commands.command(
        "snapshot",
        "save",
        _save,
        "stream a consistent snapshot from a node into FILE (BLAKE3 checked; every key and "
        "credential hash: keep it private)",
    )
    p.add_argument("file", metavar="FILE")
    p = commands.command(
        "snapshot", "status", _status, "check a snapshot file's BLAKE3 and describe it (offline)"
    )
    p.add_argument("file", metavar="FILE")
