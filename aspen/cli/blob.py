"""aspen-cli blob put|get|has."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aspen.client import Client


def _put(args: argparse.Namespace, c: Client) -> Any:
    r = c.put_blob(Path(args.file).read_bytes())
    return r if args.json else f"{r['hash']} ({r['size']} bytes)"


def _get(args: argparse.Namespace, c: Client) -> Any:
    r = c.get_blob(args.hash)
    if not r["found"]:
        raise SystemExit(f"error: BLOB_NOT_FOUND: {args.hash}")
    if args.output:
        Path(args.output).write_bytes(r["data"])
        return None if not args.json else {"hash": args.hash, "size": r["size"], "output": args.output}
    if args.json:
        return r
    sys.stdout.buffer.write(r["data"])
    sys.stdout.flush()
    return None


def _has(args: argparse.Namespace, c: Client) -> Any:
    r = c.has_blob(args.hash)
    return r if args.json else ("yes" if r["exists"] else "no")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    blob = sub.add_parser("blob", help="content-addressed blobs").add_subparsers(dest="cmd", required=True)
    p = blob.add_parser("put", help="store a file; prints its BLAKE3 hash")
    p.add_argument("file")
    p.set_defaults(handler=_put)
    p = blob.add_parser("get", help="fetch a blob by hash")
    p.add_argument("hash")
    p.add_argument("-o", "--output")
    p.set_defaults(handler=_get)
    p = blob.add_parser("has", help="does the cluster hold this blob?")
    p.add_argument("hash")
    p.set_defaults(handler=_has)
