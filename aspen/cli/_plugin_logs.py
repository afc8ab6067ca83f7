"""`aspen-cli plugin logs NAME [--node N] [--follow] [--since WHEN]`: a plugin's recent log
lines from every node (each node keeps its own, aspen/plugins/logring.py), merged by time."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from aspen.cli.output import to_jsonable
from aspen.cli.registry import UsageError
from aspen.client import Client

FOLLOW_POLL_S = 1.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)\Z")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def since_ms(text: str, now_ms: int) -> int:
    """`--since`: a duration back from now (90s, 10m, 2h, 1d) or an ISO 8601 time (UTC unless
    it says otherwise), as wall-clock milliseconds."""
    match = _DURATION.match(text.strip())
    if match:
        return max(0, now_ms - int(float(match.group(1)) * _UNIT_MS[match.group(2)]))
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: a duration (90s, 10m, 2h, 1d) or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0, int(when.timestamp() * 1000))


def format_line(node: str, line: dict[str, Any]) -> str:
    stamp = datetime.fromtimestamp(line["time_ms"] / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{stamp} node{node} {line['level']:<5} {line['message']}"


def merged(nodes: dict[str, Any], as_json: bool = False) -> list[str]:
    """Every node's lines, oldest first (by time, then node, then line number); with as_json
    one JSON object per line (node, time_ms, seq, level, message), for --follow --json."""
    rows = [
        (
            ln["time_ms"],
            int(n),
            ln["seq"],
            json.dumps({"node": int(n), **to_jsonable(ln)}, sort_keys=True)
            if as_json
            else format_line(n, ln),
        )
        for n, st in nodes.items()
        for ln in st.get("lines", [])
    ]
    return [text for *_, text in sorted(rows)]


def notes(nodes: dict[str, Any]) -> list[str]:
    """What the lines do not show: unreachable nodes and lines that were dropped."""
    out = []
    for n, st in sorted(nodes.items(), key=lambda kv: int(kv[0])):
        if "error" in st:
            out.append(f"node{n}: unreachable: {st['error']}")
            continue
        dropped = [f"{st[k]} {what}" for k, what in (
            ("rate_dropped_lines", "dropped by the rate limit"),
            ("evicted_lines", "pushed out of the node's ring"),
            ("skipped_lines", "older, not shown (--limit)")) if st.get(k)]
        if dropped:
            out.append(f"node{n}: lines {', '.join(dropped)}")
    return out


def run(args: argparse.Namespace, c: Client, out: TextIO = sys.stdout) -> Any:
    fields: dict[str, Any] = {"name": args.name, "limit": args.limit}
    if args.node is not None:
        fields["node"] = args.node
    if args.since:
        fields["since_ms"] = since_ms(args.since, int(time.time() * 1000))
    r = c.request("PluginLogs", **fields)
    if not args.follow:
        if args.json:
            return r
        return "\n".join([*merged(r["nodes"]), *(f"# {n}" for n in notes(r["nodes"]))]) or "(no log lines)"
    after: dict[str, int] = {}
    while True:  # until interrupted: Ctrl-C ends it with status 130, as every command
        for line in merged(r["nodes"], args.json):
            print(line, file=out, flush=True)
        for n, st in r["nodes"].items():
            last = st.get("last_seq")
            if isinstance(last, int):
                # A node that restarted numbers from 1 again: take its lines from the start.
                after[n] = last if last >= after.get(n, 0) else 0
        time.sleep(FOLLOW_POLL_S)
        r = c.request("PluginLogs", **{**fields, "after": after})
