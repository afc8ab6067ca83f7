"""Leases (issue 16, item 7) against real node processes: keys go when their lease expires
(decided by the leader, applied through the log, seen by a watch), keep-alive holds them,
revoke deletes them now, a new leader restarts every TTL (as etcd does), expiry survives the
leader's death; refusals with their codes; the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from aspen.leases import LEASE_TICK_S
from deploy.launcher import LocalCluster
from storage.limits import LEASE_TTL_MAX_S
from tests.node.test_cli import cli
from wire.errors import AspenError


def wait_for(check: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until check() held; fails the test past timeout_s."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s}s")


def code_of(call: Callable[[], object]) -> str:
    with pytest.raises(AspenError) as err:
        call()
    return str(err.value.code)


def test_expiry_keep_alive_revoke_and_refusals(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        lease = c.request("LeaseGrant", ttl_s=2)["lease_id"]
        w = c.put("ls/a", b"1", lease=lease)
        c.put("ls/b", b"2", lease=lease)
        c.put("ls/plain", b"3")
        events = c.watch(prefix="ls/", start_revision=w["revision"])
        ttl = c.request("LeaseTimeToLive", lease_id=lease, keys=True)
        assert ttl["granted_ttl_s"] == 2 and ttl["keys"] == ["ls/a", "ls/b"] and 0 <= ttl["ttl_s"] <= 2
        assert {"lease_id": lease, "ttl_s": 2, "key_count": 2} in c.request("LeaseList")["leases"]
        # Kept alive past its TTL, then left to expire: gone within the TTL and a tick or two.
        for _ in range(4):
            time.sleep(1.0)
            assert c.request("LeaseKeepAlive", lease_id=lease)["ttl_s"] == 2
        assert c.get("ls/a")["was_found"]
        took = wait_for(lambda: not c.get("ls/a")["was_found"], 10)
        assert 1.0 < took < 2 + 10 * LEASE_TICK_S + 2, took
        assert not c.get("ls/b")["was_found"] and c.get("ls/plain")["was_found"]
        seen = [next(events) for _ in range(5)]
        assert [(e["type"], e["key"]) for e in seen] == [
            ("PUT", "ls/a"),
            ("PUT", "ls/b"),
            ("PUT", "ls/plain"),
            ("DELETE", "ls/a"),
            ("DELETE", "ls/b"),
        ]
        assert seen[3]["mod_revision"] == seen[4]["mod_revision"]  # one write: the revoke
        events.close()
        for call in (
            lambda: c.request("LeaseKeepAlive", lease_id=lease),
            lambda: c.request("LeaseTimeToLive", lease_id=lease),
            lambda: c.request("LeaseRevoke", lease_id=lease),
            lambda: c.put("ls/c", b"x", lease=lease),
        ):
            assert code_of(call) == "LEASE_NOT_FOUND"
        # Revoke: at once, keys included; a key written again without the lease stays.
        other = c.request("LeaseGrant", ttl_s=60, lease_id=77)["lease_id"]
        assert (
            other == 77
            and code_of(lambda: c.request("LeaseGrant", ttl_s=60, lease_id=77)) == "INVALID_REQUEST"
        )
        c.put("ls/r1", b"x", lease=other)
        c.put("ls/r2", b"x", lease=other)
        c.put("ls/r2", b"kept")  # no lease: taken off it
        assert c.request("LeaseRevoke", lease_id=other)["deleted"] == 1
        assert not c.get("ls/r1")["was_found"] and c.get("ls/r2")["value"] == b"kept"
        for fields in (
            {"ttl_s": 0},
            {"ttl_s": LEASE_TTL_MAX_S + 1},
            {"ttl_s": "5"},
            {},
            {"ttl_s": 5, "lease_id": -1},
        ):
            assert code_of(lambda f=fields: c.request("LeaseGrant", **f)) == "INVALID_REQUEST"
        for rtype in ("LeaseKeepAlive", "LeaseTimeToLive", "LeaseRevoke"):
            assert code_of(lambda r=rtype: c.request(r, lease_id=0)) == "INVALID_REQUEST"
        assert code_of(lambda: c.put("ls/x", b"v", lease=0)) == "INVALID_REQUEST"


def test_a_new_leader_restarts_every_ttl_and_expires_them(cluster: LocalCluster) -> None:
    leader = cluster.wait_leader()
    others = [n for n in cluster.nodes if n != leader]
    ttl_s = 6
    with cluster.client() as c:
        granted_at = time.monotonic()
        lease = c.request("LeaseGrant", ttl_s=ttl_s)["lease_id"]
        c.put("lt/k", b"v", lease=lease)
        time.sleep(3)
        c.move_leader(others[0])  # its TTL starts again: 6 s from now, not 3
        moved_at = time.monotonic()
        time.sleep(granted_at + ttl_s + 1.5 - time.monotonic())
        assert c.get("lt/k")["was_found"], "expired on the old leader's clock"
        wait_for(lambda: not c.get("lt/k")["was_found"], 15)
        assert time.monotonic() - moved_at >= ttl_s - 0.5
        # The leader dies with a lease running: the next one expires it (after a full TTL).
        lease = c.request("LeaseGrant", ttl_s=2)["lease_id"]
        c.put("lt/k2", b"v", lease=lease)
        cluster.kill(others[0])
        cluster.wait_leader()
        wait_for(lambda: not c.get("lt/k2")["was_found"], 20)


def test_cli_leases(shared_cluster: LocalCluster) -> None:
    r = cli(shared_cluster, "lease", "grant", "30", "--json")
    assert r.returncode == 0, r.stderr
    lease = json.loads(r.stdout)["lease_id"]
    assert cli(shared_cluster, "kv", "set", "lc/a", "1", "--lease", str(lease)).returncode == 0
    r = cli(shared_cluster, "lease", "keep-alive", str(lease), "--once")
    assert (r.returncode, r.stdout) == (0, f"lease {lease} kept alive with TTL 30s\n"), r.stderr
    r = cli(shared_cluster, "lease", "ttl", str(lease), "--keys")
    assert r.returncode == 0 and r.stdout.startswith(f"lease {lease}: granted TTL 30s") and "lc/a" in r.stdout
    r = cli(shared_cluster, "lease", "list")
    assert f"{lease}\tTTL 30s\t1 keys" in r.stdout.splitlines()
    r = cli(shared_cluster, "lease", "revoke", str(lease))
    assert (r.returncode, r.stdout) == (0, f"lease {lease} revoked (1 keys deleted)\n")
    r = cli(shared_cluster, "lease", "revoke", str(lease))
    assert r.returncode == 1 and r.stderr.startswith("error: LEASE_NOT_FOUND: "), r.stderr
    r = cli(shared_cluster, "kv", "set", "lc/b", "1", "--lease", str(lease))
    assert r.returncode == 1 and r.stderr.startswith("error: LEASE_NOT_FOUND: "), r.stderr
    for bad in (
        ["lease", "grant", "0"],
        ["lease", "grant", str(LEASE_TTL_MAX_S + 1)],
        ["lease", "revoke", "0"],
        ["lease", "ttl", "x"],
        ["kv", "set", "k", "v", "--lease", "0"],
        ["lease", "keep-alive", "1", "--count", "0"],
    ):
        r = cli(shared_cluster, *bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (bad, r.stderr)
