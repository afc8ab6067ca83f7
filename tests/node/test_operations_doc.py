"""docs/OPERATIONS.md stays true: its `<!-- run -->` blocks (membership, rolling restart, backup
and restore of a node and of a whole cluster) run as written, in one bash session, with the
doc's /tmp/c replaced by a directory of the test's own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from deploy.launcher import LocalCluster
from tests.doc_blocks import marker_count, run_blocks

DOC = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"
SESSION_TIMEOUT_S = 300


def test_every_run_marker_is_followed_by_a_bash_block() -> None:
    blocks = run_blocks(DOC)
    assert marker_count(DOC) == len(blocks["bash"]) >= 1 and not blocks["python"]


def test_operations_doc_runs_as_written(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "c"
    script = "set -euo pipefail\n" + "\n".join(blocks for blocks in run_blocks(DOC)["bash"])
    script = script.replace("/tmp/c", str(cluster_dir))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(DOC.parents[1])}
    env.pop("ASPEN_CLUSTER", None)
    env.pop("ASPEN_COOKIE", None)
    try:
        r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=SESSION_TIMEOUT_S)
        assert r.returncode == 0, f"the doc's commands failed:\n{r.stdout}\n{r.stderr}"
        # What the comments say the two status commands show: node 4 joined, then gone.
        statuses = re.findall(r"^node \d+ answered; leader: .*\n.*\n((?:  node .*\n)+)", r.stdout, re.M)
        assert len(statuses) == 2, r.stdout
        assert re.search(r"node 4: (follower|leader)\s.*connected", statuses[0]), statuses[0]
        assert re.findall(r"node (\d+):", statuses[1]) == ["1", "2", "3"], statuses[1]
        # The rolling restart kept the write; node 3, restored from its backup and then from an
        # empty dir, caught up with the write made after the backup, read from it alone.
        # The whole cluster, restored from node 1's backup with nodes 2 and 3 empty, kept its data.
        # (aspen-cluster's own lines, "node 3 stopped" and the like, left out.)
        said = [line for line in r.stdout.splitlines()
                if not re.match(r"node \d+ (stopped|started|killed)|stopped \d+ node", line)]
        assert "\n".join(said).endswith(
            "\nbefore\nOK revision=2\nwritten-after-the-backup\nwritten-after-the-backup\nOK revision=3\nkept"
        ), r.stdout[-500:]
        assert "\nhealthy\n" in r.stdout  # cluster health, after node 4 left
    finally:
        if (cluster_dir / "cluster.json").exists():
            LocalCluster(cluster_dir).down()
