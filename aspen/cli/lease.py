"""aspen-cli lease grant | keep-alive | revoke | ttl | list (etcd's leases); `kv set --lease`."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from aspen.cli.registry import Commands, UsageError
from aspen.client import Client
from wire.limits import LEASE_ID_MAX, LEASE_TTL_MAX_S

ORDER = 36  # after kv, blob and cluster in --help
KEEP_ALIVES_MAX = 10**9  # `keep-alive` without --count: until Ctrl-C, in practice


def _lease_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a lease id: {text[:64]!r}") from None
    if not 0 < value <= LEASE_ID_MAX:
        raise argparse.ArgumentTypeError(f"a lease id is from 1 to {LEASE_ID_MAX}")
    return value


def _grant(args: argparse.Namespace, c: Client) -> Any:
    if not 1 <= args.ttl <= LEASE_TTL_MAX_S:
        raise UsageError(f"TTL is from 1 to {LEASE_TTL_MAX_S} seconds")
    fields: dict[str, Any] = {"ttl_s": args.ttl}
    if args.id is not None:
        fields["lease_id"] = args.id
    r = c.request("LeaseGrant", **fields)
    return r if args.json else f"lease {r['lease_id']} granted with TTL {r['ttl_s']}s"


def _keep_alive(args: argparse.Namespace, c: Client) -> Any:
    """Refresh every third of the TTL (as etcdctl does), printing each answer."""
    count = 1 if args.once else (args.count if args.count is not None else KEEP_ALIVES_MAX)
    if count < 1:
        raise UsageError("--count must be positive")
    for i in range(count):
        r = c.request("LeaseKeepAlive", lease_id=args.lease_id)
        print(render_keep_alive(r, args.json), flush=True)
        if i + 1 < count:
            time.sleep(max(0.5, r["ttl_s"] / 3))
    return None


def render_keep_alive(r: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps({"lease_id": r["lease_id"], "ttl_s": r["ttl_s"]}, sort_keys=True)
    return f"lease {r['lease_id']} kept alive with TTL {r['ttl_s']}s"


def _revoke(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("LeaseRevoke", lease_id=args.lease_id)
    return r if args.json else f"lease {r['lease_id']} revoked ({r['deleted']} keys deleted)"


def _ttl(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("LeaseTimeToLive", lease_id=args.lease_id, keys=args.keys)
    if args.json:
        return r
    line = (f"lease {r['lease_id']}: granted TTL {r['granted_ttl_s']}s, remaining {r['ttl_s']}s, "
            f"{r['key_count']} keys")
    return "\n".join([line, *r.get("keys", [])])


def _list(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("LeaseList")
    if args.json:
        return r
    rows = [f"{x['lease_id']}\tTTL {x['ttl_s']}s\t{x['key_count']} keys" for x in r["leases"]]
    return "\n".join(rows) if rows else "(no leases)"


def register(commands: Commands) -> None:
    commands.group("lease", "leases: keys that go when their lease expires (etcd's)")
    p = commands.command("lease", "grant", _grant, "grant a lease of TTL seconds; prints its id")
    p.add_argument("ttl", type=int, metavar="TTL", help=f"seconds, 1 to {LEASE_TTL_MAX_S}")
    p.add_argument("--id", type=_lease_id, help="the id to use (default: a random one)")
    p = commands.command(
        "lease",
        "keep-alive",
        _keep_alive,
        "keep a lease alive: refresh every TTL/3 until Ctrl-C (or --once, --count N)",
    )
    p.add_argument("lease_id", type=_lease_id, metavar="ID")
    p.add_argument("--once", action="store_true", help="refresh once and exit")
    p.add_argument("--count", type=int, metavar="N", help="refresh N times, then exit")
    p = commands.command("lease", "revoke", _revoke, "revoke a lease: its keys are deleted now")
    p.add_argument("lease_id", type=_lease_id, metavar="ID")
    p = commands.command("lease", "ttl", _ttl, "a lease's granted and remaining TTL (etcd's timetolive)")
    p.add_argument("lease_id", type=_lease_id, metavar="ID")
    p.add_argument("--keys", action="store_true", help="list the keys attached to it")
    commands.command("lease", "list", _list, "every lease: id, TTL, how many keys")
