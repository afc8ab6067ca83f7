"""aspen-cli kv get|set|delete|scan|cas|batch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aspen.client import Client


def _get(args: argparse.Namespace, c: Client) -> Any:
    r = c.get(args.key, stale=args.stale)
    if args.json:
        return r
    if not r["was_found"]:
        raise SystemExit(f"error: NOT_FOUND: {args.key}")
    return r["value"]


def _value(args: argparse.Namespace) -> bytes:
    if args.file is not None:
        return Path(args.file).read_bytes()
    if args.value is None:
        raise ValueError("give VALUE or --file")
    return args.value.encode()


def _set(args: argparse.Namespace, c: Client) -> Any:
    r = c.put(args.key, _value(args))
    return r if args.json else f"OK revision={r.get('revision', '-')}"


def _delete(args: argparse.Namespace, c: Client) -> Any:
    r = c.delete(args.key)
    return r if args.json else ("deleted" if r.get("deleted") else "not found")


def _scan(args: argparse.Namespace, c: Client) -> Any:
    if args.all:
        entries = c.scan_all(args.prefix, stale=args.stale)
        token = None
    else:
        page = c.scan(args.prefix, args.limit, args.token, stale=args.stale)
        entries, token = page["entries"], page.get("continuation_token")
    if args.json:
        return {"entries": entries, "continuation_token": token}
    from aspen.cli import human

    lines = [f"{e['key']}\t{human(e['value'])}" for e in entries]
    if token:
        lines.append(f"(more: --token {token})")
    return "\n".join(lines) if lines else "(no keys)"


def _cas(args: argparse.Namespace, c: Client) -> Any:
    expected = None if args.expect_absent else args.expected.encode()
    r = c.cas(args.key, expected, args.new.encode())
    return r if args.json else f"OK revision={r.get('revision', '-')}"


def parse_batch_op(text: str) -> dict[str, Any]:
    """`set:KEY=VALUE` or `del:KEY`."""
    kind, sep, rest = text.partition(":")
    if kind == "set" and sep and "=" in rest:
        key, _, value = rest.partition("=")
        return {"op": "Set", "key": key, "value": value.encode()}
    if kind == "del" and sep and rest:
        return {"op": "Delete", "key": rest}
    raise ValueError(f"batch op {text!r}: use set:KEY=VALUE or del:KEY")


def _batch(args: argparse.Namespace, c: Client) -> Any:
    if args.ops_json:
        ops = [
            {**o, "value": o["value"].encode()} if isinstance(o.get("value"), str) else o
            for o in json.loads(args.ops_json)
        ]
    else:
        ops = [parse_batch_op(t) for t in args.ops]
    r = c.batch(ops)
    return r if args.json else f"OK {r.get('count')} ops revision={r.get('revision')}"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    kv = sub.add_parser("kv", help="key-value operations").add_subparsers(dest="cmd", required=True)
    p = kv.add_parser("get", help="read a key (linearizable unless --stale)")
    p.add_argument("key")
    p.add_argument("--stale", action="store_true", help="serve from the contacted node without a barrier")
    p.set_defaults(handler=_get)
    p = kv.add_parser("set", help="write a key")
    p.add_argument("key")
    p.add_argument("value", nargs="?")
    p.add_argument("--file", help="read the value from a file (binary safe)")
    p.set_defaults(handler=_set)
    p = kv.add_parser("delete", help="delete a key")
    p.add_argument("key")
    p.set_defaults(handler=_delete)
    p = kv.add_parser("scan", help="list keys by prefix")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("--limit", type=int)
    p.add_argument("--token", help="continuation token from a previous page")
    p.add_argument("--all", action="store_true", help="follow continuation tokens to the end")
    p.add_argument("--stale", action="store_true")
    p.set_defaults(handler=_scan)
    p = kv.add_parser("cas", help="compare-and-swap")
    p.add_argument("key")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--expected")
    g.add_argument("--expect-absent", action="store_true")
    p.add_argument("--new", required=True)
    p.set_defaults(handler=_cas)
    p = kv.add_parser("batch", help="atomic batch: set:KEY=VALUE del:KEY ...")
    p.add_argument("ops", nargs="*")
    p.add_argument("--ops-json", help='JSON list of {"op": "Set"|"Delete", "key", "value"}')
    p.set_defaults(handler=_batch)
