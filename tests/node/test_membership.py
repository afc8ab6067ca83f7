"""Scaling 3 -> 5 -> 3 under client load: no acknowledged write lost, new nodes catch up."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from cluster.raft import JOINING_MARKER
from deploy.launcher import LocalCluster
from tests.plugins.test_plugins_cluster import eventually, hook_plugin, install, pinger
from tests.plugins.wat import manifest
from wire.errors import AspenError


def test_scale_out_and_in_under_load(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        blob = c.put_blob(b"blob before scaling" * 1000)["hash"]
        install(c, pinger("1.0.0"), manifest("pinger", "1.0.0", ["PluginPing"]))
        install(c, hook_plugin("mwatch", b"hooks.cluster.membership_changed"),
                manifest("mwatch", "1.0.0", ["MWatch"], kv_prefixes=["mwatch:"],
                         permissions={"hooks": True, "kv_write": True}))
        eventually(
            lambda: all(
                st.get("subscriptions") for st in c.request("PluginInfo", name="mwatch")["nodes"].values()
            )
        )
    acked: dict[str, bytes] = {}
    errors: list[Exception] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        with cluster.client(timeout_s=20) as c:
            while not stop.is_set() and i < 100_000:
                key, value = f"scale/{i}", b"%d" % i
                try:
                    c.put(key, value)
                    acked[key] = value
                except AspenError as exc:
                    errors.append(exc)  # allowed (e.g. a leader change); only acked writes count
                i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        n4 = cluster.add_node()
        n5 = cluster.add_node()
        for nid in (n4, n5):
            with cluster.client([nid], discover_leader=False, timeout_s=20) as cn:
                eventually(lambda cn=cn: cn.request("HasBlob", hash=blob, local=True)["exists"], timeout_s=30,
                           what=f"node {nid} fetching blobs")
                eventually(lambda cn=cn: cn.request("PluginPing")["type"] == "PluginPong", timeout_s=30,
                           what=f"node {nid} loading plugins")
        with cluster.client() as c:
            st = c.cluster_status()
            assert len(st["nodes"]) == 5
            # Every node publishes the membership change to its hook subscribers.
            eventually(lambda: c.get("mwatch:last")["was_found"], what="a membership_changed hook event")
            event = __import__("msgpack").unpackb(c.get("mwatch:last")["value"])
            assert event["subject"] == "hooks.cluster.membership_changed" and event["key"].count(",") >= 3
        # Remove the leader first (it hands leadership over), then one follower.
        leader = cluster.wait_leader()
        cluster.remove_node(leader)
        follower = next(n for n in cluster.nodes if n != cluster.wait_leader())
        cluster.remove_node(follower)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(30)
    assert len(acked) > 50
    with cluster.client(timeout_s=20) as c:
        st = c.cluster_status()
        assert len(st["nodes"]) == 3
        for key, value in acked.items():
            assert c.get(key)["value"] == value, key
        # The leader names how far it knows each other member holds the log: the whole of it.
        leader_view = cluster.status_of(st["leader_id"])
        assert leader_view is not None
        others = [n for n in leader_view["nodes"] if n["node_id"] != leader_view["node_id"]]
        eventually(lambda: all(n["match_index"] >= st["commit_index"]
                               for n in cluster.status_of(st["leader_id"])["nodes"]
                               if n["node_id"] != st["leader_id"]), what="followers' match_index")
        assert all(n["next_index"] > 0 for n in others)
        assert all("match_index" not in n for n in cluster.status_of(others[0]["node_id"])["nodes"])
    with cluster.client(timeout_s=20) as c:
        with pytest.raises(AspenError) as err:
            c.request("RemoveNode", node_id=99)
        assert err.value.code == "NOT_FOUND"


def test_empty_members_of_an_existing_cluster_never_elect_a_leader_of_their_own(
    cluster: LocalCluster,
) -> None:
    # A whole cluster restored from node 1's backup, in the order that used to lose everything:
    # nodes 2 and 3 come back empty first. They are a majority; started as members of an
    # existing cluster (aspen-cluster start passes --initial-cluster-state existing), they must
    # not campaign, and the data must survive once node 1 returns.
    with cluster.client() as c:
        c.put("restore/key", b"kept")
    for node_id in (1, 2, 3):
        cluster.stop(node_id)
    for node_id in (2, 3):
        shutil.rmtree(cluster.data_dir(node_id))
        cluster.start(node_id)
    for restarted in (False, True):
        # Restarted while still empty (a crash, systemd's Restart=): pysyncobj has created a
        # journal by now, and they must still wait.
        if restarted:
            for node_id in (2, 3):
                cluster.stop(node_id)
                cluster.start(node_id)
        time.sleep(4 * 1.2)  # four of the longest election timeouts: time to have elected a leader
        statuses = [cluster.status_of(n) for n in (2, 3)]
        assert all(st is not None and st["leader_id"] is None for st in statuses), (restarted, statuses)
    cluster.start(1)
    for node_id in (2, 3):
        cluster.wait_caught_up(node_id)
    with cluster.client() as c:
        assert c.get("restore/key")["value"] == b"kept"
    for node_id in (2, 3):
        with cluster.client([node_id], discover_leader=False) as c:
            assert c.get("restore/key", stale=True)["value"] == b"kept"
        # Caught up: an ordinary member from now on, across restarts too.
        marker = cluster.data_dir(node_id) / "raft" / JOINING_MARKER
        deadline = time.monotonic() + 10
        while marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not marker.exists()
