"""The README's "Using a cluster" session runs as written (its `<!-- run -->` block), from the
repository root, with /tmp/c replaced by a directory of the test's own and .venv/bin by the
directory of the interpreter running the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import blake3

from deploy.launcher import LocalCluster
from tests.doc_blocks import marker_count, run_blocks

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def test_the_readme_cluster_session_runs_as_written(tmp_path: Path) -> None:
    blocks = run_blocks(README)
    assert marker_count(README) == len(blocks["bash"]) + len(blocks["python"]) == 2
    cluster_dir = tmp_path / "c"
    script = "set -euo pipefail\n" + blocks["bash"][0]
    script = script.replace("/tmp/c", str(cluster_dir)).replace(
        ".venv/bin/", f"{Path(sys.executable).parent}/"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ASPEN_CLUSTER", "ASPEN_COOKIE")}
    try:
        r = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, f"the README's commands failed:\n{r.stdout}\n{r.stderr}"
        lines = r.stdout.splitlines()
        assert "hello" in lines  # kv get greeting
        assert blake3.blake3(README.read_bytes()).hexdigest() in r.stdout  # blob put
        assert "deleted 1" in lines and "leader is node 2" in lines  # kv delete --prefix, cluster move-leader
        assert "PUT greeting hello revision=1" in lines  # kv watch from revision 1
        assert any(line.startswith("saved ") and " blake3 " in line for line in lines)  # snapshot save
        assert any(
            line.startswith("leader: ") and line != "leader: none" for line in lines
        )  # aspen-cluster status
        assert not cluster_dir.exists()  # down --purge
    finally:
        if (cluster_dir / "cluster.json").exists():
            LocalCluster(cluster_dir).down(purge=True)


def test_the_readme_python_example_runs_as_written(tmp_path: Path) -> None:
    """Against a cluster made as the README's session makes it (--tls), with its exports."""
    (code,) = run_blocks(README)["python"]
    cluster = LocalCluster(tmp_path / "c", tls=True)
    cluster.up(3)
    try:
        env = dict(os.environ)
        for line in cluster.exports().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value.strip("'")
        r = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["hello", "CAS_FAILED"]
    finally:
        cluster.down(purge=True)
