"""Run one plugin call in a fresh Python process and report how much its peak RSS grew.

A subprocess, because a test process's own peak says nothing after other tests ran; the peak is
reset (/proc/self/clear_refs) after the plugin is loaded, so the growth is the call's alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MIB = 1024 * 1024

_SCRIPT = r"""
import json, sys
from pathlib import Path
from sandbox import InMemoryHost, Permissions, PluginConfig, Runtime

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

args = json.loads(sys.argv[1])
runtime = Runtime()
cfg = args["config"]
cfg["permissions"] = Permissions(**cfg.get("permissions", {}))
cfg["kv_prefixes"] = tuple(cfg.get("kv_prefixes", ()))
plugin = runtime.load(Path(args["wasm"]).read_bytes(), PluginConfig(**cfg), InMemoryHost())
plugin.init()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS to the current RSS
before = kib("VmRSS")
response = plugin.handle_request({"type": "X"})
grown = kib("VmHWM") - before
scalars = {k: v for k, v in response.items() if isinstance(v, (str, int))}
print(json.dumps({"response": scalars, "grown": grown}))
"""


def call_in_subprocess(wasm: bytes, config: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(the handle_request response's scalar fields, peak RSS growth in bytes during the call)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "guest.wasm"
        path.write_bytes(wasm)
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(
            [sys.executable, "-c", _SCRIPT, json.dumps({"wasm": str(path), "config": config})],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=120,
            check=False,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["response"], result["grown"]
