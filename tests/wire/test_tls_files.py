"""aspen.certs and aspen.tls: a CA, certificates for addresses, contexts that check them."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509

from aspen import certs, tls
from aspen.client import AsyncClient
from aspen.server import Identity
from tests.wire.fakes import COOKIE, RawConn, ServerThread, authenticate, recv_frame
from wire.errors import AspenError, ErrorCode


def test_keys_are_private_and_names_are_the_hosts(tmp_path: Path) -> None:
    ca = certs.create_ca(tmp_path)
    node = certs.issue(tmp_path, "node1", ["10.0.0.11", "node1.internal"])
    for key in (ca.key, node.key):
        assert key.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(node.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.11"]
    assert san.get_values_for_type(x509.DNSName) == ["node1.internal"]


def test_a_tls_server_and_client_check_each_other(tmp_path: Path) -> None:
    certs.create_ca(tmp_path)
    node = certs.issue(tmp_path, "node", ["127.0.0.1"])
    client = certs.issue(tmp_path, "client", [])
    ctx = tls.server_context(node.cert, node.key, tmp_path / "ca.pem", client_cert_auth=True)
    seen: list[Identity] = []
    srv = ServerThread(ssl_context=ctx, authorize=lambda identity, request: seen.append(identity))
    try:
        async def go() -> None:
            async with AsyncClient([srv.addr], COOKIE, cacert=tmp_path / "ca.pem", cert=client.cert,
                                   key=client.key, timeout_s=5) as c:
                assert (await c.ping())["type"] == "Pong"
            async with AsyncClient([srv.addr], COOKIE, cacert=tmp_path / "ca.pem", timeout_s=2) as c:
                with pytest.raises(AspenError) as e:
                    await c.ping()
                assert e.value.code == ErrorCode.AUTH_FAILED and "client certificate" in e.value.message
            other = tmp_path / "other"
            certs.create_ca(other)
            async with AsyncClient([srv.addr], COOKIE, cacert=other / "ca.pem", timeout_s=2) as c:
                with pytest.raises(AspenError) as e:
                    await c.ping()
                assert e.value.code == ErrorCode.AUTH_FAILED and "not trusted" in e.value.message

        asyncio.run(asyncio.wait_for(go(), 30))
        assert set(seen) == {Identity(cookie=True, tls_subject="commonName=client")}  # what a role check sees
    finally:
        srv.close()


def test_a_tls_client_to_a_plaintext_node_is_one_clear_error(tmp_path: Path) -> None:
    certs.create_ca(tmp_path)
    srv = ServerThread()
    try:
        async def go() -> None:
            async with AsyncClient([srv.addr], COOKIE, cacert=tmp_path / "ca.pem", timeout_s=3) as c:
                with pytest.raises(AspenError) as e:
                    await c.ping()
                assert e.value.code == ErrorCode.INVALID_REQUEST and "does not serve TLS" in e.value.message

        asyncio.run(asyncio.wait_for(go(), 30))
    finally:
        srv.close()


def test_tls_contexts_refuse_what_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both --cert and --key"):
        tls.client_context(tls.TLSFiles.of(None, tmp_path / "c.pem", None))
    with pytest.raises(ValueError, match="--trusted-ca-file"):
        tls.server_context(tmp_path / "c.pem", tmp_path / "k.pem", None, client_cert_auth=True)
    with pytest.raises(ValueError, match=r"missing\.pem"):
        tls.client_context(tls.TLSFiles.of(tmp_path / "missing.pem", None, None))
    ctx = tls.client_context(tls.TLSFiles())
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2 and ctx.check_hostname


def test_only_the_given_ca_is_trusted(tmp_path: Path) -> None:
    certs.create_ca(tmp_path)
    node = certs.issue(tmp_path, "node", ["127.0.0.1"])
    client = tls.client_context(tls.TLSFiles(tmp_path / "ca.pem"))
    server = tls.server_context(node.cert, node.key, tmp_path / "ca.pem", client_cert_auth=True)
    for ctx in (client, server):
        assert [dict(c["subject"][0])["commonName"] for c in ctx.get_ca_certs()] == ["Aspen cluster CA"]
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    assert server.verify_mode == ssl.CERT_REQUIRED


def test_the_unsent_budget_holds_under_tls(tmp_path: Path) -> None:
    certs.create_ca(tmp_path)
    node = certs.issue(tmp_path, "node", ["127.0.0.1"])
    srv = ServerThread(ssl_context=tls.server_context(node.cert, node.key, None, client_cert_auth=False),
                       unsent_max_bytes=2 * 1024 * 1024)
    try:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s = RawConn(
            tls.client_context(tls.TLSFiles(tmp_path / "ca.pem")).wrap_socket(
                raw, server_hostname="127.0.0.1"
            )
        )
        authenticate(s, recv_frame(s), COOKIE)
        s.sendall(b"".join(s.frame({"id": i, "type": "Big", "size": 4 * 1024 * 1024}) for i in range(1, 49)))
        time.sleep(0.5)
        built = srv.handler.calls.count("Big")
        print(f"answers built under TLS for a peer that reads nothing: {built} of 48")
        assert built <= 8
        assert sorted(recv_frame(s)["id"] for _ in range(48)) == list(range(1, 49))
    finally:
        srv.close()
