"""aspen-cli: talk to an Aspen cluster.

Each command group lives in its own module with a `register(subparsers)` function; a
command's handler takes (args, client) and returns what to print (a dict is shown as
`key: value` lines, or as JSON with --json). Errors print one line and exit 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import Any

from aspen.cli import blob, cluster, kv
from aspen.client import Client
from storage.errors import AspenError

GROUPS = (kv, blob, cluster)
DEFAULT_CLUSTER = "127.0.0.1:7701"


def build_parser(groups: tuple[Any, ...] = GROUPS) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="aspen-cli", description="Talk to an Aspen cluster.")
    ap.add_argument("--cluster", default=os.environ.get("ASPEN_CLUSTER", DEFAULT_CLUSTER),
                    help="host:port,... of cluster nodes (env ASPEN_CLUSTER)")
    ap.add_argument("--cookie", default=None, help="cluster secret (env ASPEN_COOKIE)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    sub = ap.add_subparsers(dest="group", required=True)
    for group in groups:
        group.register(sub)
    return ap


def to_jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def human(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return f"<{len(value)} bytes, hex> {value.hex()}"
    if value is None:
        return "-"
    return str(value)


def render(result: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(to_jsonable(result), sort_keys=True)
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        return "\n".join(f"{k}: {human(v)}" for k, v in result.items() if k != "type")
    return human(result)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cookie = args.cookie or os.environ.get("ASPEN_COOKIE") or None
    try:
        client = Client(args.cluster, cookie, args.timeout)
    except ValueError as exc:
        print(f"error: INVALID_REQUEST: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        result = args.handler(args, client)
        if result is not None:
            print(render(result, args.json))
    except AspenError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        sys.exit(1)
    except (OSError, ValueError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        client.close()
