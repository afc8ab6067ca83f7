"""What a plugin may do: the guide's permission flags, KV prefixes and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox import limits

# Where a plugin without kv_prefixes keeps its keys: `__plugin:{name}:` (aspen/plugins/namespaces.py
# keeps other plugins out of it).
PLUGIN_NAMESPACE = "__plugin:"

PERMISSION_NAMES = (
    "kv_read",
    "kv_write",
    "blob_read",
    "blob_write",
    "cluster_info",
    "randomness",
    "signing",
    "timers",
    "hooks",
    "crypto",
    "barrier",  # ABI version 3
)


@dataclass(frozen=True, slots=True)
class Permissions:
    """All denied by default, as the guide says."""

    kv_read: bool = False
    kv_write: bool = False
    blob_read: bool = False
    blob_write: bool = False
    cluster_info: bool = False
    randomness: bool = False
    signing: bool = False
    timers: bool = False
    hooks: bool = False
    crypto: bool = False
    barrier: bool = False

    @classmethod
    def from_mapping(cls, raw: dict[str, Any] | None) -> Permissions:
        raw = raw or {}
        unknown = set(raw) - set(PERMISSION_NAMES)
        if unknown:
            raise ValueError(f"unknown permissions: {', '.join(sorted(unknown))}")
        for name, value in raw.items():
            if not isinstance(value, bool):
                raise ValueError(f"permission {name}: must be true or false")
        return cls(**raw)

    def to_mapping(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in PERMISSION_NAMES}


@dataclass(frozen=True, slots=True)
class PluginConfig:
    name: str
    permissions: Permissions = field(default_factory=Permissions)
    kv_prefixes: tuple[str, ...] = ()
    fuel_limit: int = limits.FUEL_DEFAULT
    memory_limit_bytes: int = limits.MEMORY_DEFAULT_BYTES
    execution_timeout_s: float = limits.TIMEOUT_DEFAULT_S

    def __post_init__(self) -> None:
        if not 0 < len(self.name) <= limits.NAME_MAX_CHARS:
            raise ValueError(f"plugin name must be 1 to {limits.NAME_MAX_CHARS} characters")
        if not 0 < self.fuel_limit <= limits.FUEL_MAX:
            raise ValueError(f"fuel_limit must be from 1 to {limits.FUEL_MAX}")
        if not limits.MEMORY_MIN_BYTES <= self.memory_limit_bytes <= limits.MEMORY_MAX_BYTES:
            raise ValueError(f"memory_limit must be from 64 KiB to {limits.MEMORY_MAX_BYTES} bytes")
        if not 0 < self.execution_timeout_s <= limits.TIMEOUT_MAX_S:
            raise ValueError(f"execution_timeout_secs must be above 0 and at most {limits.TIMEOUT_MAX_S:g}")
        if any(not p for p in self.kv_prefixes):
            raise ValueError("kv_prefixes: a prefix may not be empty")

    @property
    def effective_prefixes(self) -> tuple[str, ...]:
        """Empty kv_prefixes means the plugin's own namespace, `__plugin:{name}:`."""
        return self.kv_prefixes or (f"{PLUGIN_NAMESPACE}{self.name}:",)

    def key_allowed(self, key: str) -> bool:
        return key.startswith(self.effective_prefixes)  # str.startswith takes a tuple: one C call
