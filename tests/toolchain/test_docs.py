"""docs/PLUGIN_DEVELOPMENT.md stays true: its blocks marked `<!-- run -->` run as written.

The bash blocks run in order in one bash session (so the Quickstart's `cd my-plugin` carries
on), as an author would type them, against a real 3-node cluster; the python blocks run with
pytest from the directory the Quickstart started in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from deploy.launcher import LocalCluster
from tests.doc_blocks import marker_count, run_blocks
from tests.plugins.test_plugin_cli import cli
from tests.toolchain.conftest import REPO, author_env

DOC = REPO / "docs" / "PLUGIN_DEVELOPMENT.md"
SESSION_TIMEOUT_S = 900


def test_every_run_marker_is_followed_by_a_block() -> None:
    blocks = run_blocks(DOC)
    assert marker_count(DOC) == len(blocks["bash"]) + len(blocks["python"])
    assert len(blocks["bash"]) == 3 and len(blocks["python"]) == 1


def test_plugin_development_doc_runs_as_written(shared_cluster: LocalCluster, tmp_path: Path,
                                                wasm_toolchain: None) -> None:
    blocks = run_blocks(DOC)
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    env = author_env(home) | {
        "ASPEN_CLUSTER": shared_cluster.endpoints,
        "ASPEN_COOKIE": shared_cluster.cookie,
    }
    script = "set -euo pipefail\n" + "\n".join(blocks["bash"])
    try:
        r = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                           timeout=SESSION_TIMEOUT_S)
        assert r.returncode == 0, f"the doc's commands failed:\n{r.stdout}\n{r.stderr}"
        # What the doc says they print.
        assert (
            json.loads(r.stdout[r.stdout.index("{\n") : r.stdout.index("\n}\n") + 2])["message"] == "pong"
        ), r.stdout
        assert "Generated Ed25519 keypair" in r.stdout
        assert "Alice" in r.stdout  # plugin-keys list
        assert r.stdout.count("Ready on every node") == 2, r.stdout
        signed = json.loads((work / "my-plugin" / "plugin.json").read_text())
        public = (home / ".config" / "aspen" / "plugin-signing-key.pub").read_text().strip()
        assert signed["signature"]["public_key"] == public

        test_file = work / "test_doc_example.py"
        test_file.write_text("\n".join(blocks["python"]))
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                           cwd=work, env=env, capture_output=True, text=True, timeout=SESSION_TIMEOUT_S)
        assert r.returncode == 0, f"the doc's test kit example failed:\n{r.stdout}\n{r.stderr}"
        assert "1 passed" in r.stdout
    finally:
        # Leave the shared cluster as found for the tests after this one.
        cli(shared_cluster, "plugin", "remove", "my-plugin")
        public_file = home / ".config" / "aspen" / "plugin-signing-key.pub"
        if public_file.exists():
            cli(shared_cluster, "plugin-keys", "remove", public_file.read_text().strip())
