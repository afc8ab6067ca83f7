"""Issue 12's resource probes against a real node process: memory (VmRSS) and slots stay
bounded, and an authenticated client is still served. Times are printed, never asserted."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from aspen.protocol import FRAME_MAX_BYTES
from deploy.launcher import LocalCluster, proc_status_kib
from tests.wire import fakes

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("bounds") / "cluster") as c:
        c.up(1)
        yield c


def rss_mib(cluster: LocalCluster) -> float:
    pid = cluster.nodes[1].pid
    kib = proc_status_kib(pid, "VmRSS") if pid else None
    assert kib is not None, "the node is gone"
    return kib / 1024


def raw(cluster: LocalCluster, authenticate: bool = True) -> fakes.RawConn:
    host, port = cluster.nodes[1].client_addr.rsplit(":", 1)
    return fakes.connect(int(port), cluster.cookie, authenticate_now=authenticate, host=host)


def timed_ping(cluster: LocalCluster) -> float:
    with cluster.client([1], timeout_s=10, discover_leader=False, retries_max=1) as c:
        t0 = time.monotonic()
        assert c.ping()["type"] == "Pong"
        return time.monotonic() - t0


def test_a_15_mib_nested_frame_before_auth_costs_nothing(node: LocalCluster) -> None:
    timed_ping(node)
    before = rss_mib(node)
    s = raw(node, authenticate=False)
    size = 15 * MIB
    with contextlib.suppress(OSError):  # the node closes as soon as it has read the header
        s.sendall(struct.pack(">I", size) + b"\x91" * size)
    latency = timed_ping(node)
    grown = rss_mib(node) - before
    print(f"15 MiB nested pre-auth frame: RSS +{grown:.1f} MiB, authenticated Ping {latency * 1000:.1f} ms")
    assert grown < 32


def test_1024_silent_sockets_while_a_real_client_connects(node: LocalCluster) -> None:
    host, port = node.nodes[1].client_addr.rsplit(":", 1)
    silent = [socket.create_connection((host, int(port))) for _ in range(1024)]
    try:
        latency = timed_ping(node)  # not OVERLOADED: the handshake pool is apart
        print(f"Ping behind 1,024 silent sockets: {latency * 1000:.1f} ms")
    finally:
        for s in silent:
            s.close()


def test_48_unread_16_mib_getblobs_keep_rss_bounded(node: LocalCluster) -> None:
    with node.client([1], timeout_s=30, discover_leader=False) as c:
        blob = c.put_blob(b"\x5a" * (16 * MIB))["hash"]
    before = rss_mib(node)
    s = raw(node)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(b"".join(s.frame({"id": i, "type": "GetBlob", "hash": blob}) for i in range(1, 49)))
    time.sleep(2.0)
    grown = rss_mib(node) - before
    latency = timed_ping(node)
    print(f"48 unread 16 MiB GetBlobs: RSS +{grown:.1f} MiB (768 MiB of answers), other client's Ping "
          f"{latency * 1000:.1f} ms")
    assert grown < 160
    for _ in range(48):  # and every answer arrives once the peer reads
        assert len(fakes.recv_frame(s)["data"]) == 16 * MIB
    s.close()


def test_scan_all_reads_80_values_of_1_mib(node: LocalCluster) -> None:
    with node.client([1], timeout_s=30, discover_leader=False) as c:
        for i in range(80):
            c.put(f"big/{i:02d}", bytes([i]) * MIB)
        page = c.scan("big/")
        assert 0 < len(page["entries"]) < 80 and page["continuation_token"]
        assert sum(len(e["value"]) for e in page["entries"]) < FRAME_MAX_BYTES
        entries = c.scan_all("big/")
    assert [e["key"] for e in entries] == [f"big/{i:02d}" for i in range(80)]
    assert all(e["value"] == bytes([i]) * MIB for i, e in enumerate(entries))
