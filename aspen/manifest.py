"""plugin.json: the manifest model and its validation (one implementation for the node, the
CLI and the author toolchain).

Every field is checked with an error that names it; `Manifest.from_json` raises
ManifestError listing every problem at once, so an author fixes them in one pass.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sandbox import Permissions, PluginConfig
from sandbox import limits as sl
from sandbox.permissions import PERMISSION_NAMES

API_VERSION = 1
PRIORITY_MIN, PRIORITY_MAX = 900, 999
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}\Z")
HASH_RE = re.compile(r"[0-9a-f]{64}\Z")
HANDLES_MAX = 64
PREFIXES_MAX = 16
TEXT_MAX_CHARS = 1024
FIELDS = (
    "name", "version", "handles", "priority", "permissions", "kv_prefixes", "fuel_limit", "memory_limit",
    "execution_timeout_secs", "description", "author", "signature", "wasm_hash", "enabled", "min_api_version",
)


class ManifestError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    version: str
    handles: tuple[str, ...]
    priority: int = 950
    permissions: dict[str, bool] = field(default_factory=dict)
    kv_prefixes: tuple[str, ...] = ()
    fuel_limit: int = sl.FUEL_DEFAULT
    memory_limit: int = sl.MEMORY_DEFAULT_BYTES
    execution_timeout_secs: float = sl.TIMEOUT_DEFAULT_S
    description: str = ""
    author: str = ""
    signature: dict[str, Any] | None = None  # aspen/signing.py
    wasm_hash: str | None = None
    enabled: bool = True
    min_api_version: int = 1

    @classmethod
    def from_json(cls, raw: Any) -> Manifest:
        problems: list[str] = []
        if not isinstance(raw, dict):
            raise ManifestError(["manifest: must be a JSON object"])
        unknown = sorted(set(raw) - set(FIELDS) - {"reload_seq"})
        if unknown:
            problems.append(f"unknown fields: {', '.join(unknown)}")

        def get(name: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
            if name not in raw or raw[name] is None:
                if required:
                    problems.append(f"{name}: required")
                return default
            value = raw[name]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
                problems.append(f"{name}: must be {getattr(kind, '__name__', 'a number')}")
                return default
            return value

        name = get("name", str, "", required=True)
        if name and not NAME_RE.match(name):
            problems.append("name: only letters, digits, '-' and '_', 1 to 64 characters")
        version = get("version", str, "", required=True)
        if version is not None and not 0 < len(version) <= 64:
            problems.append("version: 1 to 64 characters")
        handles = get("handles", list, [], required=True)
        if isinstance(handles, list):
            if not handles:
                problems.append("handles: list at least one request type")
            if len(handles) > HANDLES_MAX:
                problems.append(f"handles: at most {HANDLES_MAX}")
            for h in handles:
                if not isinstance(h, str) or not TYPE_RE.match(h):
                    problems.append(
                        f"handles: {h!r} is not a request type name (a letter, then letters, digits, _)"
                    )
        priority = get("priority", int, 950)
        if isinstance(priority, int) and not PRIORITY_MIN <= priority <= PRIORITY_MAX:
            problems.append(f"priority: {priority} is outside {PRIORITY_MIN} to {PRIORITY_MAX}")
        permissions = get("permissions", dict, {})
        for perm, value in (permissions or {}).items():
            if perm not in PERMISSION_NAMES:
                problems.append(f"permissions: unknown permission {perm!r}")
            elif not isinstance(value, bool):
                problems.append(f"permissions.{perm}: must be true or false")
        prefixes = get("kv_prefixes", list, [])
        if isinstance(prefixes, list):
            if len(prefixes) > PREFIXES_MAX:
                problems.append(f"kv_prefixes: at most {PREFIXES_MAX}")
            for p in prefixes:
                if not isinstance(p, str) or not p:
                    problems.append("kv_prefixes: a prefix must be a non-empty string")
                elif len(p.encode()) > 256:
                    # Whose namespace it may claim is decided at install (aspen/plugins/namespaces.py).
                    problems.append(f"kv_prefixes: {p[:32]!r}... is over 256 bytes")
        fuel = get("fuel_limit", int, sl.FUEL_DEFAULT)
        if isinstance(fuel, int) and not 0 < fuel <= sl.FUEL_MAX:
            problems.append(f"fuel_limit: 1 to {sl.FUEL_MAX}")
        memory = get("memory_limit", int, sl.MEMORY_DEFAULT_BYTES)
        if isinstance(memory, int) and not sl.MEMORY_MIN_BYTES <= memory <= sl.MEMORY_MAX_BYTES:
            problems.append(f"memory_limit: {sl.MEMORY_MIN_BYTES} to {sl.MEMORY_MAX_BYTES} bytes")
        timeout = get("execution_timeout_secs", (int, float), sl.TIMEOUT_DEFAULT_S)
        if isinstance(timeout, (int, float)) and not 0 < timeout <= sl.TIMEOUT_MAX_S:
            problems.append(f"execution_timeout_secs: above 0 and at most {sl.TIMEOUT_MAX_S:g}")
        for text_field in ("description", "author"):
            value = get(text_field, str, "")
            if isinstance(value, str) and len(value) > TEXT_MAX_CHARS:
                problems.append(f"{text_field}: at most {TEXT_MAX_CHARS} characters")
        signature = get("signature", dict, None)
        wasm_hash = get("wasm_hash", str, None)
        if wasm_hash is not None and not HASH_RE.match(wasm_hash):
            problems.append("wasm_hash: 64 lowercase hex characters (BLAKE3)")
        enabled = get("enabled", bool, True)
        min_api = get("min_api_version", int, 1)
        if isinstance(min_api, int) and min_api > API_VERSION:
            problems.append(f"min_api_version: {min_api} is newer than this node's API version {API_VERSION}")
        if problems:
            raise ManifestError(problems)
        return cls(
            name=name,
            version=version,
            handles=tuple(handles),
            priority=priority,
            permissions=dict(permissions or {}),
            kv_prefixes=tuple(prefixes),
            fuel_limit=fuel,
            memory_limit=memory,
            execution_timeout_secs=float(timeout),
            description=raw.get("description") or "",
            author=raw.get("author") or "",
            signature=signature,
            wasm_hash=wasm_hash,
            enabled=enabled,
            min_api_version=min_api,
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["handles"] = list(self.handles)
        out["kv_prefixes"] = list(self.kv_prefixes)
        return out

    def with_overrides(self, **changes: Any) -> Manifest:
        """Apply CLI overrides, then validate the result like any manifest."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return Manifest.from_json({**self.to_json(), **changes}) if changes else self

    def sandbox_config(self) -> PluginConfig:
        return PluginConfig(
            name=self.name,
            permissions=Permissions.from_mapping(self.permissions),
            kv_prefixes=self.kv_prefixes,
            fuel_limit=self.fuel_limit,
            memory_limit_bytes=self.memory_limit,
            execution_timeout_s=self.execution_timeout_secs,
        )

    def info_mismatches(self, info: dict[str, Any]) -> list[str]:
        """The identity fields ("name", "version") on which a module's plugin_info disagrees
        with this manifest: an install refuses any, and the toolchain says so before one."""
        return [f for f in ("name", "version") if str(info.get(f)) != getattr(self, f)]

    def replace(self, **changes: Any) -> Manifest:
        return replace(self, **changes)
