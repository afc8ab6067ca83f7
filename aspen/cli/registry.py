"""The command registry: each group module adds its commands here, none edits another.

A module in aspen/cli/ with a `register(commands: Commands)` function is a command group
(Commands also answers `add_parser` like argparse's subparsers action, for simple modules);
`discover()` finds them all, so adding `aspen/cli/plugin.py` adds `aspen-cli plugin ...`.
Two modules may add commands to the same group (e.g. `cluster status` here and
`cluster add-node` elsewhere): `group()` returns the existing one.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from aspen.client import Client

# (args, client) -> what to print: str, dict, bytes, list, or None for nothing.
CommandHandler = Callable[[argparse.Namespace, Client], Any]

_NOT_GROUPS = frozenset({"output", "registry", "connect"})


class UsageError(ValueError):
    """A command line that parses but cannot mean anything: exit status 2."""


@dataclass(frozen=True)
class Outcome:
    """What to print and a status other than 0: `kv get missing --json` prints the result and
    still exits 1, as it does without --json."""

    result: Any
    status: int


class Commands:
    def __init__(self, root: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
        self._root = root
        self._common = common
        self._groups: dict[str, argparse._SubParsersAction] = {}  # type: ignore[type-arg]

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A top-level parser, for modules written against a bare argparse subparsers action."""
        return self._root.add_parser(name, **kwargs)

    def top(self, name: str, handler: CommandHandler, help: str) -> argparse.ArgumentParser:
        """A command without a group (`aspen-cli rpc TYPE`), with the common options too."""
        parser: argparse.ArgumentParser = self._root.add_parser(name, help=help, description=help,
                                                                parents=[self._common])
        parser.set_defaults(handler=handler)
        return parser

    def group(self, name: str, help: str) -> argparse._SubParsersAction:  # type: ignore[type-arg]
        sub = self._groups.get(name)
        if sub is None:
            parser = self._root.add_parser(name, help=help, description=help)
            sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
            self._groups[name] = sub
        return sub

    def command(self, group: str, name: str, handler: CommandHandler, help: str) -> argparse.ArgumentParser:
        """A leaf command; it accepts the common options (--json) after its name too."""
        if group not in self._groups:
            raise KeyError(f"command group {group!r} is not registered yet")
        parser: argparse.ArgumentParser = self._groups[group].add_parser(
            name, help=help, description=help, parents=[self._common]
        )
        parser.set_defaults(handler=handler)
        return parser


def discover(package: ModuleType) -> list[ModuleType]:
    """Command group modules of `package`, ordered by their ORDER (default 100), then name."""
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in _NOT_GROUPS:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if callable(getattr(module, "register", None)):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))
