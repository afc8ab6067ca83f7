"""aspen.plugins: the node's side of WebAssembly plugins (docs/DESIGN.md, "Plugins in the cluster").

Public names, each from the module that holds it:
- PluginManager (manager.py): loads the registry's plugins on this node, routes requests to
  them, delivers their hook events and timers; RoutingTable is what it swaps in.
- PluginHandlers (registry_handlers.py): the registry's admin requests (install, list, ...).
- NodeHost (nodehost.py): sandbox's Host interface over the cluster, one per loaded plugin.
- PluginWorker (worker.py): a plugin's own thread; its calls run in order, in batches.
- LogRing (logring.py): a plugin's recent log lines and trap reports on this node.
- HookEvent (hooks.py): a commit event as a plugin sees it.
- KV_TYPES, find_conflict (namespaces.py): which namespace a plugin may claim, and which
  requests it is routed by key; the author toolchain uses these too.

Imported on first use, so `aspen.plugins.namespaces` (the toolchain's) loads none of the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wire.lazy import lazy_exports

if TYPE_CHECKING:
    from aspen.plugins.hooks import HookEvent
    from aspen.plugins.logring import LogRing
    from aspen.plugins.manager import PluginManager, RoutingTable
    from aspen.plugins.namespaces import KV_TYPES, find_conflict
    from aspen.plugins.nodehost import NodeHost
    from aspen.plugins.registry_handlers import PluginHandlers
    from aspen.plugins.worker import PluginWorker

__all__ = ["KV_TYPES", "HookEvent", "LogRing", "NodeHost", "PluginHandlers", "PluginManager", "PluginWorker",
           "RoutingTable", "find_conflict"]

_HOMES = {
    "HookEvent": "aspen.plugins.hooks",
    "KV_TYPES": "aspen.plugins.namespaces",
    "LogRing": "aspen.plugins.logring",
    "NodeHost": "aspen.plugins.nodehost",
    "PluginHandlers": "aspen.plugins.registry_handlers",
    "PluginManager": "aspen.plugins.manager",
    "PluginWorker": "aspen.plugins.worker",
    "RoutingTable": "aspen.plugins.manager",
    "find_conflict": "aspen.plugins.namespaces",
}


__getattr__ = lazy_exports(__name__, _HOMES)
