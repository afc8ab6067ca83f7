"""The Raft port against strangers: bind address, junk, huge length claims, slowloris, silent
sockets, replayed handshakes, and a member with the wrong cookie (cluster/transport.py).

Each attack runs against the leader of a real 3-node cluster while a client keeps writing:
every write must succeed, the term must not move, and the leader's memory must stay flat.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.transport import MAGIC, NONCE_BYTES, REPLY_BYTES, derive_key
from deploy.launcher import LocalCluster, proc_status_kib
from wire.errors import AspenError


class Writer:
    """Writes random binary values in a thread until stopped; every write must succeed."""

    def __init__(self, cluster: LocalCluster, prefix: str) -> None:
        self.cluster, self.prefix = cluster, prefix
        self.done = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.cluster.client(timeout_s=10.0) as c:
            while not self._stop.is_set():
                try:
                    c.put(f"{self.prefix}/{self.done}", os.urandom(512))
                    self.done += 1
                except AspenError as exc:
                    self.errors.append(exc)
                    return

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@contextlib.contextmanager
def attack(cluster: LocalCluster, prefix: str) -> Iterator[tuple[int, int]]:
    """Yields (leader id, its Raft port); checks writes, term and memory around the body."""
    leader = cluster.wait_leader()
    term = cluster.leader_term()
    pid = cluster.nodes[leader].pid
    assert pid is not None
    rss_before = (proc_status_kib(pid, "VmRSS") or 0)
    with Writer(cluster, prefix) as writer:
        yield leader, cluster.nodes[leader].raft_port
        time.sleep(0.5)
    assert not writer.errors, f"a client write failed during the attack: {writer.errors[0]!r}"
    assert writer.done > 0
    assert cluster.leader_term() == term, "the attack caused an election"
    grown_mib = ((proc_status_kib(pid, "VmRSS") or 0) - rss_before) / 1024
    print(f"{prefix}: {writer.done} writes during the attack, leader RSS grew {grown_mib:.1f} MiB")
    assert grown_mib < 64, f"the leader's memory grew {grown_mib:.0f} MiB under the attack"


def connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection((host, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def test_raft_port_binds_exactly_the_configured_host(shared_cluster: LocalCluster) -> None:
    port = shared_cluster.nodes[1].raft_port
    connect(port).close()  # 127.0.0.1, as configured
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=5)  # 0.0.0.0 would accept this


def test_junk_and_a_2gib_length_claim_are_dropped(shared_cluster: LocalCluster) -> None:
    with attack(shared_cluster, "junk") as (leader, port):
        sent = 0
        deadline = time.monotonic() + 20
        while sent < 64 * 1024 * 1024 and time.monotonic() < deadline:
            with contextlib.suppress(OSError), connect(port) as s:
                s.settimeout(2)
                # pysyncobj's own framing first (a 2 GiB length), then random bytes.
                s.sendall(b"\xff\xff\xff\x7f" + os.urandom(1024 * 1024))
                sent += 1024 * 1024
        with contextlib.suppress(OSError), connect(port) as s:
            s.sendall(MAGIC + os.urandom(NONCE_BYTES) + b"\xff" + b"x" * 255 + b"\x7f\xff\xff\xff" * 1000)
    log_text = shared_cluster.log_path(leader).read_text(errors="replace")
    assert "not an Aspen member" in log_text or "not a member here" in log_text
    # Logged once per peer per minute, not once per connection.
    assert log_text.count("not an Aspen member (bad magic)") <= 2


def test_slowloris_and_silent_sockets_cannot_lock_members_out(shared_cluster: LocalCluster) -> None:
    leader = shared_cluster.wait_leader()
    port = shared_cluster.nodes[leader].raft_port
    follower = next(n for n in shared_cluster.nodes if n != leader)
    socks: list[socket.socket] = []
    try:
        with attack(shared_cluster, "slowloris"):
            for _ in range(1024):
                with contextlib.suppress(OSError):
                    socks.append(connect(port))
            for s in socks[:100]:
                with contextlib.suppress(OSError):
                    s.send(MAGIC[:1])  # a byte now and then: never finishes a handshake
            # A member restarted now must still get in and catch up.
            shared_cluster.stop(follower)
            shared_cluster.start(follower)
            shared_cluster.wait_caught_up(follower, timeout_s=30)
    finally:
        for s in socks:
            s.close()


def test_replayed_handshake_is_refused(shared_cluster: LocalCluster) -> None:
    """A recorded HELLO and AUTH replayed later: the listener's fresh nonce makes the AUTH stale."""
    # The member with the greatest address connects to the one with the least (see
    # RaftTransport._should_connect): replay the former's handshake against the latter.
    target = min(shared_cluster.nodes.values(), key=lambda n: n.raft_addr)
    port = target.raft_port
    member = max(shared_cluster.nodes.values(), key=lambda n: n.raft_addr).raft_addr.encode()
    key = derive_key(shared_cluster.cookie)

    def mac(label: bytes, *parts: bytes) -> bytes:
        h = hmac.new(key, label, hashlib.sha256)
        for part in parts:
            h.update(len(part).to_bytes(2, "big") + part)
        return h.digest()

    server_addr = target.raft_addr.encode()
    nonce = os.urandom(NONCE_BYTES)
    hello = MAGIC + nonce + bytes([len(member)]) + member
    # A session as a real member would run it (the test knows the cookie): record its AUTH.
    with connect(port) as s:
        s.sendall(hello)
        reply = recv_exactly(s, REPLY_BYTES)
        recorded_auth = mac(b"client", nonce, reply[8:40], member, server_addr)
    with attack(shared_cluster, "replay"):
        for _ in range(20):
            with contextlib.suppress(OSError), connect(port) as s:
                s.sendall(hello)
                recv_exactly(s, REPLY_BYTES)
                s.sendall(recorded_auth + os.urandom(64))
                s.settimeout(5)
                assert s.recv(1) == b"", "a replayed AUTH was accepted"
    assert "failed authentication" in shared_cluster.log_path(target.node_id).read_text(errors="replace")


def recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "closed early"
        out += chunk
    return out


def test_member_with_another_cookie_is_named_in_both_logs(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c") as cluster:
        cluster.up(3)
        victim = 3
        cluster.stop(victim)
        wrong = tmp_path / "wrong-cookie"
        wrong.write_text("another-cluster-cookie-entirely\n")
        wrong.chmod(0o600)
        cmd = cluster.command(victim)
        cmd[cmd.index("--cookie-file") + 1] = str(wrong)
        import subprocess  # the launcher has no option for a wrong cookie, on purpose

        with open(cluster.log_path(victim), "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            said = "different cluster cookie"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                logs = cluster.log_tails(200_000)
                if said in logs[victim] and said in logs[1] + logs[2]:
                    break
                time.sleep(0.2)
            assert said in logs[victim], logs[victim][-2000:]
            assert said in logs[1] + logs[2], (logs[1] + logs[2])[-2000:]
            # Two of three members are enough. No leader discovery: node 3's client port now
            # belongs to the process with the other cookie, which a stale answer could name.
            with cluster.client([1, 2], discover_leader=False, timeout_s=20) as c:
                for attempt in range(10):  # node 3 may have led: an election may be under way
                    try:
                        c.put("still/writable", b"\x00\xff")
                        break
                    except AspenError:
                        assert attempt < 9
                        time.sleep(0.5)
                assert c.get("still/writable")["value"] == b"\x00\xff"
        finally:
            proc.terminate()
            proc.wait(10)
