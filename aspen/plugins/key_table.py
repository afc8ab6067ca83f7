"""The `plugin_keys` meta table, typed: the Ed25519 keys trusted to sign plugins, each public
key (lower-case hex) -> the label an operator gave it.

The registry handlers write it (PluginKeysAdd, PluginKeysRemove) and read it (PluginKeysList,
and install's signature check). The row is the label's UTF-8; it is encoded and decoded here
and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.state import StateMachine

TABLE = "plugin_keys"


@dataclass(frozen=True, slots=True)
class TrustedKey:
    public_key: str  # the row's key: 64 lower-case hex characters, checked by the handler
    name: str  # the row's value

    def encode(self) -> bytes:
        return self.name.encode()

    @classmethod
    def decode(cls, public_key: str, raw: bytes) -> TrustedKey:
        return cls(public_key, raw.decode())


def trusted(state: StateMachine) -> dict[str, str]:
    """Public key -> label: what signing.verify takes."""
    return {key.public_key: key.name for key in records(state)}


def records(state: StateMachine) -> list[TrustedKey]:
    return [TrustedKey.decode(public_key, raw) for public_key, raw in state.meta_items(TABLE)]


def put_op(key: TrustedKey) -> list[Any]:
    return ["meta_put", TABLE, key.public_key, key.encode()]


def delete_op(public_key: str) -> list[Any]:
    return ["meta_del", TABLE, public_key]
