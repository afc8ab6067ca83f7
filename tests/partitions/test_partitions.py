"""Partitions between real test hosts (network namespaces): isolated leader, split, flapping link.

Each node runs in its own namespace with its own address; links are cut in a switch namespace.
Skipped, with the reason, where namespaces cannot be made (not root, no iproute2).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.launcher import LocalCluster
from deploy.netns import HostNetwork, NetnsUnavailable
from wire.errors import AspenError


@pytest.fixture
def net_cluster(tmp_path: Path) -> Iterator[tuple[LocalCluster, HostNetwork]]:
    net = HostNetwork(count=3)
    try:
        net.create()
    except NetnsUnavailable as exc:
        pytest.skip(str(exc))
    cluster = LocalCluster(tmp_path / "cluster", tls=True)  # as a real network should run it
    try:
        cluster.up(3, hosts=net.hosts())
        yield cluster, net
    finally:
        try:
            cluster.down()
        finally:
            net.destroy()


def leader_among(cluster: LocalCluster, nodes: list[int], timeout_s: float = 15.0) -> int:
    """The leader all of `nodes` agree on (the others may be unreachable)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = {(cluster.status_of(n) or {}).get("leader_id") for n in nodes}
        if len(seen) == 1 and None not in seen and seen <= set(nodes):
            return seen.pop()
        time.sleep(0.1)
    raise AssertionError(f"no leader agreed by {nodes}")


def put_from_inside(
    net: HostNetwork, cluster: LocalCluster, node: int, key: str
) -> subprocess.CompletedProcess[str]:
    """A client inside the isolated host's namespace, talking to its own node only."""
    code = (
        "import sys; from aspen.client import Client\n"
        f"c = Client([{cluster.nodes[node].client_addr!r}], {cluster.cookie!r}, 4.0, discover_leader=False, "
        "retries_max=2,"
        f" **{ {k: str(v) for k, v in cluster.client_tls().items()}!r})\n"
        "try:\n"
        f"    c.put({key!r}, b'written-while-isolated'); print('ACKED')\n"
        "except Exception as exc:\n"
        "    err = getattr(exc, 'error', None)\n"
        "    print('REFUSED applied=%s' % (err.details.get('applied') if err else 'no'), exc)\n"
        "finally:\n    c.close()\n"
    )
    return subprocess.run(["ip", "netns", "exec", net.host_ns(node), sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60)


def acked_writes(c: Any, prefix: str, count: int) -> dict[str, bytes]:
    out = {}
    for i in range(count):
        key, value = f"{prefix}/{i}", b"%d" % i
        try:
            c.put(key, value)
            out[key] = value
        except AspenError:
            pass
    return out


def test_isolated_leader_stops_acknowledging_and_its_writes_vanish(
    net_cluster: tuple[LocalCluster, HostNetwork],
) -> None:
    cluster, net = net_cluster
    everyone = list(cluster.nodes)
    old = leader_among(cluster, everyone)
    majority = [n for n in everyone if n != old]
    with cluster.client(timeout_s=15) as c:
        acked = acked_writes(c, "before", 20)
    net.isolate(old)
    inside = put_from_inside(net, cluster, old, "isolated/write")
    assert "ACKED" not in inside.stdout, inside.stdout + inside.stderr  # no quorum: never acknowledged
    new = leader_among(cluster, majority)
    assert new != old
    with cluster.client(majority, timeout_s=15) as c:
        acked |= acked_writes(c, "during", 20)
    net.heal(old)
    leader_among(cluster, everyone, timeout_s=20)
    with cluster.client(timeout_s=15) as c:
        for key, value in acked.items():
            assert c.get(key)["value"] == value, key
        assert c.get("isolated/write")["was_found"] is False  # the old leader's unacknowledged write is gone
    with cluster.client([old], discover_leader=False, timeout_s=15) as c_old:
        deadline = time.monotonic() + 20
        while c_old.get("during/19", stale=True)["was_found"] is False:
            assert time.monotonic() < deadline, "the old leader did not catch up"
            time.sleep(0.1)
        assert c_old.get("isolated/write", stale=True)["was_found"] is False


def test_split_minority_cannot_write_majority_can(net_cluster: tuple[LocalCluster, HostNetwork]) -> None:
    cluster, net = net_cluster
    everyone = list(cluster.nodes)
    leader = leader_among(cluster, everyone)
    minority = [n for n in everyone if n != leader][:1]
    majority = [n for n in everyone if n not in minority]
    net.split(minority)  # the client stays on the majority's side
    leader_among(cluster, majority)
    with cluster.client(majority, timeout_s=15) as c:
        acked = acked_writes(c, "split", 20)
    assert len(acked) == 20
    inside = put_from_inside(net, cluster, minority[0], "split/minority")
    assert "ACKED" not in inside.stdout
    net.heal_all()
    leader_among(cluster, everyone, timeout_s=20)
    with cluster.client(timeout_s=15) as c:
        for key, value in acked.items():
            assert c.get(key)["value"] == value
        # The minority's node forwards the write to the leader it last knew; a forwarded command
        # can sit in a kernel send buffer and reach the leader after healing. The client was told
        # applied="unknown" in that case (as etcd says of a timed-out proposal), so the write may
        # appear, but only with its value; a write refused with applied="no" must never appear.
        got = c.get("split/minority")
        if "applied=no" in inside.stdout:
            assert got["was_found"] is False, inside.stdout
        else:
            assert "applied=unknown" in inside.stdout, inside.stdout + inside.stderr
            assert not got["was_found"] or got["value"] == b"written-while-isolated"


def test_flapping_follower_link_loses_nothing(net_cluster: tuple[LocalCluster, HostNetwork]) -> None:
    cluster, net = net_cluster
    everyone = list(cluster.nodes)
    leader = leader_among(cluster, everyone)
    flappy = next(n for n in everyone if n != leader)
    acked: dict[str, bytes] = {}
    with cluster.client([n for n in everyone if n != flappy], timeout_s=15) as c:
        for round_ in range(5):
            net.isolate(flappy)
            acked |= acked_writes(c, f"flap{round_}", 10)
            time.sleep(0.3)
            net.heal(flappy)
            acked |= acked_writes(c, f"flop{round_}", 10)
            time.sleep(0.3)
    leader_among(cluster, everyone, timeout_s=20)
    with cluster.client([flappy], discover_leader=False, timeout_s=15) as c_f:
        deadline = time.monotonic() + 20
        while c_f.get("flop4/9", stale=True)["was_found"] is False:
            assert time.monotonic() < deadline, "the flapping node did not catch up"
            time.sleep(0.1)
        for key, value in acked.items():
            assert c_f.get(key, stale=True)["value"] == value, key


def get_from_inside(net: HostNetwork, cluster: LocalCluster, node: int, key: str) -> str:
    """A linearizable read by a client inside `node`'s namespace, from that node only."""
    code = (
        "from aspen.client import Client\n"
        f"c = Client([{cluster.nodes[node].client_addr!r}], {cluster.cookie!r}, 4.0, discover_leader=False, "
        "retries_max=2,"
        f" **{ {k: str(v) for k, v in cluster.client_tls().items()}!r})\n"
        "try:\n"
        f"    r = c.get({key!r}); print('SERVED', r['value'].hex() if r['was_found'] else '-')\n"
        "except Exception as exc:\n"
        "    print('REFUSED', exc)\n"
        "finally:\n    c.close()\n"
    )
    return subprocess.run(["ip", "netns", "exec", net.host_ns(node), sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60).stdout


def test_deposed_leader_never_serves_a_linearizable_read(
    net_cluster: tuple[LocalCluster, HostNetwork],
) -> None:
    """ReadIndex: the isolated old leader still believes it leads (pysyncobj steps down only after
    leaderFallbackTimeout), but it cannot get a majority to confirm it, so it must refuse."""
    cluster, net = net_cluster
    everyone = list(cluster.nodes)
    old = leader_among(cluster, everyone)
    majority = [n for n in everyone if n != old]
    with cluster.client(timeout_s=15) as c:
        c.put("ri/k", b"old")
    assert get_from_inside(net, cluster, old, "ri/k").startswith("SERVED " + b"old".hex())
    net.isolate(old)
    leader_among(cluster, majority)
    with cluster.client(majority, timeout_s=15) as c:
        c.put("ri/k", b"new")  # acknowledged: from now on "old" is a stale answer
        assert c.get("ri/k")["value"] == b"new"
    for _ in range(3):
        answer = get_from_inside(net, cluster, old, "ri/k")
        assert answer.startswith("REFUSED"), f"the deposed leader served a read: {answer}"
    net.heal(old)
    leader_among(cluster, everyone, timeout_s=20)
    with cluster.client([old], discover_leader=False, timeout_s=15) as c_old:
        assert c_old.get("ri/k")["value"] == b"new"  # linearizable through the healed node


def test_healed_leader_with_stale_entries_catches_up(net_cluster: tuple[LocalCluster, HostNetwork]) -> None:
    """Clients pinned to every node write 64 KiB random values; the leader is isolated (it keeps
    entries of its own term that never commit) while the others go on, MiBs past the conflict;
    then it is healed. The new leader resends in many 1 MiB batches, each rejected by the old
    leader: those rejections must all point before the conflict (they used to point past it,
    after every batch but the first, and the node stayed behind for good)."""
    cluster, net = net_cluster
    everyone = list(cluster.nodes)
    stop = threading.Event()

    def writer(node: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                with cluster.client([node], discover_leader=False, timeout_s=2.0, retries_max=1) as c:
                    while not stop.is_set():
                        i += 1
                        c.put(f"stale/{node}/{i % 40}", os.urandom(64 * 1024))
            except (AspenError, OSError, TimeoutError):
                time.sleep(0.05)

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in everyone for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            old = leader_among(cluster, everyone, timeout_s=20)
            net.isolate(old)
            time.sleep(1.5)
            net.heal(old)
            time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    leader = leader_among(cluster, everyone, timeout_s=20)
    deadline = time.monotonic() + 15
    while True:
        views = {n: cluster.status_of(n, timeout_s=5.0) for n in everyone}
        applied = {n: v["applied_index"] if v else None for n, v in views.items()}
        if len(set(applied.values())) == 1:
            break
        assert time.monotonic() < deadline, (
            f"nodes did not converge: applied {applied}; the leader's view: {views.get(leader)}")
        time.sleep(0.5)
