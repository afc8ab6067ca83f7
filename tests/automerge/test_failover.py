"""A leader SIGKILLed while a client pushes: no acknowledged change is lost."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aspen import automerge
from deploy.launcher import LocalCluster
from tests.automerge.conftest import JsClient
from tests.plugins.test_plugin_cli import cli
from wire.errors import AspenError

CHANGES, BATCH = 300, 5
ATTEMPTS_MAX = 60


def test_leader_sigkill_mid_push_loses_no_acknowledged_change(cluster: LocalCluster, automerge_wasm: Path,
                                                              js: Callable[[], JsClient]) -> None:
    r = cli(
        cluster, "plugin", "install", str(automerge_wasm), "--manifest", str(automerge.MANIFEST), "--wait"
    )
    assert r.returncode == 0, r.stderr
    doc = "failover"
    peer = js()
    peer.call("new", doc=doc)
    peer.call("many", doc=doc, n=CHANGES, fn="d['k' + (i % 7)] = i")
    chunks = peer.each(doc)
    hashes = peer.call("hash", changes=[base64.b64encode(c).decode() for c in chunks])["hashes"]
    acknowledged: list[str] = []
    failures: list[BaseException] = []
    halfway = threading.Event()

    def pusher() -> None:
        # Pushes are idempotent, so any failure (the node died, an election, an unknown
        # outcome) is retried as is: a change stored by a lost attempt comes back a duplicate.
        try:
            with cluster.client(timeout_s=15) as c:
                for start in range(0, CHANGES, BATCH):
                    for _attempt in range(ATTEMPTS_MAX):
                        try:
                            r = automerge.push(c, doc, b"".join(chunks[start:start + BATCH]))
                            break
                        except AspenError:
                            time.sleep(0.2)
                    else:
                        raise AssertionError(f"batch at {start}: {ATTEMPTS_MAX} failed attempts")
                    assert r["stored"] + r["duplicate"] == BATCH and r["rejected"] == 0, r
                    acknowledged.extend(hashes[start:start + BATCH])
                    if start >= CHANGES // 3:
                        halfway.set()
                        time.sleep(0.05)  # the rest paced, so the kill lands while pushes go on
        except BaseException as exc:
            failures.append(exc)
            halfway.set()

    thread = threading.Thread(target=pusher)
    thread.start()
    assert halfway.wait(timeout=120)
    old = cluster.wait_leader()
    cluster.kill(old)
    acknowledged_at_kill = len(acknowledged)
    thread.join(timeout=300)
    assert acknowledged_at_kill < CHANGES  # the kill came mid-stream
    assert not failures, failures
    assert len(acknowledged) == CHANGES
    survivor = next(n for n in sorted(cluster.nodes) if n != old)
    with cluster.client([survivor], discover_leader=False, timeout_s=15) as c:
        pulled = automerge.pull_all(c, doc)
        stored = set(peer.call("hash", changes=[base64.b64encode(x).decode()
                                                for x in automerge.split_chunks(pulled.changes)])["hashes"])
        assert set(acknowledged) <= stored and pulled.count == CHANGES
        assert automerge.heads(c, doc)["heads"] == peer.state(doc)["heads"]
    fresh = js()
    fresh.load(doc, pulled.changes)
    assert fresh.state(doc) == peer.state(doc)
