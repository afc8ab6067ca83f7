"""aspen-cli: talk to an Aspen cluster.

    aspen-cli [GLOBAL OPTIONS] GROUP COMMAND ... [GLOBAL OPTIONS]

Global options (--cluster, --endpoint, --node, --cookie, --cookie-file, --credential, --cacert,
--cert, --key, --timeout, --json) are accepted before the group or after the command. Command groups
are the modules of this package (kv, blob, cluster, ...), found by registry.discover(); each
handler takes (args, client) and returns what to print. Output is human text by default,
JSON with --json. A failure prints one line `error: CODE: message` on stderr; the exit
status is aspen/exits.py's table, the same with or without --json.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from aspen.auth import load_cookie
from aspen.cli.connect import Connection
from aspen.cli.output import render
from aspen.cli.registry import Commands, Outcome, UsageError, discover
from aspen.exits import EPILOG, EXIT_OK, EXIT_USAGE, fail, guarded
from aspen.tls import ENV_CACERT, ENV_CERT, ENV_KEY, TLSFiles
from aspen.version import aspen_version

DEFAULT_CLUSTER = "127.0.0.1:7701"
DEFAULT_TIMEOUT_S = 10.0
# Arguments that name files: any bytes the file system allows. Every other argument is text
# sent to the cluster, which must be UTF-8.
PATH_DESTS = frozenset(
    {
        "file",
        "wasm",
        "manifest",
        "output",
        "data_file",
        "cookie_file",
        "tls_cacert",
        "tls_cert",
        "tls_key",
        "expected_file",
        "new_file",
    }
)


def add_global_options(ap: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes. On the root parser with their defaults; on each
    command with none (SUPPRESS), so one given after the command overrides, and one not given
    there leaves the root's value alone."""
    def d(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    g = ap.add_argument_group("global options (before the group or after the command)")
    g.add_argument(
        "--cluster",
        default=d(None),
        help=f"host:port,... of cluster nodes (env ASPEN_CLUSTER, default {DEFAULT_CLUSTER})",
    )
    g.add_argument(
        "--endpoint",
        default=d(None),
        metavar="ADDR",
        help="send to this host:port only: served there, no leader discovery (reads with --stale included)",
    )
    g.add_argument("--node", type=int, default=d(None), metavar="N",
                   help="send to node N only (its address found through --cluster), as --endpoint does")
    g.add_argument("--cookie", default=d(None), help="cluster secret (env ASPEN_COOKIE)")
    g.add_argument("--cookie-file", default=d(None), metavar="FILE",
                   help="read the cluster secret from FILE, mode 600 (env ASPEN_COOKIE_FILE)")
    g.add_argument(
        "--credential",
        default=d(None),
        metavar="TOKEN",
        help="a named credential (aspen-cli auth create) instead of the cookie, sent over TLS only "
        "(env ASPEN_CREDENTIAL)",
    )
    # dest: tls_*, since commands have their own `key` (kv set KEY ...).
    g.add_argument(
        "--cacert",
        dest="tls_cacert",
        default=d(None),
        help=f"TLS: the CA that signed the nodes' certificates (env {ENV_CACERT})",
    )
    g.add_argument(
        "--cert",
        dest="tls_cert",
        default=d(None),
        help=f"TLS: this client's certificate, for --client-cert-auth nodes (env {ENV_CERT})",
    )
    g.add_argument("--key", dest="tls_key", default=d(None), help=f"TLS: its private key (env {ENV_KEY})")
    g.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")
    g.add_argument("--timeout", type=float, default=d(DEFAULT_TIMEOUT_S), metavar="S",
                   help=f"seconds per request (default {DEFAULT_TIMEOUT_S:g})")
    g.add_argument("--version", action="version", version=f"aspen-cli {aspen_version()}")


def build_parser(groups: Sequence[ModuleType] | None = None) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, defaults=False)
    ap = argparse.ArgumentParser(prog="aspen-cli", description="Talk to an Aspen cluster.", epilog=EPILOG)
    add_global_options(ap, defaults=True)
    commands = Commands(ap.add_subparsers(dest="group", required=True, metavar="GROUP"), common)
    for group in groups if groups is not None else discover(sys.modules[__name__]):
        group.register(commands)
    return ap


def text_arguments(args: argparse.Namespace) -> None:
    """Arguments sent as text must be UTF-8 (a key given as raw bytes is a usage error, not a
    crash in the encoder)."""
    for dest, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str) and dest not in PATH_DESTS:
                try:
                    v.encode()
                except UnicodeEncodeError:
                    raise UsageError(f"{dest}: not UTF-8: {v!r}") from None


def connection(args: argparse.Namespace) -> Connection:
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.endpoint is not None and args.node is not None:
        raise UsageError("give --endpoint or --node, not both")
    env = TLSFiles.from_env()
    try:
        credential = args.credential or os.environ.get("ASPEN_CREDENTIAL") or None
        # A credential says who to be: the cookie (the cluster's root) is not used beside it.
        cookie = None if credential else load_cookie(
            cookie=args.cookie, cookie_file=Path(args.cookie_file) if args.cookie_file else None)
        return Connection(
            cluster=args.cluster or os.environ.get("ASPEN_CLUSTER") or DEFAULT_CLUSTER,
            cookie=cookie,
            timeout_s=args.timeout,
            tls=TLSFiles.of(
                args.tls_cacert or env.cacert, args.tls_cert or env.cert, args.tls_key or env.key
            ),
            credential=credential,
        )
    except ValueError as exc:  # a malformed cookie or cookie file
        raise UsageError(str(exc)) from None


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text_arguments(args)
        conn = connection(args)
        args.connection = conn  # for commands that ask every node (cluster status, health)
        try:
            client = conn.aimed(args.endpoint, args.node)
        except ValueError as exc:  # a malformed endpoint list or TLS file
            raise UsageError(str(exc)) from None
    except UsageError as exc:
        return fail("INVALID_REQUEST", str(exc), EXIT_USAGE)
    try:
        result = args.handler(args, client)
        status = EXIT_OK
        if isinstance(result, Outcome):
            result, status = result.result, result.status
        if result is not None:
            print(render(result, args.json))
        return status
    except UsageError as exc:
        return fail("INVALID_REQUEST", str(exc), EXIT_USAGE)
    finally:
        client.close()


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, run one command, print; returns the exit status (argparse exits 2 itself)."""
    return guarded(lambda: _run(argv))


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))
