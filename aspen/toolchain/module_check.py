"""Load a built plugin into the real sandbox (over an in-memory host) to check it the way a
node will: allowed imports only, the required exports, and what plugin_info says."""

from __future__ import annotations

from typing import Any

from aspen.manifest import Manifest
from sandbox import Runtime, SandboxError
from sandbox.memhost import probe_info


def inspect_wasm(wasm: bytes, manifest: Manifest) -> dict[str, Any]:
    """plugin_info of the module; ValueError with the sandbox's reason when a node would refuse it."""
    runtime = Runtime()
    try:
        return probe_info(runtime, wasm, manifest.sandbox_config())
    except SandboxError as exc:
        raise ValueError(f"{exc.code}: {exc.message}") from None
    finally:
        runtime.close()
