"""Talking to the secrets plugin (plugins/secrets, docs/SECRETS.md) from Python: where it is
built, and the request types. Used by `aspen-cli secrets`, the tests and the benchmark."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parent.parent
PLUGIN_DIR = REPO / "plugins" / "secrets"
MANIFEST = PLUGIN_DIR / "plugin.json"
WASM = PLUGIN_DIR / "target" / "wasm32-unknown-unknown" / "release" / "aspen_secrets.wasm"
NAMESPACE = "secrets:"
CIPHERTEXT = re.compile(r"aspen:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]*={0,2})\Z")
DURATION = re.compile(r"([0-9]{1,12})(ms|s|m|h|d)?\Z")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


class Requester(Protocol):
    def request(self, rtype: str, **fields: Any) -> dict[str, Any]: ...


def duration_ms(text: str) -> int:
    """Vault's durations: `30s`, `10m`, `2h`, `7d`, `500ms`; a bare number is seconds."""
    m = DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 10m, 2h, 7d)")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def kv_put(c: Requester, path: str, data: dict[str, Any], cas: int | None = None) -> dict[str, Any]:
    return c.request("SecretsKvPut", path=path, data=data, cas=cas)


def kv_get(c: Requester, path: str, version: int | None = None) -> dict[str, Any]:
    return c.request("SecretsKvGet", path=path, version=version)


INSTALL_WAIT_S = 60.0


def install(c: Requester, timeout_s: float = INSTALL_WAIT_S) -> dict[str, Any]:
    """Install the built plugin (`make secrets-plugin`) and wait until every reachable node runs
    it: what `aspen-cluster up --with secrets` does. FileNotFoundError names the build step."""
    import json
    import time

    from aspen.cli.plugin import wait_ready

    if not WASM.is_file():
        raise FileNotFoundError(f"{WASM} is not built: run `make secrets-plugin` first")
    manifest = json.loads(MANIFEST.read_text())
    r = c.request("PluginInstall", manifest=manifest, wasm=WASM.read_bytes())
    started = time.monotonic()
    wait_ready(c, r["name"], r["version"], timeout_s)  # type: ignore[arg-type]
    return {**r, "seconds": round(time.monotonic() - started, 3)}
