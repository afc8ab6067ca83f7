"""aspen-cli automerge push|pull|heads|list|delete, with chunks from the real client."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from deploy.launcher import LocalCluster
from tests.automerge.conftest import JsClient
from tests.plugins.test_plugin_cli import cli


def test_the_cli_round_trip(am_cluster: LocalCluster, js: Callable[[], JsClient], tmp_path: Path) -> None:
    doc = "cli-doc"
    peer = js()
    peer.call("new", doc=doc)
    peer.call("many", doc=doc, n=30, fn="d.n = i")
    chunks = peer.each(doc)
    first = tmp_path / "first.bin"
    first.write_bytes(b"".join(chunks[:10]))
    r = cli(am_cluster, "automerge", "push", doc, str(first))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("stored 10, duplicate 0, rejected 0")
    mid_heads = cli(am_cluster, "automerge", "heads", doc).stdout.split()
    rest = tmp_path / "rest.bin"
    rest.write_bytes(b"".join(chunks[10:]) + b"\x85\x6f\x4a\x83junk")
    r = cli(am_cluster, "automerge", "push", doc, str(rest))
    assert r.returncode == 0 and "stored 20, duplicate 0, rejected 1" in r.stdout and "TRUNCATED" in r.stdout
    assert cli(am_cluster, "automerge", "heads", doc).stdout.split() == peer.state(doc)["heads"]

    out = tmp_path / "all.bin"
    r = cli(am_cluster, "--json", "automerge", "pull", doc, "-o", str(out), "--max-bytes", "500")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["changes"] == 30 and summary["pages"] > 1 and summary["heads"] == peer.state(doc)["heads"]
    fresh = js()
    fresh.load(doc, out.read_bytes())
    assert fresh.state(doc) == peer.state(doc)
    newer = tmp_path / "newer.bin"
    r = cli(am_cluster, "automerge", "pull", doc, "--heads", *mid_heads, "-o", str(newer))
    assert r.returncode == 0 and r.stdout.startswith("20 changes"), r.stdout + r.stderr

    assert doc in cli(am_cluster, "automerge", "list", "--prefix", "cli-").stdout.split()
    assert cli(am_cluster, "automerge", "delete", doc).stdout.startswith(f"deleted {doc}")
    assert doc not in cli(am_cluster, "automerge", "list").stdout.split()
    assert cli(am_cluster, "automerge", "delete", doc).stdout.strip() == f"no document {doc}"
    r = cli(am_cluster, "automerge", "heads", "bad:id")
    assert r.returncode == 1 and r.stderr.startswith("error: INVALID_REQUEST")
