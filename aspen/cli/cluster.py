"""aspen-cli cluster status | health (and its alias endpoint status)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from aspen.cli.connect import Connection
from aspen.cli.output import to_jsonable
from aspen.cli.registry import Commands, Outcome
from aspen.client import Client
from aspen.exits import EXIT_OK, EXIT_UNAVAILABLE
from wire.errors import AspenError

ORDER = 30
PROBE_TIMEOUT_S = 2.0  # per node: a node that cannot answer ClusterStatus in this is down for us


@dataclass(frozen=True)
class Probe:
    """One node's own answer (asked of it alone), or why it gave none."""

    node_id: int
    client_addr: str | None
    status: dict[str, Any] | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        st = self.status or {}
        return {"node_id": self.node_id, "client_addr": self.client_addr, "up": self.status is not None,
                "error": self.error, "role": st.get("role"), "term": st.get("term"),
                "leader_id": st.get("leader_id"), "commit_index": st.get("commit_index"),
                "applied_index": st.get("applied_index"), "has_quorum": st.get("has_quorum"),
                "metrics_addr": st.get("metrics_addr")}


def probe(conn: Connection, node: dict[str, Any]) -> Probe:
    addr = node.get("client_addr")
    if not isinstance(addr, str) or not addr:
        return Probe(node["node_id"], None, None, "client address not known")
    try:
        with conn.client(addr, pin=True, timeout_s=min(PROBE_TIMEOUT_S, conn.timeout_s)) as c:
            return Probe(node["node_id"], addr, c.cluster_status(), None)
    except AspenError as exc:
        return Probe(node["node_id"], addr, None, f"{exc.code}: {exc.message}")


def probe_all(args: argparse.Namespace, st: dict[str, Any]) -> list[Probe]:
    return [probe(args.connection, n) for n in st.get("nodes") or []]


def _node_line(n: dict[str, Any], p: Probe) -> str:
    own = p.status or {}
    state = (f"applied {own.get('applied_index')} term {own.get('term')}" if p.status is not None
             else f"DOWN ({p.error})")
    return (f"  node {n['node_id']}: {n.get('role', '?'):<9} client={n.get('client_addr') or '-'} "
            f"raft={n.get('raft_addr') or '-'} metrics={own.get('metrics_addr') or '-'} "
            f"{'connected' if n.get('connected') else 'DISCONNECTED'}, {state}")


def _status(args: argparse.Namespace, c: Client) -> Outcome:
    st = c.cluster_status()
    # A node pinned with --node/--endpoint describes itself; the members' own figures are
    # asked of each member (the answering node only knows its own applied index).
    probes = probe_all(args, st)
    status = EXIT_OK if st.get("has_quorum") else EXIT_UNAVAILABLE
    if args.json:
        return Outcome({**st, "members": [p.to_json() for p in probes]}, status)
    leader = st.get("leader_id")
    lines = [
        f"node {st['node_id']} answered; leader: {leader if leader is not None else 'none'}",
        f"term {st.get('term')}, commit index {st.get('commit_index')}, applied index "
        f"{st.get('applied_index')}, "
        f"quorum: {'yes' if st.get('has_quorum') else 'NO'}",
    ]
    by_id = {p.node_id: p for p in probes}
    lines += [_node_line(n, by_id[n["node_id"]]) for n in st.get("nodes") or []]
    return Outcome("\n".join(lines), status)


def _status_or_watch(args: argparse.Namespace, c: Client) -> Any:
    if not args.watch:
        return _status(args, c)
    # The live picture: redraw every interval, bounded by --count (Ctrl-C stops it: 130).
    for i in range(args.count):
        if i:
            time.sleep(args.interval)
        try:
            shown = _status(args, c).result
            text = json.dumps(to_jsonable(shown), sort_keys=True) if args.json else shown
        except AspenError as exc:
            text = f"error: {exc.code}: {exc.message}"
        print(("\x1b[2J\x1b[H" if sys.stdout.isatty() else "") + text, flush=True)
    return None


def _health(args: argparse.Namespace, c: Client) -> Outcome:
    """Every member asked on its own: healthy when each answers and has a quorum."""
    st = c.cluster_status()
    probes = probe_all(args, st)
    healthy = bool(probes) and all(p.status is not None and p.status.get("has_quorum") for p in probes)
    status = EXIT_OK if healthy else EXIT_UNAVAILABLE
    if args.json:
        return Outcome({"healthy": healthy, "nodes": [p.to_json() for p in probes]}, status)
    lines = []
    for p in probes:
        if p.status is None:
            lines.append(f"node {p.node_id} {p.client_addr or '-'}: DOWN: {p.error}")
        else:
            quorum = "ok" if p.status.get("has_quorum") else "NO QUORUM"
            lines.append(f"node {p.node_id} {p.client_addr}: {quorum}, {p.status.get('role')}, "
                         f"applied {p.status.get('applied_index')}, leader {p.status.get('leader_id')}")
    lines.append("healthy" if healthy else "UNHEALTHY")
    return Outcome("\n".join(lines), status)


def register(commands: Commands) -> None:
    commands.group("cluster", "cluster state")
    p = commands.command("cluster", "status", _status_or_watch,
                         "nodes, leader, term, each node's applied index; exit 3 without quorum")
    p.add_argument("--watch", action="store_true", help="keep showing the live picture")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes with --watch")
    p.add_argument("--count", type=int, default=1_000_000, help="refreshes before exiting with --watch")
    health = "ask every node; exit 3 when any is down or has no quorum"
    commands.command("cluster", "health", _health, health)
    commands.group("endpoint", "per-endpoint checks (etcdctl's name)")
    commands.command("endpoint", "status", _health, health + " (cluster health)")
