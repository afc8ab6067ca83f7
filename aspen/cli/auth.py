"""aspen-cli auth create|list|revoke: named credentials with roles (aspen/credentials.py)."""

from __future__ import annotations

import argparse
from typing import Any

from aspen.cli.registry import Commands
from aspen.client import Client

ORDER = 60


def _create(args: argparse.Namespace, c: Client) -> Any:
    r = c.request(
        "AuthCreate",
        name=args.name,
        role=args.role,
        prefixes=args.prefix or [],
        requests=args.request or [],
        ttl_s=args.ttl,
    )
    if args.json:
        return r
    scope = (
        ", ".join([*(f"prefix {p!r}" for p in r["prefixes"]), *(f"request {t}" for t in r["requests"])])
        or "everything"
    )
    return (f"credential {r['name']}: {r['role']} over {scope}\n"
            f"token (shown once; give it as --credential or ASPEN_CREDENTIAL):\n{r['token']}")


def _list(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("AuthList")
    if args.json:
        return r
    lines = [
        f"{x['name']}: {x['role']} prefixes={x['prefixes']} requests={x['requests']}"
        for x in r["credentials"]
    ]
    return "\n".join(lines) or "(no credentials)"


def _revoke(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("AuthRevoke", name=args.name)
    if args.json:
        return r
    head = f"revoked {r['name']}" if r["existed"] else f"no credential {r['name']} (nothing to revoke)"
    if r["unconfirmed_nodes"]:
        head += f"; nodes {r['unconfirmed_nodes']} did not confirm yet (down or partitioned)"
    return head


def register(commands: Commands) -> None:
    commands.group("auth", "named credentials with roles (admin only)")
    p = commands.command("auth", "create", _create, "issue a credential; prints its token once")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=("admin", "writer", "reader"))
    p.add_argument(
        "--prefix", action="append", metavar="PREFIX", help="a key prefix it may read (writer: and write)"
    )
    p.add_argument(
        "--request", action="append", metavar="TYPE", help="a plugin request type it may send ('*': any)"
    )
    p.add_argument(
        "--ttl", type=int, default=0, metavar="SECONDS", help="expires this long after creation (0: never)"
    )
    commands.command("auth", "list", _list, "the credentials and their roles (never their secrets)")
    p = commands.command("auth", "revoke", _revoke, "revoke a credential on every node")
    p.add_argument("name")
