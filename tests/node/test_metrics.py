"""Each node's Prometheus endpoint: Raft, requests, plugins, blobs."""

from __future__ import annotations

import re
import urllib.request

import pytest

from aspen.client import Client
from deploy.launcher import LocalCluster
from tests.plugins.test_plugins_cluster import eventually, install
from tests.plugins.wat import manifest, plugin
from wire.errors import AspenError


def scrape(cluster: LocalCluster, node_id: int) -> str:
    port = cluster.nodes[node_id].metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_metrics_endpoint(shared_cluster: LocalCluster) -> None:
    leader = shared_cluster.wait_leader()
    with shared_cluster.client() as c:
        c.put("metrics/k", b"v")
        c.put_blob(b"metrics blob")
        install(c, plugin("mping", "1.0.0", {"type": "P"}), manifest("mping", "1.0.0", ["MetricsPing"]))
        eventually(lambda: c.request("MetricsPing")["type"] == "P")
    intruder = Client(
        [shared_cluster.nodes[leader].client_addr], "not-the-cluster-cookie-0", 5.0, retries_max=1
    )
    try:
        with pytest.raises(AspenError):
            intruder.ping()
    finally:
        intruder.close()
    text = scrape(shared_cluster, leader)
    assert 'aspen_client_refusals_total{reason="cookie"} 1.0' in text
    for needle in (
        'aspen_raft_role{role="leader"} 1.0',
        "aspen_raft_term",
        "aspen_raft_commit_index",
        'aspen_requests_total{outcome="ok",type="WriteKey"}',
        "aspen_request_duration_seconds_bucket",
        'aspen_plugin_calls{plugin="mping"}',
        'aspen_plugin_state{plugin="mping",state="Ready"} 1.0',
        "aspen_blob_bytes",
        "aspen_plugin_hook_events_dropped",
        'aspen_client_connections{state="handshake"}',
        'aspen_client_connections{state="authenticated"}',
        'aspen_client_refusals_total{reason="cookie"}',
        'aspen_client_refusals_total{reason="tag"}',
    ):
        assert needle in text, needle
    follower = next(n for n in shared_cluster.nodes if n != leader)
    assert 'aspen_raft_role{role="follower"} 1.0' in scrape(shared_cluster, follower)
    # The journal's fdatasyncs, on both: etcd's buckets, and the writes above counted.
    for node_text in (text, scrape(shared_cluster, follower)):
        counts = re.search(r"^aspen_disk_journal_fsync_duration_seconds_count (\S+)$", node_text, re.M)
        assert counts is not None and float(counts.group(1)) > 0, node_text[-2000:]
        assert 'aspen_disk_journal_fsync_duration_seconds_bucket{le="0.008"}' in node_text
        assert 'aspen_disk_journal_fsync_duration_seconds_bucket{le="+Inf"}' in node_text


def test_request_labels_stay_bounded(shared_cluster: LocalCluster) -> None:
    """A client may send any type name and a plugin may answer with any error code: neither
    becomes a label of its own (each would be a series kept forever)."""
    leader = shared_cluster.wait_leader()
    with shared_cluster.client([leader], discover_leader=False) as c:
        install(c, plugin("mcodes", "1.0.0", {"type": "Error", "code": "MADE_UP_CODE_42", "message": "x"}),
                manifest("mcodes", "1.0.0", ["MetricsCodes"]))
        eventually(lambda: _code_of(c, "MetricsCodes") == "MADE_UP_CODE_42")
        for i in range(3):
            assert _code_of(c, f"NoSuchType{i}") == "UNKNOWN_REQUEST"
    text = scrape(shared_cluster, leader)
    assert 'aspen_requests_total{outcome="other_error",type="MetricsCodes"}' in text
    assert "MADE_UP_CODE_42" not in text and "NoSuchType" not in text
    assert 'aspen_requests_total{outcome="UNKNOWN_REQUEST",type="other"}' in text


def _code_of(c: object, rtype: str) -> str | None:
    try:
        response = c.request(rtype)  # type: ignore[attr-defined]
    except AspenError as exc:
        return exc.code
    return response.get("code")
