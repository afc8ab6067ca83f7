"""aspen-cli blob put|get|has."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aspen.cli.registry import Commands
from aspen.client import Client
from wire.errors import AspenError, ErrorCode

ORDER = 20


def _put(args: argparse.Namespace, c: Client) -> Any:
    r = c.put_blob(Path(args.file).read_bytes())
    return r if args.json else f"{r['hash']} ({r['size']} bytes)"


def _get(args: argparse.Namespace, c: Client) -> Any:
    r = c.get_blob(args.hash)
    if not r.get("found"):
        raise AspenError(ErrorCode.BLOB_NOT_FOUND, f"no blob {args.hash}")
    if args.output:
        Path(args.output).write_bytes(r["data"])
        return {"hash": args.hash, "size": r["size"], "output": args.output} if args.json else None
    if args.json:
        return r
    sys.stdout.buffer.write(r["data"])  # raw bytes, for `> file` and pipes
    sys.stdout.flush()
    return None


def _has(args: argparse.Namespace, c: Client) -> Any:
    r = c.has_blob(args.hash)
    return r if args.json else ("yes" if r["exists"] else "no")


def register(commands: Commands) -> None:
    commands.group("blob", "content-addressed blobs")
    p = commands.command("blob", "put", _put, "store a file; prints its BLAKE3 hash")
    p.add_argument("file")
    p = commands.command("blob", "get", _get, "fetch a blob by hash (raw bytes to stdout, or -o FILE)")
    p.add_argument("hash")
    p.add_argument("-o", "--output", metavar="FILE")
    p = commands.command("blob", "has", _has, "does the cluster hold this blob?")
    p.add_argument("hash")
