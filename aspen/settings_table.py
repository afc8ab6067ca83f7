"""The `settings` meta table, typed: cluster-wide switches an operator sets (ClusterSetting),
each name -> on or off. One is known today, require_signatures (install refuses an unsigned
or untrusted plugin).

The registry handlers write and read it. The row is b"true" or b"false"; it is encoded and
decoded here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.state import StateMachine

TABLE = "settings"
REQUIRE_SIGNATURES = "require_signatures"
KNOWN = (REQUIRE_SIGNATURES,)


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    value: bool

    def encode(self) -> bytes:
        return b"true" if self.value else b"false"

    @classmethod
    def decode(cls, name: str, raw: bytes | None) -> Flag:
        """Anything but b"true", an absent row included, is off: a switch is off until set."""
        return cls(name, raw == b"true")


def flag(state: StateMachine, name: str) -> Flag:
    return Flag.decode(name, state.meta_get(TABLE, name))


def put_op(setting: Flag) -> list[Any]:
    return ["meta_put", TABLE, setting.name, setting.encode()]
