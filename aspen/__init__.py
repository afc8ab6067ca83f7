"""aspen package: `from aspen import Client, AsyncClient, AspenError`.

The names are imported on first use, so `import aspen.node` (or any submodule) does not load
the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wire.lazy import lazy_exports

if TYPE_CHECKING:
    from aspen.client import AsyncClient, Client
    from wire.errors import AspenError, ErrorCode

__all__ = ["AspenError", "AsyncClient", "Client", "ErrorCode"]

_HOMES = {"Client": "aspen.client", "AsyncClient": "aspen.client", "AspenError": "wire.errors",
          "ErrorCode": "wire.errors"}


__getattr__ = lazy_exports(__name__, _HOMES)
