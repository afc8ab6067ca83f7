"""TLS end to end (issue 12, item 1): `aspen-cluster up --tls`, the CLI with --cacert/--cert/--key
and their environment variables, blob fetches between nodes over TLS, one-line refusals, a
relay that rewrites or replays TLS records, and a node that will not serve plaintext beyond
loopback."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aspen import certs
from aspen.client import Client
from aspen.node import AspenNode, NodeConfig
from deploy.launcher import LocalCluster
from tests.wire.fakes import FrameRelay
from wire.errors import AspenError

MIB = 1024 * 1024
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("tls") / "cluster"
    up = subprocess.run([str(BIN / "aspen-cluster"), "up", "--nodes", "3", "--dir", str(root), "--tls"],
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    cluster = LocalCluster(root)
    cluster.up_exports = up.stdout  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        cluster.down()


def cli(
    cluster: LocalCluster, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASPEN_")}
    base.update({"ASPEN_CLUSTER": cluster.endpoints, "ASPEN_COOKIE": cluster.cookie, **(env or {})})
    return subprocess.run(
        [str(BIN / "aspen-cli"), *args], capture_output=True, text=True, env=base, timeout=60
    )


def test_up_tls_prints_the_exports_and_the_cli_uses_them(tls_cluster: LocalCluster) -> None:
    exports = tls_cluster.up_exports  # type: ignore[attr-defined]
    env = {}
    for line in exports.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    assert {"ASPEN_CACERT", "ASPEN_CERT", "ASPEN_KEY"} <= set(env)
    r = cli(tls_cluster, "kv", "set", "tls/k", "over-tls", env=env)
    assert r.returncode == 0, r.stderr
    flags = ["--cacert", env["ASPEN_CACERT"], "--cert", env["ASPEN_CERT"], "--key", env["ASPEN_KEY"]]
    r = cli(tls_cluster, *flags, "kv", "get", "tls/k")
    assert (r.returncode, r.stdout.strip()) == (0, "over-tls"), r.stderr


def test_refusals_are_one_line_naming_what_is_missing(tls_cluster: LocalCluster) -> None:
    files = tls_cluster.client_tls()
    no_tls = cli(tls_cluster, "--timeout", "3", "kv", "get", "tls/k")
    no_cert = cli(tls_cluster, "--cacert", str(files["cacert"]), "kv", "get", "tls/k")
    other_ca = cli(tls_cluster, "--cacert", str(files["cert"]), "kv", "get", "tls/k")  # not the CA
    wrong_cookie = cli(tls_cluster, "--cookie", "not-the-cluster-cookie-123",
                       *[f"--{k}={v}" for k, v in files.items()], "kv", "set", "tls/evil", "x")
    for r in (no_tls, no_cert, other_ca, wrong_cookie):
        print(r.stderr.strip())
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    # No handshake in time is "unavailable" (3) in the exit-code table; a refusal is an error (1).
    assert no_tls.returncode == 3 and {r.returncode for r in (no_cert, other_ca, wrong_cookie)} == {1}
    assert "TLS" in no_tls.stderr
    assert "AUTH_FAILED" in no_cert.stderr and "--cert" in no_cert.stderr
    assert "AUTH_FAILED" in other_ca.stderr and "not trusted" in other_ca.stderr
    assert "AUTH_FAILED" in wrong_cookie.stderr and "cookie" in wrong_cookie.stderr
    with tls_cluster.client() as c:
        assert c.get("tls/evil")["was_found"] is False  # nothing changed on the cluster


def test_blobs_travel_between_nodes_over_tls(tls_cluster: LocalCluster) -> None:
    data = os.urandom(3 * MIB)
    with tls_cluster.client([1], discover_leader=False, timeout_s=30) as c:
        blob = c.put_blob(data)["hash"]
    with tls_cluster.client([3], discover_leader=False, timeout_s=30) as c:
        assert c.get_blob(blob)["data"] == data  # node 3 fetched it from node 1, on the TLS port
    assert (tls_cluster.data_dir(3) / "blobs").exists()
    assert "plaintext" not in tls_cluster.log_tails()[1]


@pytest.mark.parametrize("attack", ["rewrite", "replay"])
def test_a_relay_that_rewrites_or_replays_tls_records_changes_nothing(
    tls_cluster: LocalCluster, attack: str
) -> None:
    value = b"v" * 5000  # its record is the only big one the client sends

    def mangle(index: int, record: bytes) -> list[bytes]:
        if record[0] != 23 or len(record) < 4000:
            return [record]
        if attack == "replay":
            return [record, record]
        return [record[:-20] + bytes([record[-20] ^ 1]) + record[-19:]]

    host, port = tls_cluster.nodes[1].client_addr.rsplit(":", 1)
    relay = FrameRelay(int(port), mangle, tls_records=True)
    try:
        c = Client([f"{host}:{relay.port}"], tls_cluster.cookie, 3.0, discover_leader=False, retries_max=1,
                   **tls_cluster.client_tls())
        try:
            with pytest.raises(AspenError) if attack == "rewrite" else _maybe():
                c.put(f"tls/relay-{attack}", value)
        finally:
            c.close()
    finally:
        relay.close()
    with tls_cluster.client() as ok:
        found = ok.get(f"tls/relay-{attack}")
        assert found["value"] in (None, value) and (found["version"] <= 1)  # never changed, never twice


class _maybe:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is None or issubclass(exc[0], AspenError)  # type: ignore[arg-type]


def test_silent_sockets_on_a_tls_port_leave_clients_served(tls_cluster: LocalCluster) -> None:
    """Sockets that never start TLS wait in the TLS handshake (2 s), not in a client's slot."""
    host, port = tls_cluster.nodes[1].client_addr.rsplit(":", 1)
    silent = [socket.create_connection((host, int(port))) for _ in range(1024)]
    try:
        with tls_cluster.client([1], discover_leader=False, retries_max=1) as c:
            t0 = time.monotonic()
            assert c.ping()["node_id"] == 1
            print(f"TLS Ping behind 1,024 silent sockets: {(time.monotonic() - t0) * 1000:.1f} ms")
    finally:
        for s in silent:
            s.close()


def served_cert(cluster: LocalCluster, node_id: int) -> bytes:
    host, port = cluster.nodes[node_id].client_addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(cluster.client_tls()["cacert"]))
    ctx.load_cert_chain(str(cluster.client_tls()["cert"]), str(cluster.client_tls()["key"]))
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_sighup_rotates_a_node_certificate_without_a_restart(tls_cluster: LocalCluster) -> None:
    before = served_cert(tls_cluster, 2)
    certs.issue(tls_cluster.tls_dir, "node2", ["127.0.0.1", "localhost"])
    pid = tls_cluster.nodes[2].pid
    tls_cluster.signal(2, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while served_cert(tls_cluster, 2) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    new = x509.load_pem_x509_certificate((tls_cluster.tls_dir / "node2.pem").read_bytes())
    assert served_cert(tls_cluster, 2) == new.public_bytes(serialization.Encoding.DER)
    assert tls_cluster.nodes[2].pid == pid and tls_cluster.alive(2)
    with tls_cluster.client([2], discover_leader=False) as c:
        assert c.ping()["node_id"] == 2


def test_a_node_beyond_loopback_refuses_plaintext(tmp_path: Path) -> None:
    cfg = NodeConfig(node_id=1, data_dir=tmp_path / "d", listen="0.0.0.0:7799", raft="127.0.0.1:7899",
                     cookie="a-cookie-for-the-test-0123456789")
    with pytest.raises(SystemExit) as e:
        AspenNode(cfg)
    assert "plaintext" in str(e.value) and "--insecure-plaintext" in str(e.value)


def test_a_node_added_to_a_tls_cluster_gets_its_certificate(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", tls=True) as cluster:
        cluster.up(1)
        new = cluster.add_node()
        assert (cluster.tls_dir / f"node{new}.pem").exists()
        with cluster.client([new], discover_leader=False) as c:
            assert c.ping()["node_id"] == new
            assert {n["node_id"] for n in c.cluster_status()["nodes"]} == {1, new}
