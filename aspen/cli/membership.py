"""aspen-cli cluster add-node | remove-node (one membership change at a time)."""

from __future__ import annotations

import argparse
from typing import Any

from aspen.cli.registry import Commands
from aspen.client import Client

ORDER = 31


def _add(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("AddNode", node_id=args.node_id, raft_addr=args.raft, client_addr=args.client)
    return r if args.json else f"node {r['added']} added ({r['raft_addr']})"


def _remove(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("RemoveNode", node_id=args.node_id)
    return r if args.json else f"node {r['removed']} removed"


def register(commands: Commands) -> None:
    commands.group("cluster", "cluster state")
    p = commands.command(
        "cluster", "add-node", _add, "add a started node as a member (start it with the members as --peers)"
    )
    p.add_argument("--node-id", type=int, required=True)
    p.add_argument("--raft", required=True, help="its Raft address host:port")
    p.add_argument("--client", required=True, help="its client address host:port")
    p = commands.command("cluster", "remove-node", _remove, "remove a member (the leader hands over first)")
    p.add_argument("node_id", type=int)
