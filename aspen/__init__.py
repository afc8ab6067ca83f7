"""aspen package: `from aspen import Client, AsyncClient, AspenError`.

The names are imported on first use, so `import aspen.node` (or any submodule) does not load
the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aspen.client import AsyncClient, Client
    from wire.errors import AspenError, ErrorCode

__all__ = ["AspenError", "AsyncClient", "Client", "ErrorCode"]

_HOMES = {"Client": "aspen.client", "AsyncClient": "aspen.client", "AspenError": "wire.errors",
          "ErrorCode": "wire.errors"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'aspen' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
