"""sandbox: runs plugin WebAssembly with wasmtime behind the permission-checked host API.

Public names: Runtime, PluginInstance, PluginState, PluginConfig, Permissions, Host,
HostError, SandboxError, SandboxCode, subject_matches, pattern_problem, InMemoryHost, ABI_VERSION.
It imports neither `cluster` nor `storage`.
"""

from sandbox.abi import ABI_VERSION
from sandbox.errors import HostError, SandboxCode, SandboxError
from sandbox.host import Host
from sandbox.patterns import pattern_problem, subject_matches
from sandbox.permissions import Permissions, PluginConfig
from sandbox.runtime import PluginInstance, PluginState, Runtime
from sandbox.testing import InMemoryHost

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
