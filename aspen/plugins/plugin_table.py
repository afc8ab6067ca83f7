"""The `plugins` meta table, typed: each plugin's registry name -> its PluginRecord; and the
`plugin_registry/version` row every install moves.

The registry handlers write it (install, enable, disable, remove, reload) and read it; the
manager loads what it says; the node reads the namespaces it claims. The row is a msgpack map
(the manifest's JSON as installed, plus reload_seq); it is encoded and decoded here and
nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from aspen.manifest import Manifest
from storage.state import StateMachine

TABLE = "plugins"
# Every install moves this row: an install's namespace check holds for the registry it read only
# (the write is one meta_cas_all of the entry and this row).
VERSION_TABLE, VERSION_KEY = "plugin_registry", "version"
RELOAD_SEQ = "reload_seq"  # not a manifest field: bumped by every install and reload


@dataclass(frozen=True, slots=True)
class PluginRecord:
    """One row. `fields` is the map as stored, key order included, and is never changed in
    place: a change makes a new record from a copy, so it encodes to the bytes the registry
    always wrote for that change (a row's bytes tell the manager whether to reload)."""

    fields: dict[str, Any]

    @classmethod
    def new(cls, manifest: Manifest, reload_seq: int) -> PluginRecord:
        return cls({**manifest.to_json(), RELOAD_SEQ: reload_seq})

    def encode(self) -> bytes:
        return msgpack.packb(self.fields, use_bin_type=True)

    @classmethod
    def decode(cls, raw: bytes) -> PluginRecord:
        """Raises ValueError when the row is not a map (msgpack's own errors are ValueErrors too)."""
        rec = msgpack.unpackb(raw, raw=False)
        if not isinstance(rec, dict):
            raise ValueError("registry record is not a map")
        return cls(rec)

    @property
    def enabled(self) -> bool:
        return bool(self.fields.get("enabled", True))

    @property
    def reload_seq(self) -> int:
        return self.fields.get(RELOAD_SEQ, 0)  # as stored, unconverted: a reload adds one to it

    @property
    def kv_prefixes(self) -> Any:
        """As stored (a manifest checks it); () when absent."""
        return self.fields.get("kv_prefixes") or ()

    def get(self, field: str) -> Any:
        """A stored field as it is (None when absent): what PluginList shows."""
        return self.fields.get(field)

    def as_json(self) -> dict[str, Any]:
        return dict(self.fields)

    def manifest_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.fields.items() if k != RELOAD_SEQ}

    def with_enabled(self, enabled: bool) -> PluginRecord:
        return PluginRecord({**self.fields, "enabled": enabled})

    def reloaded(self) -> PluginRecord:
        return PluginRecord({**self.fields, RELOAD_SEQ: self.reload_seq + 1})


def raw_records(state: StateMachine) -> dict[str, bytes]:
    """Every row as stored, by name (the manager compares bytes to tell a change)."""
    return dict(state.meta_items(TABLE))


def raw_record(state: StateMachine, name: str) -> bytes | None:
    return state.meta_get(TABLE, name)


def version(state: StateMachine) -> bytes | None:
    return state.meta_get(VERSION_TABLE, VERSION_KEY)


def cas_op(name: str, expected: bytes | None, new: PluginRecord | None) -> list[Any]:
    """Change (or, with None, remove) a row only if it still holds `expected`."""
    return ["meta_cas", TABLE, name, expected, None if new is None else new.encode()]


def install_op(name: str, expected: bytes | None, new: PluginRecord, seen_version: bytes | None) -> list[Any]:
    """Write the row and move the version row, both only if unchanged since they were read."""
    next_version = str(int(seen_version or b"0") + 1).encode()
    return [
        "meta_cas_all",
        [[TABLE, name, expected, new.encode()], [VERSION_TABLE, VERSION_KEY, seen_version, next_version]],
    ]
