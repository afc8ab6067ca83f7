"""aspen-cli plugin install|list|info|logs|enable|disable|remove|reload, plugin-keys, rpc."""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path
from typing import Any

from aspen.cli import _plugin_logs
from aspen.client import Client
from aspen.manifest import Manifest, ManifestError
from storage.errors import AspenError, ErrorCode


def load_manifest(path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    try:
        raw = json.loads(Path(path).read_text())
        return Manifest.from_json(raw).with_overrides(**overrides).to_json()
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    except ManifestError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _install(args: argparse.Namespace, c: Client) -> Any:
    prefixes = [p.strip() for p in args.kv_prefixes.split(",") if p.strip()] if args.kv_prefixes else None
    manifest = load_manifest(args.manifest, {
        "kv_prefixes": prefixes, "priority": args.priority, "fuel_limit": args.fuel_limit,
        "memory_limit": args.memory_limit, "execution_timeout_secs": args.timeout_secs,
    })
    fields: dict[str, Any] = {"manifest": manifest, "wasm": Path(args.wasm).read_bytes(),
                              "verify_signature": args.verify_signature}
    if args.name:
        fields["install_name"] = args.name
    r = c.request("PluginInstall", **fields)
    if args.wait:
        wait_ready(c, r["name"], r["version"], WAIT_READY_S)
    if args.json:
        return r
    verb = "upgraded" if r["upgraded"] else "installed"
    ready = ", Ready on every node" if args.wait else ""
    return f"{verb} {r['name']} {r['version']} (wasm {r['wasm_hash'][:16]}...){ready}"


WAIT_READY_S = 60.0
WAIT_POLL_S = 0.2


def wait_ready(c: Client, name: str, version: str, timeout_s: float) -> None:
    """Until every node runs this version: before that, a node still serves the old handler
    (or, for a plugin's KV namespace, the native one)."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = c.request("PluginInfo", name=name)["nodes"]
        # PluginInfo asks every member, so a node that has not loaded it yet is listed too.
        pending = sorted(n for n, st in nodes.items() if st.get("state") != "Ready" or st.get("version") != version)
        if not pending:
            return
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
        f"{r['name']} {m['version']}  priority {m['priority']}  {'enabled' if m.get('enabled', True) else 'disabled'}",
        f"wasm: {m['wasm_hash']}",
        f"handles: {', '.join(m['handles'])}",
        f"permissions: {perms}",
        f"kv_prefixes: {', '.join(m.get('kv_prefixes') or []) or '(default namespace)'}",
        f"limits: fuel {m['fuel_limit']}, memory {m['memory_limit']} bytes, timeout {m['execution_timeout_secs']}s",
    ]
    for node, st in sorted(r["nodes"].items(), key=lambda kv: int(kv[0])):
        if "calls" in st:
            lines.append(
                f"  node {node}: {st['state']:<9} calls={st['calls']} errors={st['errors']} traps={st['traps']} "
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


def _from_json(value: Any) -> Any:
    """JSON has no bytes: {"base64": "..."} or {"utf8": "..."} stands for a msgpack bin."""
    if isinstance(value, dict):
        if set(value) == {"base64"}:
            return base64.b64decode(value["base64"])
        if set(value) == {"utf8"}:
            return str(value["utf8"]).encode()
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _rpc(args: argparse.Namespace, c: Client) -> Any:
    fields = _from_json(json.loads(args.json_body)) if args.json_body else {}
    if not isinstance(fields, dict):
        raise ValueError("--json must be an object")
    return c.request(args.type, **fields)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    plugin = sub.add_parser("plugin", help="WASM plugins").add_subparsers(dest="cmd", required=True)
    p = plugin.add_parser("install", help="install or upgrade a plugin on the whole cluster")
    p.add_argument("wasm")
    p.add_argument("--manifest", required=True, help="plugin.json")
    p.add_argument("--name", help="install under another name")
    p.add_argument("--kv-prefixes", help='comma separated, e.g. "a:,b:"')
    p.add_argument("--priority", type=int)
    p.add_argument("--fuel-limit", type=int)
    p.add_argument("--memory-limit", type=int)
    p.add_argument("--timeout", dest="timeout_secs", type=float, help="execution timeout in seconds")
    p.add_argument("--verify-signature", action="store_true", help="refuse unless signed by a trusted key")
    p.add_argument("--wait", action="store_true", help=f"return once every node runs it (at most {WAIT_READY_S:g}s)")
    p.set_defaults(handler=_install)
    plugin.add_parser("list", help="installed plugins").set_defaults(handler=_list)
    p = plugin.add_parser("info", help="details and per-node state of one plugin")
    p.add_argument("name")
    p.set_defaults(handler=_info)
    for cmd, rtype in (("enable", "PluginEnable"), ("disable", "PluginDisable"), ("remove", "PluginRemove")):
        p = plugin.add_parser(cmd)
        p.add_argument("name")
        p.set_defaults(handler=_simple(rtype))
    p = plugin.add_parser("logs", help="a plugin's recent log lines and traps, from every node")
    p.add_argument("name")
    p.add_argument("--node", type=int, help="only this node's lines")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    p.add_argument("--since", help="lines logged since: a duration back (90s, 10m, 2h, 1d) or an ISO 8601 time")
    p.add_argument("--limit", type=int, default=200, help="the newest so many lines per node (at most 1000)")
    p.set_defaults(handler=_plugin_logs.run)
    p = plugin.add_parser("reload", help="re-instantiate (and re-init) on every node")
    p.add_argument("name", nargs="?")
    p.set_defaults(handler=_simple("PluginReload"))

    keys = sub.add_parser("plugin-keys", help="trusted plugin author keys").add_subparsers(dest="cmd", required=True)
    p = keys.add_parser("add")
    p.add_argument("key", help="Ed25519 public key, hex")
    p.add_argument("--name")
    p.set_defaults(handler=_keys_add)
    keys.add_parser("list").set_defaults(handler=_keys_list)
    p = keys.add_parser("remove")
    p.add_argument("key")
    p.set_defaults(handler=_keys_remove)

    p = sub.add_parser("rpc", help="send any request type (plugins' own types too)")
    p.add_argument("type")
    p.add_argument("--json", dest="json_body", help='fields as JSON; bytes as {"utf8": ".."} or {"base64": ".."}')
    p.set_defaults(handler=_rpc)
