"""Plugin registry requests: install/upgrade, list, info, enable, disable, remove, reload, and
the trusted author keys. Every change is a Raft write to the meta tables; nodes follow it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aspen import fields as p
from aspen import settings_table, signing
from aspen.manifest import Manifest, ManifestError
from aspen.plugins import key_table, namespaces, plugin_table
from aspen.plugins.key_table import TrustedKey
from aspen.plugins.logring import READ_LINES_MAX
from aspen.plugins.manager import PluginManager
from aspen.plugins.plugin_table import PluginRecord
from aspen.server import RequestHandler
from aspen.services import NodeServices
from sandbox import SandboxError
from sandbox.memhost import probe_info
from storage.limits import BLOB_MAX_BYTES
from wire.errors import AspenError, ErrorCode

PEER_STATUS_TIMEOUT_S = 3.0
REGISTER_ATTEMPTS = 5
LOGS_LIMIT_DEFAULT = 200
LOGS_NODES_MAX = 1024


class PluginHandlers:
    def __init__(self, manager: PluginManager, services: NodeServices,
                 peers: Callable[[], list[int]], peer_request: Callable[..., Any]) -> None:
        self.manager = manager
        self.services = services
        self.replicated = services.replicated
        self._peers = peers
        self._peer_request = peer_request
        # A request for a plugin that is Failed on this node is served by another (the manager
        # has no peer client of its own).
        manager.forward_through((peers, peer_request))
        self.table: dict[str, RequestHandler] = {
            "PluginInstall": self.install,
            "PluginList": self.list,
            "PluginInfo": self.info,
            "PluginLocalStatus": self.local_status,
            "PluginLogs": self.logs,
            "PluginEnable": self.enable,
            "PluginDisable": self.disable,
            "PluginRemove": self.remove,
            "PluginReload": self.reload,
            "PluginKeysAdd": self.keys_add,
            "PluginKeysList": self.keys_list,
            "PluginKeysRemove": self.keys_remove,
            "ClusterSetting": self.setting,
        }

    def _record(self, name: str) -> tuple[bytes, PluginRecord]:
        raw = self.replicated.read(lambda s: plugin_table.raw_record(s, name))
        if raw is None:
            raise AspenError(ErrorCode.NOT_FOUND, f"no plugin named {name!r}")
        return raw, PluginRecord.decode(raw)

    def trusted_keys(self) -> dict[str, str]:
        return self.replicated.read(key_table.trusted)

    def require_signatures(self) -> bool:
        return self.replicated.read(lambda s: settings_table.flag(s, settings_table.REQUIRE_SIGNATURES)).value

    # -- install ---------------------------------------------------------------------------

    async def install(self, req: dict[str, Any]) -> dict[str, Any]:
        raw_manifest = req.get("manifest")
        try:
            manifest = Manifest.from_json(raw_manifest)
        except ManifestError as exc:
            raise AspenError(
                ErrorCode.INVALID_REQUEST, f"plugin.json: {exc}", problems=exc.problems
            ) from None
        wasm = p.require_bytes(req, "wasm", max_bytes=BLOB_MAX_BYTES, code=ErrorCode.BLOB_TOO_LARGE)
        wasm_hash = signing.wasm_digest(wasm)
        # --name installs the plugin under another registry name (a second copy, say); the
        # plugin_info check below is against the manifest's own name.
        installed = manifest
        install_name = p.optional_str(req, "install_name")
        if install_name:
            try:
                installed = manifest.with_overrides(name=install_name)
            except ManifestError as exc:
                raise AspenError(ErrorCode.INVALID_REQUEST, f"--name: {exc}") from None
        # Signature first: when one is asked for, a binary changed after signing is reported as
        # what it is (SIGNATURE_INVALID), not as a stale wasm_hash field. It covers the manifest
        # as it will be installed, so a --name, --kv-prefixes or any other change of a signed
        # field is refused, naming the field.
        if p.optional_bool(req, "verify_signature", False) or self.require_signatures():
            signing.verify(installed, wasm_hash, self.trusted_keys())
        if manifest.wasm_hash is not None and manifest.wasm_hash != wasm_hash:
            raise AspenError(ErrorCode.INVALID_REQUEST,
                             f"manifest wasm_hash {manifest.wasm_hash} does not match the wasm ({wasm_hash})")
        # Load it here first: a module that does not compile, links anything outside the host
        # API, or whose plugin_info disagrees with its manifest is refused before it is stored.
        loop = asyncio.get_running_loop()
        try:
            info = await loop.run_in_executor(
                None, probe_info, self.manager.runtime, wasm, manifest.sandbox_config()
            )
        except SandboxError as exc:
            raise AspenError(ErrorCode.INVALID_REQUEST, f"wasm refused: {exc.code}: {exc.message}") from None
        if manifest.info_mismatches(info):
            raise AspenError(
                ErrorCode.INVALID_REQUEST,
                f"plugin_info says {info.get('name')} {info.get('version')}, the manifest says "
                f"{manifest.name} {manifest.version}",
            )
        manifest = installed
        await self.services.put_blob(wasm)
        old = await self._register(manifest.replace(wasm_hash=wasm_hash))
        await self._settle(manifest.name)
        return {"type": "PluginInstallResult", "name": manifest.name, "version": manifest.version,
                "wasm_hash": wasm_hash, "upgraded": old is not None}

    async def _register(self, manifest: Manifest) -> bytes | None:
        """Write the registry entry if its kv_prefixes conflict with no other plugin's
        (aspen/plugins/namespaces.py); returns the entry it replaced.

        The check is made against one state of the registry, and the write commits only if the
        registry is still in that state: every install moves the version row, and the write is
        one meta_cas_all of the entry and that row. Two installs racing for overlapping
        prefixes cannot both pass: the second one's write fails, and its retry sees the first."""
        for _ in range(REGISTER_ATTEMPTS):
            await self.services.barrier()
            registry, version = self.replicated.read(
                lambda s: (plugin_table.raw_records(s), plugin_table.version(s)))
            installed = {
                name: namespaces.effective_prefixes(name, PluginRecord.decode(raw).kv_prefixes)
                for name, raw in registry.items()
            }
            conflict = namespaces.find_conflict(
                manifest.name, manifest.sandbox_config().effective_prefixes, installed
            )
            if conflict is not None:
                raise conflict.error()
            old = registry.get(manifest.name)
            seq = PluginRecord.decode(old).reload_seq + 1 if old is not None else 0
            record = PluginRecord.new(manifest, seq)
            try:
                await self.services.commit(plugin_table.install_op(manifest.name, old, record, version))
                return old
            except AspenError as exc:
                if exc.code != ErrorCode.CAS_FAILED:
                    raise
        raise AspenError(
            ErrorCode.CAS_FAILED,
            f"the plugin registry changed under {REGISTER_ATTEMPTS} attempts to "
            f"install {manifest.name}; try again",
            applied="no",
        )

    async def _settle(self, name: str) -> None:
        """Wait (bounded) until this node's registry serves the committed entry."""
        self.manager.request_reconcile()
        raw = self.replicated.read(lambda s: plugin_table.raw_record(s, name))
        for _ in range(100):
            loaded = self.manager.table.plugins.get(name)
            current = self.replicated.read(lambda s: plugin_table.raw_record(s, name))
            if raw is None or current != raw:
                return
            if (loaded is not None and loaded.record == raw) or name in self.manager.load_errors:
                return
            if not PluginRecord.decode(raw).enabled and loaded is None:
                return
            await asyncio.sleep(0.05)

    # -- read ------------------------------------------------------------------------------

    async def list(self, req: dict[str, Any]) -> dict[str, Any]:
        local = self.manager.local_status()
        plugins = []
        for name, raw in sorted(self.manager.registry().items()):
            rec = PluginRecord.decode(raw)
            plugins.append(
                {
                    "name": name,
                    "version": rec.get("version"),
                    "enabled": rec.fields.get("enabled", True),
                    "priority": rec.get("priority"),
                    "handles": rec.get("handles"),
                    "wasm_hash": rec.get("wasm_hash"),
                    "state": local.get(name, {}).get(
                        "state", "Disabled" if not rec.enabled else "NotLoaded"
                    ),
                }
            )
        return {"type": "PluginListResult", "plugins": plugins}

    async def local_status(self, req: dict[str, Any]) -> dict[str, Any]:
        name = p.optional_str(req, "name")
        return {"type": "PluginLocalStatusResult", "node_id": self.replicated.node_id,
                "plugins": self.manager.local_status(name)}

    async def info(self, req: dict[str, Any]) -> dict[str, Any]:
        name = p.optional_str(req, "name") or ""
        _, rec = self._record(name)
        nodes: dict[str, Any] = {
            str(self.replicated.node_id): self.manager.local_status(name).get(name, {"state": "NotLoaded"})
        }

        async def ask(peer: int) -> None:
            try:
                reply = await asyncio.wait_for(self._peer_request(peer, "PluginLocalStatus", name=name),
                                               PEER_STATUS_TIMEOUT_S)
                nodes[str(peer)] = reply["plugins"].get(name, {"state": "NotLoaded"})
            except (AspenError, OSError, TimeoutError) as exc:
                nodes[str(peer)] = {"state": "Unreachable", "reason": str(exc)}

        await asyncio.gather(*(ask(peer) for peer in self._peers()))
        return {"type": "PluginInfoResult", "name": name, "manifest": rec.as_json(), "nodes": nodes}

    async def logs(self, req: dict[str, Any]) -> dict[str, Any]:
        """A plugin's recent log lines (aspen/plugins/logring.py) from every node, or from
        `node` alone; `local` (what nodes ask each other) answers with this node's alone.
        `after` maps a node id to the last line number seen from it (to follow); `since_ms`
        keeps lines logged at or after that wall-clock time; `limit`: the newest so many."""
        name = p.optional_str(req, "name", 64) or ""
        since_ms = p.optional_int(req, "since_ms", 0, 0, 2**63 - 1)
        limit = p.optional_int(req, "limit", LOGS_LIMIT_DEFAULT, 0, READ_LINES_MAX)
        me = self.replicated.node_id
        if p.optional_bool(req, "local", False):
            after_seq = p.optional_int(req, "after_seq", 0, 0, 2**63 - 1)
            return {"type": "PluginLogsResult", "name": name,
                    "nodes": {str(me): self.manager.local_logs(name, after_seq, since_ms, limit)}}
        self._record(name)  # NOT_FOUND for a plugin that is not installed
        after = req.get("after") or {}
        if not isinstance(after, dict) or len(after) > LOGS_NODES_MAX or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in after.items()):
            raise AspenError(ErrorCode.INVALID_REQUEST, "after: a map of node id (text) to a line number")
        only = p.optional_int(req, "node", 0, 0, 2**31)
        members = [me, *self._peers()]
        if only and only not in members:
            raise AspenError(ErrorCode.NOT_FOUND, f"no node {only} in this cluster (members: "
                                                  f"{', '.join(map(str, sorted(members)))})")
        nodes: dict[str, Any] = {}

        async def ask(nid: int) -> None:
            fields = {"name": name, "local": True, "after_seq": after.get(str(nid), 0), "since_ms": since_ms,
                      "limit": limit}
            if nid == me:
                nodes[str(nid)] = self.manager.local_logs(name, fields["after_seq"], since_ms, limit)
                return
            try:
                reply = await asyncio.wait_for(
                    self._peer_request(nid, "PluginLogs", **fields), PEER_STATUS_TIMEOUT_S
                )
                nodes[str(nid)] = reply["nodes"][str(nid)]
            except (AspenError, OSError, TimeoutError, KeyError) as exc:
                nodes[str(nid)] = {"error": str(exc) or type(exc).__name__}

        await asyncio.gather(*(ask(nid) for nid in ([only] if only else members)))
        return {"type": "PluginLogsResult", "name": name, "nodes": nodes}

    # -- change ----------------------------------------------------------------------------

    async def _update(
        self, name: str, change: Callable[[PluginRecord], PluginRecord | None]
    ) -> bytes | None:
        raw, rec = self._record(name)
        await self.services.commit(plugin_table.cas_op(name, raw, change(rec)))
        await self._settle(name)
        return raw

    async def enable(self, req: dict[str, Any]) -> dict[str, Any]:
        name = p.optional_str(req, "name") or ""
        await self._update(name, lambda r: r.with_enabled(True))
        return {"type": "PluginChanged", "name": name, "enabled": True}

    async def disable(self, req: dict[str, Any]) -> dict[str, Any]:
        name = p.optional_str(req, "name") or ""
        await self._update(name, lambda r: r.with_enabled(False))
        return {"type": "PluginChanged", "name": name, "enabled": False}

    async def remove(self, req: dict[str, Any]) -> dict[str, Any]:
        name = p.optional_str(req, "name") or ""
        await self._update(name, lambda r: None)
        return {"type": "PluginChanged", "name": name, "removed": True}

    async def reload(self, req: dict[str, Any]) -> dict[str, Any]:
        """Bump reload_seq through the log: every node re-instantiates (and re-inits) it."""
        name = p.optional_str(req, "name")
        names = [name] if name else sorted(self.manager.registry())
        for n in names:
            await self._update(n, lambda r: r.reloaded())
        return {"type": "PluginReloaded", "names": names}

    # -- trust -----------------------------------------------------------------------------

    async def keys_add(self, req: dict[str, Any]) -> dict[str, Any]:
        key = p.optional_str(req, "public_key") or ""
        label = p.optional_str(req, "name", 128) or ""
        try:
            if len(bytes.fromhex(key)) != 32:
                raise ValueError
        except ValueError:
            raise AspenError(
                ErrorCode.INVALID_REQUEST, "public_key: 64 hex characters (an Ed25519 key)"
            ) from None
        await self.services.commit(key_table.put_op(TrustedKey(key.lower(), label)))
        return {"type": "PluginKeyAdded", "public_key": key.lower(), "name": label}

    async def keys_list(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"type": "PluginKeysListResult",
                "keys": [{"public_key": k, "name": v} for k, v in sorted(self.trusted_keys().items())]}

    async def keys_remove(self, req: dict[str, Any]) -> dict[str, Any]:
        key = (p.optional_str(req, "public_key") or "").lower()
        body = await self.services.commit(key_table.delete_op(key))
        if not body.get("existed"):
            raise AspenError(ErrorCode.NOT_FOUND, f"{key} is not a trusted key")
        return {"type": "PluginKeyRemoved", "public_key": key}

    async def setting(self, req: dict[str, Any]) -> dict[str, Any]:
        name = p.optional_str(req, "name") or ""
        if name not in settings_table.KNOWN:
            known = ", ".join(settings_table.KNOWN)
            raise AspenError(ErrorCode.INVALID_REQUEST, f"unknown setting {name!r} (known: {known})")
        value = req.get("value")
        if value is not None:
            if not isinstance(value, bool):
                raise AspenError(ErrorCode.INVALID_REQUEST, "value: true or false")
            await self.services.commit(settings_table.put_op(settings_table.Flag(name, value)))
        return {"type": "ClusterSettingResult", "name": name, "value": self.require_signatures()}
