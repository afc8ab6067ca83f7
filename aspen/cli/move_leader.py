"""aspen-cli cluster move-leader N (etcd's move-leader)."""

from __future__ import annotations

import argparse
from typing import Any

from aspen.cli.registry import Commands
from aspen.client import Client

ORDER = 32


def _move(args: argparse.Namespace, c: Client) -> Any:
    r = c.move_leader(args.node_id)
    return r if args.json else f"leader is node {r['leader_id']}"


def register(commands: Commands) -> None:
    commands.group("cluster", "cluster state")
    p = commands.command(
        "cluster",
        "move-leader",
        _move,
        "make node N the leader: the leader waits until N holds its whole log, then tells it to "
        "campaign at once (Raft's TimeoutNow); refuses an unknown or unreachable N",
    )
    p.add_argument("node_id", type=int, metavar="N")
