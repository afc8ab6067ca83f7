"""aspen-cli plugin install|list|info|logs|enable|disable|remove|reload, plugin-keys, rpc."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from aspen.cli import _plugin_logs
from aspen.cli.output import from_json, to_jsonable
from aspen.cli.registry import Commands, UsageError
from aspen.client import Client
from wire.errors import AspenError, ErrorCode

ORDER = 40


def load_manifest(path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """plugin.json with the command line's overrides, checked here: a bad one is a usage
    error before anything is sent. The manifest model (with the sandbox's permission names
    and limits) is loaded here, by the install that needs it: every other command, and
    `aspen-cli` itself, loads no sandbox module (tests/structure/test_imports.py)."""
    from aspen.manifest import Manifest, ManifestError

    try:
        raw = json.loads(Path(path).read_bytes().decode())
        return Manifest.from_json(raw).with_overrides(**overrides).to_json()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None
    except ManifestError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _install(args: argparse.Namespace, c: Client) -> Any:
    prefixes = [p.strip() for p in args.kv_prefixes.split(",") if p.strip()] if args.kv_prefixes else None
    manifest = load_manifest(args.manifest, {
        "kv_prefixes": prefixes, "priority": args.priority, "fuel_limit": args.fuel_limit,
        "memory_limit": args.memory_limit, "execution_timeout_secs": args.execution_timeout_secs,
    })
    fields: dict[str, Any] = {"manifest": manifest, "wasm": Path(args.wasm).read_bytes(),
                              "verify_signature": args.verify_signature}
    name = args.name or manifest["name"]
    if args.name:
        fields["install_name"] = args.name
    before = installed_manifest(c, name)
    r = c.request("PluginInstall", **fields)
    unreachable = wait_ready(c, r["name"], r["version"], WAIT_READY_S) if args.wait else []
    # The node answers `upgraded` for any install over an existing one; the same manifest
    # (same wasm hash, limits and all) before and after is no change at all.
    unchanged = before is not None and before == installed_manifest(c, r["name"])
    if args.json:
        return {**r, "unchanged": unchanged, "unreachable_nodes": unreachable}
    verb = "unchanged" if unchanged else "upgraded" if r["upgraded"] else "installed"
    ready = ""
    if args.wait:
        ready = ", Ready on every node" if not unreachable else (
            f", Ready on every reachable node; node(s) {', '.join(unreachable)} unreachable: not confirmed")
    return f"{verb} {r['name']} {r['version']} (wasm {r['wasm_hash'][:16]}...){ready}"


# Registry fields an install changes by itself: every install bumps reload_seq (so each node
# re-instantiates the plugin), which is no change of the plugin.
_INSTALL_BOOKKEEPING = frozenset({"reload_seq"})


def installed_manifest(c: Client, name: str) -> dict[str, Any] | None:
    """The registry's manifest of `name` (wasm hash included), without install bookkeeping."""
    try:
        manifest = c.request("PluginInfo", name=name)["manifest"]
    except AspenError as exc:
        if exc.code == ErrorCode.NOT_FOUND:
            return None
        raise
    if not isinstance(manifest, dict):
        return None
    return {k: v for k, v in manifest.items() if k not in _INSTALL_BOOKKEEPING}


WAIT_READY_S = 60.0
WAIT_POLL_S = 0.2
UNREACHABLE = "Unreachable"  # PluginInfo's state for a member that did not answer


def wait_ready(c: Client, name: str, version: str, timeout_s: float) -> list[str]:
    """Until every reachable node runs this version: before that, a node still serves the old
    handler (or, for a plugin's KV namespace, the native one). Returns the nodes that could not
    be asked (down): they load it from the log when they are back."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = c.request("PluginInfo", name=name)["nodes"]
        # PluginInfo asks every member, so a node that has not loaded it yet is listed too;
        # one that did not answer is listed as Unreachable (aspen/plugins/registry_handlers.py).
        unreachable = sorted((n for n, st in nodes.items() if st.get("state") == UNREACHABLE), key=int)
        pending = sorted(
            n
            for n, st in nodes.items()
            if st.get("state") != UNREACHABLE and (st.get("state") != "Ready" or st.get("version") != version)
        )
        if not pending:
            return unreachable
        if time.monotonic() > deadline:
            raise AspenError(ErrorCode.TIMEOUT, f"{name} {version} is installed but not Ready on node(s) "
                                                f"{', '.join(pending)} after {timeout_s:g}s")
        time.sleep(WAIT_POLL_S)


def _list(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("PluginList")
    if args.json:
        return r
    if not r["plugins"]:
        return "(no plugins)"
    return "\n".join(
        f"{p['name']:<24} {p['version']:<10} {'enabled' if p['enabled'] else 'disabled':<9} "
        f"priority={p['priority']} state={p['state']} handles={','.join(p['handles'] or [])}"
        for p in r["plugins"]
    )


def _info(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("PluginInfo", name=args.name)
    if args.json:
        return r
    m = r["manifest"]
    perms = ", ".join(k for k, v in (m.get("permissions") or {}).items() if v) or "none"
    lines = [
        f"{r['name']} {m['version']}  priority {m['priority']}  "
        f"{'enabled' if m.get('enabled', True) else 'disabled'}",
        f"wasm: {m['wasm_hash']}",
        f"handles: {', '.join(m['handles'])}",
        f"permissions: {perms}",
        f"kv_prefixes: {', '.join(m.get('kv_prefixes') or []) or '(default namespace)'}",
        f"limits: fuel {m['fuel_limit']}, memory {m['memory_limit']} bytes, timeout "
        f"{m['execution_timeout_secs']}s",
    ]
    for node, st in sorted(r["nodes"].items(), key=lambda kv: int(kv[0])):
        if "calls" in st:
            lines.append(
                f"  node {node}: {st['state']:<9} calls={st['calls']} errors={st['errors']} "
                f"traps={st['traps']} "
                f"timeouts={st['timeouts']} p50={st['p50_ms']}ms p99={st['p99_ms']}ms fuel={st['fuel_used']} "
                f"events dropped={st['events_dropped']} log lines dropped={st.get('log_lines_dropped', 0)}"
            )
            if st.get("reason"):  # why it is Failed or Degraded: the user's first question
                lines.append(f"    reason: {st['reason']}")
        else:
            lines.append(f"  node {node}: {st.get('state')} {st.get('reason', '')}".rstrip())
    return "\n".join(lines)


def _simple(rtype: str) -> Any:
    def run(args: argparse.Namespace, c: Client) -> Any:
        fields = {"name": args.name} if getattr(args, "name", None) else {}
        r = c.request(rtype, **fields)
        return r if args.json else f"{rtype.removeprefix('Plugin').lower()}: ok"

    return run


def _keys_add(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("PluginKeysAdd", public_key=args.key, name=args.name or "")
    return r if args.json else f"trusted {r['public_key']} ({r['name'] or 'unnamed'})"


def _keys_list(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("PluginKeysList")
    if args.json:
        return r
    return "\n".join(f"{k['public_key']}  {k['name']}" for k in r["keys"]) or "(no trusted keys)"


def _keys_remove(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("PluginKeysRemove", public_key=args.key)
    return r if args.json else f"removed {r['public_key']}"


def rpc_fields(data: str | None, data_file: str | None) -> dict[str, Any]:
    """The request's fields: --data JSON, or --data-file FILE; `-` for either reads stdin."""
    if data is not None and data_file is not None:
        raise UsageError("give --data or --data-file, not both")
    if data == "-" or data_file is not None:
        raw = (
            sys.stdin.buffer.read() if data == "-" or data_file == "-" else Path(str(data_file)).read_bytes()
        )
        try:
            data = raw.decode()
        except UnicodeDecodeError as exc:
            raise UsageError(f"request body: not UTF-8: {exc}") from None
    if data is None:
        return {}
    try:
        fields = from_json(json.loads(data))
    except json.JSONDecodeError as exc:
        raise UsageError(f"request body: not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise UsageError("request body: must be a JSON object")
    if "type" in fields or "id" in fields:
        raise UsageError("request body: `type` and `id` are set by the client")
    return fields


def _rpc(args: argparse.Namespace, c: Client) -> Any:
    r = c.request(args.type, **rpc_fields(args.data, args.data_file))
    # Shown as JSON either way: a response may have any shape, and JSON spells it one way.
    return r if args.json else json.dumps(to_jsonable(r), sort_keys=True, indent=2)


def register(commands: Commands) -> None:
    commands.group("plugin", "WASM plugins")
    p = commands.command("plugin", "install", _install, "install or upgrade a plugin on the whole cluster")
    p.add_argument("wasm")
    p.add_argument("--manifest", required=True, help="plugin.json")
    p.add_argument("--name", help="install under another name")
    p.add_argument("--kv-prefixes", help='comma separated, e.g. "a:,b:"')
    p.add_argument("--priority", type=int, help="900 to 999, lower runs first")
    p.add_argument("--fuel-limit", type=int)
    p.add_argument("--memory-limit", type=int, help="bytes")
    # Not --timeout: that is every command's request deadline.
    p.add_argument("--execution-timeout-secs", type=float, metavar="S",
                   help="the plugin's execution timeout per call, seconds (manifest execution_timeout_secs)")
    p.add_argument("--verify-signature", action="store_true", help="refuse unless signed by a trusted key")
    p.add_argument(
        "--wait",
        action="store_true",
        help=f"return once every reachable node runs it (at most {WAIT_READY_S:g}s); "
        "names nodes that are down",
    )
    commands.command("plugin", "list", _list, "installed plugins")
    p = commands.command("plugin", "info", _info, "details and per-node state of one plugin")
    p.add_argument("name")
    for cmd, rtype, text in (
        ("enable", "PluginEnable", "let a disabled plugin handle requests again"),
        ("disable", "PluginDisable", "stop a plugin handling requests (it stays installed)"),
        ("remove", "PluginRemove", "uninstall a plugin from every node"),
    ):
        p = commands.command("plugin", cmd, _simple(rtype), text)
        p.add_argument("name")
    p = commands.command(
        "plugin",
        "logs",
        _plugin_logs.run,
        "a plugin's recent log lines and traps, from every node (--node N: that node's only)",
    )
    p.add_argument("name")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    p.add_argument(
        "--since", help="lines logged since: a duration back (90s, 10m, 2h, 1d) or an ISO 8601 time"
    )
    p.add_argument("--limit", type=int, default=200, help="the newest so many lines per node (at most 1000)")
    p = commands.command(
        "plugin", "reload", _simple("PluginReload"), "re-instantiate (and re-init) on every node"
    )
    p.add_argument("name", nargs="?")

    commands.group("plugin-keys", "trusted plugin author keys")
    p = commands.command(
        "plugin-keys", "add", _keys_add, "trust an author's public key for --verify-signature"
    )
    p.add_argument("key", help="Ed25519 public key, hex")
    p.add_argument("--name", help="whose key it is")
    commands.command("plugin-keys", "list", _keys_list, "the trusted keys")
    p = commands.command("plugin-keys", "remove", _keys_remove, "stop trusting a key")
    p.add_argument("key", help="Ed25519 public key, hex")

    p = commands.top(
        "rpc", _rpc, "send any request type (plugins' own types too); prints the response as JSON"
    )
    p.add_argument("type", help="the request type, e.g. Ping or a plugin's own")
    p.add_argument(
        "--data",
        metavar="JSON",
        help='the fields as a JSON object (- reads stdin); bytes as {"utf8": ".."} or {"base64": ".."}',
    )
    p.add_argument("--data-file", metavar="FILE", help="the fields' JSON from FILE (- for stdin)")
