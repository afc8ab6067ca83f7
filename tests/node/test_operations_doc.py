"""docs/OPERATIONS.md stays true: its `<!-- run -->` blocks (membership, rolling restart, backup
and restore of a node and of a whole cluster, snapshots, range deletes, move-leader) run as
written, in one bash session, with the doc's /tmp/c replaced by a directory of the test's own."""

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
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(DOC.parents[1]),
    }
    env.pop("ASPEN_CLUSTER", None)
    env.pop("ASPEN_COOKIE", None)
    try:
        r = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=SESSION_TIMEOUT_S,
        )
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
        said = [
            line
            for line in r.stdout.splitlines()
            if not re.match(r"node \d+ (stopped|started|killed)|stopped \d+ node", line)
        ]
        text = "\n".join(said)
        assert (
            "\nbefore\nOK revision=2\nwritten-after-the-backup\nwritten-after-the-backup\n"
            "OK revision=3\nkept\n" in text
        ), r.stdout[-1500:]
        # Snapshots: a range delete, the leader moved, a snapshot saved, checked and restored
        # into a new cluster that holds the same keys.
        assert re.search(
            r"\nkept\nOK revision=4\nOK revision=5\nOK revision=6\ndeleted 2\n"
            r"PUT snap/a 1 revision=4\nPUT snap/old/1 x revision=5\nPUT snap/old/2 y revision=6\n"
            r"DELETE snap/old/1 revision=7\nDELETE snap/old/2 revision=7\n"
            r"lease 7 granted with TTL 60s\nOK revision=8\nlease 7 kept alive with TTL 60s\n"
            r"lease 7 revoked \(1 keys deleted\)\nleader is node 2\n"
            r"saved .*backup\.snap: \d+ bytes from node 2, revision 9, \d+ keys, .* blake3 [0-9a-f]{64}\n"
            r".*backup\.snap: ok, revision 9, \d+ keys, applied index \d+\n1\nkept$",
            text,
        ), r.stdout[-1500:]
        assert "\nhealthy\n" in r.stdout  # cluster health, after node 4 left
    finally:
        for d in (cluster_dir, tmp_path / "c-restored"):
            if (d / "cluster.json").exists():
                LocalCluster(d).down()
