"""The cluster core against real node processes: replication, failover, restart, blobs."""

from __future__ import annotations

import time

import pytest

from deploy.launcher import LocalCluster
from wire.errors import AspenError


def test_write_through_one_node_read_through_another(shared_cluster: LocalCluster) -> None:
    with (
        shared_cluster.client([1], discover_leader=False) as c1,
        shared_cluster.client([3], discover_leader=False) as c3,
    ):
        w = c1.put("xnode/a", b"through node 1")
        r = c3.get("xnode/a")
        assert r["was_found"] and r["value"] == b"through node 1"
        assert r["mod_revision"] == w["revision"] and r["version"] == 1
        # A stale read on a follower is served locally; after the linearizable read it sees the write.
        assert c3.get("xnode/a", stale=True)["value"] == b"through node 1"


def test_all_kv_requests(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        assert c.ping()["type"] == "Pong"
        c.put("all/k", b"1")
        assert c.cas("all/k", b"1", b"2")["version"] == 2
        with pytest.raises(AspenError) as err:
            c.cas("all/k", b"1", b"3")
        assert err.value.code == "CAS_FAILED" and err.value.error.details["actual_value"] == b"2"
        with pytest.raises(AspenError) as err:
            c.cas("all/new", b"x", b"y")
        assert err.value.code == "CAS_FAILED" and err.value.error.details["actual_found"] is False
        assert c.cas("all/new", None, b"created")["version"] == 1
        with pytest.raises(AspenError):
            c.cas("all/new", None, b"again")  # expected absent, but it exists
        with pytest.raises(AspenError) as err:
            c.cad("all/k", b"wrong")
        assert err.value.code == "CAS_FAILED"
        assert c.cad("all/k", b"2")["deleted"] is True
        assert c.get("all/k")["was_found"] is False
        r = c.batch(
            [
                {"op": "Set", "key": "all/b1", "value": b"x"},
                {"op": "Set", "key": "all/b2", "value": b"y"},
                {"op": "Delete", "key": "all/new"},
            ]
        )
        assert r["count"] == 3
        r = c.cond_batch(
            [
                {"kind": "KeyExists", "key": "all/b1"},
                {"kind": "ValueEquals", "key": "all/b2", "value": b"nope"},
            ],
            [{"op": "Set", "key": "all/never", "value": b"z"}],
        )
        assert r["success"] is False and r["failed_condition_index"] == 1
        assert c.get("all/never")["was_found"] is False
        r = c.cond_batch(
            [{"kind": "KeyNotExists", "key": "all/never"}], [{"op": "Set", "key": "all/yes", "value": b"z"}]
        )
        assert r["success"] is True and c.get("all/yes")["value"] == b"z"
        assert c.delete("all/missing")["deleted"] is False


def test_scan_pagination_and_limits(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        c.batch([{"op": "Set", "key": f"scan/{i:04d}", "value": b"v"} for i in range(250)])
        c.put("scan0", b"other prefix")
        page = c.scan("scan/", 100)
        assert len(page["entries"]) == 100 and page["continuation_token"]
        everything = c.scan_all("scan/")
        assert [e["key"] for e in everything] == [f"scan/{i:04d}" for i in range(250)]
        assert len(c.scan("scan/")["entries"]) == 250  # default limit 1,000
        for bad in (0, 10_001):
            with pytest.raises(AspenError) as err:
                c.scan("scan/", bad)
            assert err.value.code == "INVALID_REQUEST"


def test_bad_input_is_refused_and_writes_nothing(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        cases = [
            (lambda: c.put("k" * 1025, b"v"), "KEY_TOO_LARGE"),
            (lambda: c.put("é" * 513, b"v"), "KEY_TOO_LARGE"),  # 1,026 UTF-8 bytes
            (lambda: c.put("bad/big", b"v" * (1024 * 1024 + 1)), "VALUE_TOO_LARGE"),
            (lambda: c.put("", b"v"), "INVALID_REQUEST"),
            (lambda: c.put("__aspen/x", b"v"), "RESERVED_KEY"),
            (lambda: c.request("WriteKey", key="bad/str", value="not bytes"), "INVALID_REQUEST"),
            (lambda: c.request("WriteKey", key="bad/missing"), "INVALID_REQUEST"),
            (lambda: c.request("NoSuchRequest"), "UNKNOWN_REQUEST"),
            (
                lambda: c.batch(
                    [
                        {"op": "Set", "key": "bad/b1", "value": b"x"},
                        {"op": "Set", "key": "k" * 2000, "value": b"x"},
                    ]
                ),
                "KEY_TOO_LARGE",
            ),
            (lambda: c.batch([{"op": "Frob", "key": "bad/b2"}]), "INVALID_REQUEST"),
        ]
        for call, code in cases:
            with pytest.raises(AspenError) as err:
                call()
            assert err.value.code == code, (code, err.value)
        assert c.scan("bad/")["entries"] == []
        assert c.ping()["type"] == "Pong"


def test_leader_sigkill_failover_and_catch_up(cluster: LocalCluster) -> None:
    acknowledged: dict[str, bytes] = {}
    with cluster.client(timeout_s=15) as c:
        for i in range(50):
            c.put(f"fo/{i}", b"before-%d" % i)
            acknowledged[f"fo/{i}"] = b"before-%d" % i
        old = cluster.wait_leader()
        cluster.kill(old)
        killed_at = time.monotonic()
        new = cluster.wait_leader(timeout_s=10, exclude=old)
        elected_s = time.monotonic() - killed_at
        # The 3 s target is measured by the benchmarks and the chaos report; here a generous
        # bound only guards against a broken election (the machine is shared and noisy).
        assert new != old and elected_s < 10, elected_s
        for i in range(50, 100):
            c.put(f"fo/{i}", b"after-%d" % i)
            acknowledged[f"fo/{i}"] = b"after-%d" % i
        for key, value in acknowledged.items():
            assert c.get(key)["value"] == value
        cluster.start(old)
    # The restarted node catches up: its own linearizable reads see every write.
    with cluster.client([old], discover_leader=False, timeout_s=20) as c_old:
        deadline = time.monotonic() + 20
        while True:
            try:
                if c_old.get("fo/99", stale=True)["was_found"]:
                    break
            except AspenError:
                pass
            assert time.monotonic() < deadline, "restarted node did not catch up"
            time.sleep(0.1)
        for key, value in acknowledged.items():
            assert c_old.get(key, stale=True)["value"] == value


def test_full_restart_keeps_all_data(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        for i in range(30):
            c.put(f"rs/{i}", b"%d" % i)
        c.batch([{"op": "Set", "key": "rs/batch", "value": b"b"}])
        rev = c.get("rs/29")["mod_revision"]
    for nid in list(cluster.nodes):
        cluster.kill(nid)
    for nid in list(cluster.nodes):
        cluster.start(nid)
    cluster.wait_leader()
    with cluster.client(timeout_s=20) as c:
        assert [e["key"] for e in c.scan_all("rs/")] == sorted([f"rs/{i}" for i in range(30)] + ["rs/batch"])
        assert c.get("rs/29")["mod_revision"] == rev
        assert c.put("rs/new", b"x")["revision"] > rev


def test_blob_put_on_one_node_get_on_another_and_after_restart(cluster: LocalCluster) -> None:
    cluster.kill(2)
    data = bytes(range(256)) * 4096  # 1 MiB
    with cluster.client([1], discover_leader=False, timeout_s=20) as c1:
        put = c1.put_blob(data)
    with cluster.client([3], discover_leader=False, timeout_s=20) as c3:
        got = c3.get_blob(put["hash"])
        assert got["found"] and got["data"] == data
        assert c3.has_blob(put["hash"])["exists"]
    cluster.start(2)
    # Node 2 was down during the put: it fetches the blob by itself after restart.
    deadline = time.monotonic() + 20
    with cluster.client([2], discover_leader=False, timeout_s=20) as c2:
        while not c2.request("HasBlob", hash=put["hash"], local=True)["exists"]:
            assert time.monotonic() < deadline, "node 2 never fetched the blob"
            time.sleep(0.1)
        assert c2.request("GetBlob", hash=put["hash"], local=True)["data"] == data
