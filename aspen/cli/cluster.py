"""aspen-cli cluster status."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from aspen.cli.registry import Commands
from aspen.client import Client
from storage.errors import AspenError

ORDER = 30


def _status(args: argparse.Namespace, c: Client) -> Any:
    st = c.cluster_status()
    if args.json:
        return st
    leader = st.get("leader_id")
    lines = [
        f"node {st['node_id']} answered; leader: {leader if leader is not None else 'none'}",
        f"term {st.get('term')}, commit index {st.get('commit_index')}, applied index {st.get('applied_index')}, "
        f"quorum: {'yes' if st.get('has_quorum') else 'NO'}",
    ]
    for n in st.get("nodes") or []:
        lines.append(
            f"  node {n['node_id']}: {n.get('role', '?'):<9} client={n.get('client_addr') or '-'} "
            f"raft={n.get('raft_addr') or '-'} {'connected' if n.get('connected') else 'DISCONNECTED'}"
        )
    return "\n".join(lines)


def _status_or_watch(args: argparse.Namespace, c: Client) -> Any:
    if not args.watch:
        return _status(args, c)
    # The live picture: redraw every interval, bounded by --count (Ctrl-C stops it too).
    for i in range(args.count):
        if i:
            time.sleep(args.interval)
        try:
            text = _status(args, c)
        except AspenError as exc:
            text = f"error: {exc.code}: {exc.message}"
        print(("\x1b[2J\x1b[H" if sys.stdout.isatty() else "") + (text if isinstance(text, str) else json.dumps(text)),
              flush=True)
    return None


def register(commands: Commands) -> None:
    commands.group("cluster", "cluster state")
    p = commands.command("cluster", "status", _status_or_watch, "nodes, leader, term, commit index")
    p.add_argument("--watch", action="store_true", help="keep showing the live picture")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes with --watch")
    p.add_argument("--count", type=int, default=1_000_000, help="refreshes before exiting with --watch")
