"""aspen-cli automerge push|pull|heads|list|delete: the automerge plugin's documents
(plugins/automerge, docs/AUTOMERGE.md). FILE holds concatenated Automerge change chunks, as
`Automerge.getAllChanges`/`getChangesSince` give them (joined) or `pull -o` writes them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aspen import automerge
from aspen.cli.registry import Commands, UsageError
from aspen.client import Client

ORDER = 60


def _push(args: argparse.Namespace, c: Client) -> Any:
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    r = automerge.push(c, args.doc, data)
    if args.json:
        return r
    lines = [f"stored {r['stored']}, duplicate {r['duplicate']}, rejected {r['rejected']}"]
    lines += [f"  rejected at byte {e['offset']}: {e['code']}: {e['message']}" if e["offset"] is not None
              else f"  rejected: {e['code']}: {e['message']}" for e in r["errors"]]
    if r["pending"]:
        lines.append(f"held back {r['pending']} (missing deps: {', '.join(r['missing_deps'])})")
    lines.append(f"heads: {' '.join(r['heads']) or '(none)'}")
    return "\n".join(lines)


def _pull(args: argparse.Namespace, c: Client) -> Any:
    if args.max_bytes is not None and args.max_bytes < 1:
        raise UsageError("--max-bytes must be at least 1")
    pulled = automerge.pull_all(c, args.doc, args.heads or [], args.max_bytes)
    if args.output == "-":
        sys.stdout.buffer.write(pulled.changes)
        sys.stdout.flush()
        return None
    Path(args.output).write_bytes(pulled.changes)
    summary = {"doc": args.doc, "changes": pulled.count, "bytes": len(pulled.changes), "pages": pulled.pages,
               "heads": pulled.heads, "output": args.output}
    if args.json:
        return summary
    heads = " ".join(pulled.heads) or "(none)"
    return f"{pulled.count} changes ({len(pulled.changes)} bytes) to {args.output}; heads: {heads}"


def _heads(args: argparse.Namespace, c: Client) -> Any:
    r = automerge.heads(c, args.doc)
    if args.json:
        return r
    lines = list(r["heads"]) or ["(no changes)"]
    if r["pending"]:
        lines.append(f"held back: {r['pending']} changes, missing deps {' '.join(r['missing_deps'])}")
    return "\n".join(lines)


def _list(args: argparse.Namespace, c: Client) -> Any:
    r = automerge.list_docs(c, args.prefix)
    if args.json:
        return r
    more = ["(more: narrow with --prefix)"] if r["truncated"] else []
    return "\n".join(r["docs"] + more)


def _delete(args: argparse.Namespace, c: Client) -> Any:
    r = automerge.delete_doc(c, args.doc)
    if args.json:
        return r
    return f"deleted {args.doc} ({r['keys_deleted']} keys)" if r["deleted"] else f"no document {args.doc}"


def register(commands: Commands) -> None:
    commands.group("automerge", "Automerge documents in the automerge plugin")
    p = commands.command("automerge", "push", _push, "push change chunks from FILE (- for stdin)")
    p.add_argument("doc")
    p.add_argument("file")
    p = commands.command(
        "automerge", "pull", _pull, "the changes a holder of --heads lacks (all without), to FILE"
    )
    p.add_argument("doc")
    p.add_argument("--heads", nargs="*", metavar="HASH", help="the heads you have (hex); none: everything")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="where to write the chunks (- for stdout)"
    )
    p.add_argument("--max-bytes", type=int, default=None, help="bytes per page (the plugin's default: 8 MiB)")
    p = commands.command("automerge", "heads", _heads, "the document's heads (and what is held back)")
    p.add_argument("doc")
    p = commands.command("automerge", "list", _list, "documents (at most 10,000; --prefix narrows)")
    p.add_argument("--prefix", default="", help="only doc ids starting with this")
    p = commands.command("automerge", "delete", _delete, "delete a document's changes")
    p.add_argument("doc")
