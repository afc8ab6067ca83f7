"""aspen-cli: talk to an Aspen cluster.

    aspen-cli [--cluster H:P,...] [--cookie C | --credential TOKEN] [--cacert CA --cert C --key K]
              [--json] [--timeout S]
              GROUP COMMAND ...

Command groups are the modules of this package (kv, blob, cluster, ...), found by
registry.discover(); each handler takes (args, client) and returns what to print. Output is
human text by default, JSON with --json. A failure prints one line `error: CODE: message`
on stderr and exits 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from aspen.cli.output import render
from aspen.cli.registry import Commands, UsageError, discover
from aspen.client import Client
from aspen.tls import ENV_CACERT, ENV_CERT, ENV_KEY, TLSFiles
from storage.errors import AspenError

DEFAULT_CLUSTER = "127.0.0.1:7701"
EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser(groups: Sequence[ModuleType] | None = None) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    ap = argparse.ArgumentParser(prog="aspen-cli", description="Talk to an Aspen cluster.")
    ap.add_argument("--cluster", default=None, help=f"host:port,... of cluster nodes (env ASPEN_CLUSTER, default {DEFAULT_CLUSTER})")
    ap.add_argument("--cookie", default=None, help="cluster secret (env ASPEN_COOKIE)")
    ap.add_argument("--credential", default=None,
                    help="a named credential instead of the cookie, sent over TLS only (env ASPEN_CREDENTIAL)")
    # dest: tls_*, since commands have their own `key` (kv set KEY ...).
    ap.add_argument("--cacert", dest="tls_cacert", default=None, help=f"TLS: the CA that signed the nodes' certificates (env {ENV_CACERT})")
    ap.add_argument("--cert", dest="tls_cert", default=None, help=f"TLS: this client's certificate, for --client-cert-auth nodes (env {ENV_CERT})")
    ap.add_argument("--key", dest="tls_key", default=None, help=f"TLS: its private key (env {ENV_KEY})")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    commands = Commands(ap.add_subparsers(dest="group", required=True, metavar="GROUP"), common)
    for group in groups if groups is not None else discover(sys.modules[__name__]):
        group.register(commands)
    return ap


def _fail(code: str, message: str, status: int) -> int:
    print(f"error: {code}: {message}", file=sys.stderr)
    return status


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, run one command, print; returns the exit status (argparse exits 2 itself)."""
    args = build_parser().parse_args(argv)
    cluster = args.cluster or os.environ.get("ASPEN_CLUSTER") or DEFAULT_CLUSTER
    credential = args.credential or os.environ.get("ASPEN_CREDENTIAL") or None
    # A credential given says who to be: the cookie (root) is not used beside it.
    cookie = None if credential else (args.cookie or os.environ.get("ASPEN_COOKIE") or None)
    if args.timeout <= 0:
        return _fail("INVALID_REQUEST", "--timeout must be positive", EXIT_USAGE)
    env = TLSFiles.from_env()
    files = TLSFiles.of(args.tls_cacert or env.cacert, args.tls_cert or env.cert, args.tls_key or env.key)
    try:
        client = Client(cluster, cookie, args.timeout, cacert=files.cacert, cert=files.cert, key=files.key,
                        credential=credential)
    except ValueError as exc:  # a malformed endpoint list, cookie or TLS file
        return _fail("INVALID_REQUEST", str(exc), EXIT_USAGE)
    try:
        result = args.handler(args, client)
        if result is not None:
            print(render(result, args.json))
        return 0
    except AspenError as exc:
        return _fail(str(exc.code), exc.message, EXIT_ERROR)
    except UsageError as exc:
        return _fail("INVALID_REQUEST", str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail("IO_ERROR", f"{exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}", EXIT_ERROR)
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))
