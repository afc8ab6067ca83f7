"""The automerge plugin against the real Automerge client (@automerge/automerge, pinned in
tests/automerge/js/package.json) on a real 3-node cluster.

deploy/automerge-js.sh installs Debian's nodejs/npm and the pinned package when they are
missing (`make test` runs it first; so does this conftest, for a direct pytest run). There is
no skip: a machine that cannot install them fails these tests.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aspen import automerge
from deploy.launcher import LocalCluster
from tests.plugins.test_plugin_cli import cli
from tests.toolchain.conftest import cargo

JS_DIR = Path(__file__).resolve().parent / "js"
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "automerge-js.sh"
NODE_TIMEOUT_S = 120


class JsClient:
    """One node process running tests/automerge/js/worker.js: a real Automerge peer."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", str(JS_DIR / "worker.js")], cwd=JS_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        line = self.proc.stdout.readline()
        assert line, f"the node worker died during {op}"
        answer = json.loads(line)
        if "error" in answer:
            raise JsError(answer["error"])
        return answer["ok"]

    # Bytes cross the pipe as base64: these convert.
    def since(self, doc: str, heads: list[str]) -> bytes:
        return base64.b64decode(self.call("since", doc=doc, heads=heads)["changes"])

    def each(self, doc: str) -> list[bytes]:
        return [base64.b64decode(c) for c in self.call("each", doc=doc)["changes"]]

    def apply(self, doc: str, changes: bytes) -> dict[str, Any]:
        return self.call("apply", doc=doc, changes=base64.b64encode(changes).decode())

    def load(self, doc: str, changes: bytes) -> dict[str, Any]:
        return self.call("load", doc=doc, changes=base64.b64encode(changes).decode())

    def state(self, doc: str) -> dict[str, Any]:
        return self.call("state", doc=doc)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class JsError(Exception):
    """The Automerge client threw."""


@pytest.fixture(scope="session")
def automerge_js() -> None:
    r = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"deploy/automerge-js.sh failed:\n{r.stdout}\n{r.stderr}"


@pytest.fixture
def js(automerge_js: None) -> Iterator[Callable[[], JsClient]]:
    """`js()` starts another Automerge client; all are stopped after the test."""
    clients: list[JsClient] = []

    def start() -> JsClient:
        clients.append(JsClient())
        return clients[-1]

    yield start
    for c in clients:
        c.close()


@pytest.fixture(scope="session")
def automerge_wasm() -> Path:
    """plugins/automerge built as make builds it."""
    cargo("aspen-plugin", "build", "--release", cwd=automerge.PLUGIN_DIR)
    assert automerge.WASM.is_file()
    return automerge.WASM


@pytest.fixture(scope="module")
def am_cluster(shared_cluster: LocalCluster, automerge_wasm: Path) -> LocalCluster:
    r = cli(
        shared_cluster,
        "plugin",
        "install",
        str(automerge_wasm),
        "--manifest",
        str(automerge.MANIFEST),
        "--wait",
    )
    assert r.returncode == 0, r.stderr
    return shared_cluster
