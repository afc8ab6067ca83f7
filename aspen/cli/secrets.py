"""aspen-cli secrets ...: the barrier (unseal, seal, status, rotate-unseal-key,
new-unseal-key) and the secrets plugin's KV v2 and Transit engines (docs/SECRETS.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from aspen.barrier import key_id, new_unseal_key, read_unseal_key_file
from aspen.cli.registry import Commands, UsageError
from aspen.client import Client

ORDER = 65


def _key_file(path: str) -> bytes:
    try:
        return read_unseal_key_file(Path(path))
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path}: {exc}") from None


def _peers(r: dict[str, Any]) -> list[str]:
    lines = []
    for peer, outcome in sorted(r.get("peers", {}).items(), key=lambda kv: int(kv[0])):
        if outcome.get("ok"):
            lines.append(f"node {peer}: {'sealed' if outcome.get('sealed') else 'unsealed'}")
        else:
            lines.append(f"node {peer}: not reached: {outcome.get('code')}: {outcome.get('message')}")
    return lines


def _state(r: dict[str, Any]) -> str:
    return (f"node {r['node_id']}: {'sealed' if r['sealed'] else 'unsealed'}"
            + ("" if r["initialized"] else " (barrier not initialized)")
            + (f", unseal key id {r['unseal_key_id']}" if r.get("unseal_key_id") else ""))


def _unseal(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("SecretsUnseal", key=_key_file(args.key_file), all=not args.this_node_only)
    if args.json:
        return r
    head = "initialized the barrier's data key; " if r.get("created") else ""
    return "\n".join([head + _state(r), *_peers(r)])


def _seal(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("SecretsSeal", all=not args.this_node_only)
    return r if args.json else "\n".join([_state(r), *_peers(r)])


def _status(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("SecretsSealStatus")
    return r if args.json else _state(r)


def _rotate(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("SecretsRotateUnsealKey", old_key=_key_file(args.old_key_file), new_key=_key_file(args.new_key_file))
    if args.json:
        return r
    return f"the data key is now wrapped by unseal key id {r['unseal_key_id']}; restart nodes with the new key file"


def _new_unseal_key(args: argparse.Namespace, c: Client) -> Any:
    key = new_unseal_key()
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{args.output} exists: an unseal key is never overwritten") from None
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    r = {"output": args.output, "unseal_key_id": key_id(key)}
    return r if args.json else f"wrote a new unseal key to {args.output} (id {r['unseal_key_id']}); keep it off the nodes' disks"


def register(commands: Commands) -> None:
    commands.group("secrets", "the secrets barrier and the secrets plugin (docs/SECRETS.md)")
    p = commands.command("secrets", "unseal", _unseal, "unseal every node (the first unseal creates the data key)")
    p.add_argument("--key-file", required=True, metavar="FILE", help="the unseal key (64 hex characters)")
    p.add_argument("--this-node-only", action="store_true", help="only the node the request reaches")
    p = commands.command("secrets", "seal", _seal, "drop the data key from every node's memory")
    p.add_argument("--this-node-only", action="store_true", help="only the node the request reaches")
    commands.command("secrets", "status", _status, "is the node sealed; which unseal key the cluster expects")
    p = commands.command("secrets", "rotate-unseal-key", _rotate, "rewrap the data key under a new unseal key")
    p.add_argument("--old-key-file", required=True, metavar="FILE")
    p.add_argument("--new-key-file", required=True, metavar="FILE")
    p = commands.command("secrets", "new-unseal-key", _new_unseal_key, "write a new random unseal key to a file (0600)")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
