"""`make run`'s program: a 3-node cluster serving the greeter plugin through every node."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deploy.launcher import LocalCluster


def run_demo(cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.demo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"},
    )


def test_demo_serves_a_plugin_through_every_node(tmp_path: Path) -> None:
    r = run_demo(tmp_path, timeout_s=300)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "read  demo/greeting through node 3: 'hello from node 1'" in r.stdout
        for node in (1, 2, 3):
            assert (
                f"Greet through node {node}: 'hello from a WASM plugin' (served by node {node})" in r.stdout
            )
        assert "export ASPEN_COOKIE=" in r.stdout
        assert (
            "export ASPEN_CACERT=" in r.stdout
            and "(TLS: CA and certificates in .aspen-demo/tls/)" in r.stdout
        )
        # The Rust example, built, signed and installed the author's way, counts across nodes.
        assert "installed kv-counter 0.1.0 with --verify-signature" in r.stdout
        for node in (1, 2, 3):
            assert f"kv set counter:demo increment through node {node}: count {node}" in r.stdout
        assert "kv get counter:demo: 3" in r.stdout
        # `make run` again: the running cluster is kept, data and all (it was wiped silently).
        again = run_demo(tmp_path, timeout_s=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "A demo cluster is already running in .aspen-demo/" in again.stdout
        assert "aspen-cluster down --dir .aspen-demo --purge" in again.stdout
        with LocalCluster(tmp_path / ".aspen-demo").client() as c:
            assert c.get("counter:demo")["value"] == b"3"
    finally:
        LocalCluster(tmp_path / ".aspen-demo").down(purge=True)
