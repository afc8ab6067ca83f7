"""The secrets plugin built as make builds it, in the test kit (real sandbox, in-memory host with
a data key) and on real clusters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aspen import secrets
from aspen.testing import PluginHarness
from tests.toolchain.conftest import cargo


@pytest.fixture(scope="session")
def secrets_wasm() -> Path:
    cargo("aspen-plugin", "build", "--release", cwd=secrets.PLUGIN_DIR)
    assert secrets.WASM.is_file()
    return secrets.WASM


class Kit:
    """The plugin in the test kit; requests carry `caller` as the node would set it."""

    def __init__(self, harness: PluginHarness) -> None:
        self.h = harness

    def __call__(self, rtype: str, caller: str = "root", **fields: Any) -> dict[str, Any]:
        return self.h.request(rtype, caller=caller, **fields)

    def ok(self, rtype: str, caller: str = "root", **fields: Any) -> dict[str, Any]:
        r = self(rtype, caller, **fields)
        assert r["type"] != "Error", r
        return r

    def err(self, rtype: str, code: str, caller: str = "root", **fields: Any) -> str:
        """The error's message, asserting its code, and that the namespace did not change."""
        before = dict(self.h.kv)
        r = self(rtype, caller, **fields)
        assert r["type"] == "Error" and r["code"] == code, r
        assert self.h.kv == before, f"{rtype} failed with {code} but changed the store"
        return r["message"]


@pytest.fixture
def kit(secrets_wasm: Path) -> Iterator[Kit]:
    with PluginHarness.load(secrets_wasm, json.loads(secrets.MANIFEST.read_text())) as h:
        yield Kit(h)
