"""aspen-cli cluster status."""

from __future__ import annotations

import argparse
from typing import Any

from aspen.cli.registry import Commands
from aspen.client import Client

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


def register(commands: Commands) -> None:
    commands.group("cluster", "cluster state")
    commands.command("cluster", "status", _status, "nodes, leader, term, commit index")
