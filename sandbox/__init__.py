"""sandbox: runs plugin WebAssembly with wasmtime behind the permission-checked host API.

Public names: Runtime, PluginInstance, PluginState, PluginConfig, Permissions, Host,
HostError, SandboxError, SandboxCode, subject_matches, pattern_problem, InMemoryHost, ABI_VERSION.
It imports neither `cluster` nor `storage`, only the shared `wire` vocabulary. The names are
imported on first use, so `sandbox.limits` or `sandbox.permissions` (the manifest's vocabulary)
load without wasmtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wire.lazy import lazy_exports

if TYPE_CHECKING:
    from sandbox.abi import ABI_VERSION
    from sandbox.errors import HostError, SandboxCode, SandboxError
    from sandbox.host_interface import Host
    from sandbox.memhost import InMemoryHost
    from sandbox.patterns import pattern_problem, subject_matches
    from sandbox.permissions import Permissions, PluginConfig
    from sandbox.runtime import PluginInstance, PluginState, Runtime

__all__ = [
    "ABI_VERSION",
    "Host",
    "HostError",
    "InMemoryHost",
    "Permissions",
    "PluginConfig",
    "PluginInstance",
    "PluginState",
    "Runtime",
    "SandboxCode",
    "SandboxError",
    "pattern_problem",
    "subject_matches",
]

_HOMES = {
    "ABI_VERSION": "sandbox.abi",
    "Host": "sandbox.host_interface",
    "HostError": "sandbox.errors",
    "InMemoryHost": "sandbox.memhost",
    "Permissions": "sandbox.permissions",
    "PluginConfig": "sandbox.permissions",
    "PluginInstance": "sandbox.runtime",
    "PluginState": "sandbox.runtime",
    "Runtime": "sandbox.runtime",
    "SandboxCode": "sandbox.errors",
    "SandboxError": "sandbox.errors",
    "pattern_problem": "sandbox.patterns",
    "subject_matches": "sandbox.patterns",
}


__getattr__ = lazy_exports(__name__, _HOMES)
