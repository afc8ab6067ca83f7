"""docs/SECRETS.md stays true: its `<!-- run -->` blocks (a cluster, the plugin, unseal, KV v2,
Transit) run as written, in one bash session from the repository's root, with the doc's /tmp/s
replaced by a directory of the test's own; and every request type the plugin handles is in the
doc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from aspen import secrets
from deploy.launcher import LocalCluster
from tests.doc_blocks import marker_count, run_blocks

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "SECRETS.md"


def test_every_run_marker_is_followed_by_a_bash_block() -> None:
    blocks = run_blocks(DOC)
    assert marker_count(DOC) == len(blocks["bash"]) >= 3 and not blocks["python"]


def test_every_request_type_is_documented() -> None:
    text = DOC.read_text()
    handles = json.loads(secrets.MANIFEST.read_text())["handles"]
    assert [h for h in handles if f"`{h}" not in text] == []


def test_the_doc_runs_as_written(tmp_path: Path, secrets_wasm: Path) -> None:
    cluster_dir = tmp_path / "s"
    script = "set -euo pipefail\n" + "\n".join(run_blocks(DOC)["bash"]).replace("/tmp/s", str(cluster_dir))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("ASPEN_CLUSTER", None)
    env.pop("ASPEN_COOKIE", None)
    try:
        r = subprocess.run(
            ["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, f"the doc's commands failed:\n{r.stdout}\n{r.stderr}"
        out = r.stdout.splitlines()
        # What the comments say.
        assert (
            "error: SEALED" in r.stderr
            and "CAS_MISMATCH" in r.stderr
            and "MIN_DECRYPTION_VERSION" in r.stderr
        )
        assert "initialized the barrier's data key; node" in r.stdout
        assert "hunter2" in out
        assert out.count("4111 1111 1111 1111") == 2
        assert "valid" in out
        assert any(line.startswith("aspen:v1:") for line in out)
        # No secret in clear in any node's data dir, and the unseal key is not in it either.
        unseal = (tmp_path / "s-unseal.key").read_text().strip()
        for path in cluster_dir.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for needle in (
                    b"hunter2",
                    b"correct-horse",
                    b"4111 1111",
                    unseal.encode(),
                    bytes.fromhex(unseal),
                ):
                    assert needle not in data, f"{needle!r} in {path}"
    finally:
        if (cluster_dir / "cluster.json").exists():
            LocalCluster(cluster_dir).down()
