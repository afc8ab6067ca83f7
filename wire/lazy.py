"""A package's public names, imported from their modules on first use (PEP 562).

aspen, aspen.plugins and sandbox name their public classes in their __init__, but importing
the package must not load them all: the client, the CLI and the author toolchain import
`aspen`, `aspen.plugins.namespaces` or `sandbox.limits` without the rest.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module __getattr__ that imports `name` from `homes[name]` when first asked for."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home), name)

    return __getattr__
