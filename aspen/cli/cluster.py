"""aspen-cli cluster status."""

from __future__ import annotations

import argparse
from typing import Any

from aspen.client import Client


def _status(args: argparse.Namespace, c: Client) -> Any:
    st = c.cluster_status()
    if args.json:
        return st
    lines = [
        f"node {st['node_id']} ({st['role']}), leader: {st['leader_id'] if st['leader_id'] is not None else 'none'}",
        f"term {st['term']}, commit index {st['commit_index']}, applied index {st['applied_index']}, "
        f"quorum: {'yes' if st['has_quorum'] else 'NO'}",
    ]
    for n in st["nodes"]:
        lines.append(
            f"  node {n['node_id']}: {n['role']:<8} client={n['client_addr'] or '-'} raft={n['raft_addr']}"
            f" {'connected' if n['connected'] else 'DISCONNECTED'}"
        )
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cl = sub.add_parser("cluster", help="cluster state").add_subparsers(dest="cmd", required=True)
    p = cl.add_parser("status", help="nodes, leader, term, commit index")
    p.set_defaults(handler=_status)
