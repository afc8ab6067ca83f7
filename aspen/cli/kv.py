"""aspen-cli kv get|set|delete|scan|cas|batch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aspen.cli.output import from_json, human, to_jsonable
from aspen.cli.registry import Commands, Outcome, UsageError
from aspen.client import Client
from aspen.exits import EXIT_ERROR
from wire.errors import AspenError, ErrorCode
from wire.limits import BATCH_OPS_MAX, SCAN_LIMIT_MAX

ORDER = 10
STDIN = "-"


def read_input(path: str) -> bytes:
    """A file's bytes, or standard input's for `-`."""
    return sys.stdin.buffer.read() if path == STDIN else Path(path).read_bytes()


def _get(args: argparse.Namespace, c: Client) -> Any:
    r = c.get(args.key, stale=args.stale)
    if not r["was_found"]:
        if args.json:
            return Outcome(r, EXIT_ERROR)  # the answer is printed; the status says it is missing
        raise AspenError(ErrorCode.NOT_FOUND, f"no key {args.key!r}")
    if args.output:
        Path(args.output).write_bytes(r["value"])
        return {"key": args.key, "size": len(r["value"]), "output": args.output} if args.json else None
    if args.raw:
        sys.stdout.buffer.write(r["value"])  # the bytes as stored, no newline: for `> file` and pipes
        sys.stdout.flush()
        return None
    return r if args.json else r["value"]


def _value(args: argparse.Namespace) -> bytes:
    """VALUE, or --file FILE; `-` for either reads standard input."""
    if args.file is not None and args.value is not None:
        raise UsageError("give VALUE or --file, not both")
    if args.file is not None:
        return read_input(args.file)
    if args.value is None:
        raise UsageError("give VALUE or --file")
    return read_input(STDIN) if args.value == STDIN else args.value.encode()


def _set(args: argparse.Namespace, c: Client) -> Any:
    if args.lease is not None and not 0 < args.lease < 2**63:
        raise UsageError("--lease: a lease id from `aspen-cli lease grant`")
    r = c.put(args.key, _value(args), lease=args.lease)
    if args.json:
        return r
    # A plugin owning the key's namespace may answer without a revision, and with a value
    # (kv-counter answers the new count).
    return " ".join(["OK", *(f"{k}={human(r[k])}" for k in ("revision", "value") if k in r)])


def _delete(args: argparse.Namespace, c: Client) -> Any:
    if args.prefix:
        r = c.delete_prefix(args.key)
        if not r["deleted"]:  # as for one key: nothing there is status 1
            if args.json:
                return Outcome(r, EXIT_ERROR)
            raise AspenError(ErrorCode.NOT_FOUND, f"no keys with prefix {args.key!r} (nothing deleted)")
        return r if args.json else f"deleted {r['deleted']}"
    r = c.delete(args.key)
    if not r.get("deleted"):
        # As `kv get`: a key that was not there is status 1, so a script can tell.
        if args.json:
            return Outcome(r, EXIT_ERROR)
        raise AspenError(ErrorCode.NOT_FOUND, f"no key {args.key!r} (nothing deleted)")
    return r if args.json else "deleted"


def _scan(args: argparse.Namespace, c: Client) -> Any:
    if args.limit is not None and not 1 <= args.limit <= SCAN_LIMIT_MAX:
        raise UsageError(f"--limit must be from 1 to {SCAN_LIMIT_MAX}")
    if args.count:
        # Every page, counted here: the node has no count-only request (yet), so values travel.
        n = len(c.scan_all(args.prefix, stale=args.stale))
        return {"count": n} if args.json else str(n)
    if args.all:
        entries = c.scan_all(args.prefix, stale=args.stale)
        token = None
    else:
        page = c.scan(args.prefix, args.limit, args.token, stale=args.stale)
        entries, token = page["entries"], page.get("continuation_token")
    if args.json:
        if args.keys_only:
            return {"keys": [e["key"] for e in entries], "continuation_token": token}
        return {"entries": entries, "continuation_token": token}
    lines = [e["key"] if args.keys_only else f"{e['key']}\t{human(e['value'])}" for e in entries]
    if token:
        lines.append(f"(more: --token {token}, or --all)")
    return "\n".join(lines) if lines else "(no keys)"


def _one_of(text: str | None, path: str | None, what: str) -> bytes:
    if (text is None) == (path is None):
        raise UsageError(f"give {what} or its file, one of them")
    return read_input(path) if path is not None else str(text).encode()


def _cas(args: argparse.Namespace, c: Client) -> Any:
    if args.expected_file == STDIN and args.file == STDIN:
        raise UsageError("only one of --expected-file and --file can read standard input")
    expected = None if args.expect_absent else _one_of(args.expected, args.expected_file, "--expected")
    r = c.cas(args.key, expected, _one_of(args.new, args.file, "--new"))
    return r if args.json else f"OK revision={r.get('revision', '-')}"


def parse_batch_op(text: str) -> dict[str, Any]:
    """`set:KEY=VALUE` (the key ends at the first `=`) or `del:KEY`."""
    kind, sep, rest = text.partition(":")
    if kind == "set" and sep and "=" in rest:
        key, _, value = rest.partition("=")
        if key:
            return {"op": "Set", "key": key, "value": value.encode()}
    if kind == "del" and sep and rest:
        return {"op": "Delete", "key": rest}
    raise UsageError(f"batch op {text!r}: use set:KEY=VALUE or del:KEY")


def parse_json_ops(text: str) -> list[dict[str, Any]]:
    """A JSON list of {"op": "Set"|"Delete", "key", "value"?}; string values are sent as UTF-8,
    {"base64": ".."} as those bytes (invalid base64 is a usage error, never an empty value)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--ops-json: {exc}") from None
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise UsageError("--ops-json: expected a JSON list of objects")
    ops = from_json(raw)
    return [{**o, "value": o["value"].encode()} if isinstance(o.get("value"), str) else o for o in ops]


def _batch(args: argparse.Namespace, c: Client) -> Any:
    if args.ops_json is not None and args.ops:
        raise UsageError("give ops as arguments or --ops-json, not both")
    ops = (
        parse_json_ops(args.ops_json) if args.ops_json is not None else [parse_batch_op(t) for t in args.ops]
    )
    if not 1 <= len(ops) <= BATCH_OPS_MAX:
        raise UsageError(f"a batch holds 1 to {BATCH_OPS_MAX} ops")
    r = c.batch(ops)
    return r if args.json else f"OK {r.get('count')} ops revision={r.get('revision')}"


WATCH_PROGRESS_MS_MAX = 600_000


def _watch(args: argparse.Namespace, c: Client) -> Any:
    """Print each event as it comes, until Ctrl-C (130), --count events, or an error that says
    where to resume (--rev)."""
    if args.rev < 0:
        raise UsageError("--rev must be 0 (from now) or a revision")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be positive")
    if args.progress_ms and not 50 <= args.progress_ms <= WATCH_PROGRESS_MS_MAX:
        raise UsageError(f"--progress-ms must be 0 (off) or 50 to {WATCH_PROGRESS_MS_MAX}")
    target = {"key": args.prefix} if args.exact else {"prefix": args.prefix}
    seen = 0
    events = c.watch(**target, start_revision=args.rev, progress_ms=args.progress_ms)
    try:
        for event in events:
            if args.json:
                print(json.dumps(to_jsonable(event), sort_keys=True), flush=True)
            elif event["type"] == "PROGRESS":
                print(f"PROGRESS revision={event['revision']}", flush=True)
            elif event["type"] == "PUT":
                print(f"PUT {event['key']} {human(event['value'])} revision={event['mod_revision']}",
                      flush=True)
            else:
                print(f"DELETE {event['key']} revision={event['mod_revision']}", flush=True)
            if event["type"] != "PROGRESS":
                seen += 1
                if args.count is not None and seen >= args.count:
                    return None
    except AspenError as exc:
        details = exc.error.details
        where = (
            details.get("oldest_revision")
            if exc.code == ErrorCode.COMPACTED
            else details.get("resume_revision")
        )
        hint = f" (watch again with --rev {where})" if isinstance(where, int) else ""
        raise AspenError(exc.code, exc.message + hint, **details) from None
    finally:
        events.close()
    return None


def register(commands: Commands) -> None:
    commands.group("kv", "key-value operations")
    p = commands.command("kv", "get", _get, "read a key (linearizable unless --stale); exit 1 if missing")
    p.add_argument("key")
    p.add_argument(
        "--stale", action="store_true", help="serve from the contacted node without a read barrier"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--raw", action="store_true", help="write the value's bytes to stdout as stored (no newline)"
    )
    out.add_argument("-o", "--output", metavar="FILE", help="write the value's bytes to FILE")
    p = commands.command("kv", "set", _set, "write a key")
    p.add_argument("key")
    p.add_argument("value", nargs="?", help="the value as text; - reads standard input (binary safe)")
    p.add_argument("--file", help="read the value from a file, - for standard input (binary safe)")
    p.add_argument(
        "--lease",
        type=int,
        metavar="ID",
        help="attach the key to a lease (aspen-cli lease grant): it is deleted when the lease goes",
    )
    p = commands.command(
        "kv",
        "delete",
        _delete,
        "delete a key, or with --prefix every key starting with KEY; exit 1 if nothing was there",
    )
    p.add_argument("key", help='the key; with --prefix the prefix ("" for every key)')
    p.add_argument(
        "--prefix",
        action="store_true",
        help="delete every key starting with KEY, 1,000 per log entry (not atomic across entries); "
        "prints how many",
    )
    p = commands.command("kv", "scan", _scan, "list keys by prefix, in key order")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("--limit", type=int, help=f"keys per page (default 1000, at most {SCAN_LIMIT_MAX})")
    p.add_argument("--token", help="continuation token from a previous page")
    p.add_argument("--all", action="store_true", help="follow continuation tokens to the end")
    p.add_argument(
        "--stale", action="store_true", help="serve from the contacted node without a read barrier"
    )
    p.add_argument("--keys-only", action="store_true", help="the keys, without their values")
    p.add_argument("--count", action="store_true", help="how many keys the prefix holds (every page)")
    p = commands.command(
        "kv",
        "watch",
        _watch,
        "print puts and deletes under PREFIX as they commit, in revision order, until Ctrl-C",
    )
    p.add_argument("prefix", metavar="PREFIX", help='the prefix ("" for every key), or the key with --exact')
    p.add_argument("--exact", action="store_true", help="watch exactly this key, not a prefix")
    p.add_argument(
        "--rev",
        type=int,
        default=0,
        metavar="N",
        help="from revision N (0: from now); older than the node keeps: COMPACTED",
    )
    p.add_argument("--count", type=int, metavar="N", help="exit after N events")
    p.add_argument(
        "--progress-ms",
        type=int,
        default=0,
        metavar="MS",
        help="print PROGRESS revision=R when nothing happened for MS (every event up to R was shown)",
    )
    p = commands.command("kv", "cas", _cas, "compare-and-swap")
    p.add_argument("key")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--expected", help="the value the key must hold")
    g.add_argument("--expected-file", metavar="FILE", help="... read from FILE (- for stdin)")
    g.add_argument("--expect-absent", action="store_true", help="the key must not exist")
    new = p.add_mutually_exclusive_group(required=True)
    new.add_argument("--new", help="the value to write")
    new.add_argument("--file", metavar="FILE", help="the value to write, read from FILE (- for stdin)")
    p = commands.command("kv", "batch", _batch, "atomic batch: set:KEY=VALUE del:KEY ...")
    p.add_argument("ops", nargs="*", metavar="OP")
    p.add_argument("--ops-json", help='JSON list of {"op": "Set"|"Delete", "key", "value"}')
