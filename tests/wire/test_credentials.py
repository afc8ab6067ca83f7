"""Named credentials with roles (aspen/credentials.py) against a real 3-node TLS cluster.

Before: whoever had the cookie was an administrator, and nobody could be given less. Now a reader
reads its prefixes and nothing else, a writer writes them, only admin changes trust settings,
membership, plugins or credentials, a revoked credential fails on every node as soon as the
revocation returns, and a plugin learns who called it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aspen.client import Client
from aspen.credentials import Token
from deploy.launcher import LocalCluster
from wire.errors import AspenError


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("creds") / "cluster", tls=True) as c:
        c.up(3)
        yield c


def admin(cluster: LocalCluster) -> Client:
    return cluster.client(timeout_s=15)


def as_credential(cluster: LocalCluster, token: str, node_ids: list[int] | None = None, **kw: Any) -> Client:
    ids = node_ids or list(cluster.nodes)
    return Client([cluster.nodes[i].client_addr for i in ids], None, 10.0, credential=token,
                  **{**cluster.client_tls(), **kw})


def create(
    cluster: LocalCluster, name: str, role: str, prefixes: list[str] = (), requests: list[str] = ()
) -> str:
    with admin(cluster) as c:
        r = c.request("AuthCreate", name=name, role=role, prefixes=list(prefixes), requests=list(requests))
    assert r["name"] == name and r["role"] == role and "sha256" not in r
    return str(r["token"])


def code_of(fn: Any) -> str:
    with pytest.raises(AspenError) as err:
        fn()
    return str(err.value.error.code)


def test_reader_reads_its_prefix_only_and_changes_nothing(tls_cluster: LocalCluster) -> None:
    value = os.urandom(300)
    with admin(tls_cluster) as c:
        c.put("pub/a", value)
        c.put("secret/a", b"hidden")
    token = create(tls_cluster, "reader1", "reader", prefixes=["pub/"])
    with as_credential(tls_cluster, token) as r:
        assert r.get("pub/a")["value"] == value
        assert len(r.scan_all("pub/")) == 1
        assert code_of(lambda: r.get("secret/a")) == "PERMISSION_DENIED"
        assert code_of(lambda: r.scan("", 10)) == "PERMISSION_DENIED"
        assert code_of(lambda: r.put("pub/a", b"overwritten")) == "PERMISSION_DENIED"
        assert code_of(lambda: r.batch([{"op": "Set", "key": "pub/b", "value": b"x"}])) == "PERMISSION_DENIED"
        for rtype, fields in (
            ("ClusterSetting", {"name": "require_signatures", "value": False}),
            ("PluginKeysAdd", {"name": "k", "public_key": "00" * 32}),
            ("AddNode", {"node_id": 9, "raft_addr": "127.0.0.1:1", "client_addr": "127.0.0.1:2"}),
            ("AuthCreate", {"name": "x", "role": "admin"}),
            ("PluginRemove", {"name": "anything"}),
            ("PluginLogs", {"name": "anything"}),
        ):
            with pytest.raises(AspenError) as err:
                r.request(rtype, **fields)
            assert err.value.error.code == "PERMISSION_DENIED", rtype
            assert "admin only" in err.value.error.message
        assert r.ping()["type"] == "Pong"
    with admin(tls_cluster) as c:
        assert c.get("pub/a")["value"] == value  # nothing changed
        assert c.get("pub/b")["was_found"] is False
        names = [x["name"] for x in c.request("AuthList")["credentials"]]
        assert "reader1" in names and "x" not in names


def test_writer_writes_its_prefixes_through_any_node(tls_cluster: LocalCluster) -> None:
    token = create(tls_cluster, "writer1", "writer", prefixes=["app/", "jobs/"])
    for node in tls_cluster.nodes:
        with as_credential(tls_cluster, token, [node], discover_leader=False) as w:
            w.put(f"app/{node}", b"\x00\xff" * 10)
            w.batch([{"op": "Set", "key": f"jobs/{node}", "value": b"j"}])
            assert code_of(lambda w=w: w.put("other/x", b"no")) == "PERMISSION_DENIED"
            assert (
                code_of(
                    lambda w=w: w.batch(
                        [
                            {"op": "Set", "key": "app/ok", "value": b"1"},
                            {"op": "Set", "key": "evil/x", "value": b"2"},
                        ]
                    )
                )
                == "PERMISSION_DENIED"
            )
    with admin(tls_cluster) as c:
        assert len(c.scan_all("app/")) == 3 and c.get("app/ok")["was_found"] is False


def test_revocation_holds_on_every_node_when_it_returns(tls_cluster: LocalCluster) -> None:
    token = create(tls_cluster, "temp1", "writer", prefixes=["t/"])
    clients = [as_credential(tls_cluster, token, [n], discover_leader=False) for n in tls_cluster.nodes]
    try:
        for c in clients:
            c.put("t/k", b"v")  # connections open and authenticated on every node
        with admin(tls_cluster) as a:
            r = a.request("AuthRevoke", name="temp1")
        assert r["existed"] is True and r["unconfirmed_nodes"] == [] and len(r["confirmed_nodes"]) == 3
        for c in clients:  # the very next request on the already-open connections
            assert code_of(lambda c=c: c.get("t/k")) == "AUTH_FAILED"
    finally:
        for c in clients:
            c.close()
    with as_credential(tls_cluster, token, retries_max=1) as again:
        assert code_of(lambda: again.ping()) == "AUTH_FAILED"  # and new connections


def test_wrong_secret_unknown_name_and_plaintext_are_refused(
    tls_cluster: LocalCluster, tmp_path: Path
) -> None:
    token = Token.parse(create(tls_cluster, "reader2", "reader", prefixes=["pub/"]))
    forged = str(Token(token.name, os.urandom(32)))
    with as_credential(tls_cluster, forged, retries_max=1) as c:
        assert code_of(lambda: c.ping()) == "AUTH_FAILED"
    with as_credential(tls_cluster, str(Token("nobody", os.urandom(32))), retries_max=1) as c:
        assert code_of(lambda: c.ping()) == "AUTH_FAILED"
    # The client never sends a credential without TLS.
    with (Client([tls_cluster.nodes[1].client_addr], None, 5.0, credential=str(token), retries_max=1) as c,
          pytest.raises(AspenError)):
        c.ping()
    with pytest.raises(ValueError):
        Token.parse("aspen1.name.not-base64!!")


def test_a_role_with_nothing_and_bad_names_are_refused(tls_cluster: LocalCluster) -> None:
    with admin(tls_cluster) as c:
        for fields in (
            {"name": "empty", "role": "reader"},
            {"name": "bad name", "role": "reader", "prefixes": ["a"]},
            {"name": "root", "role": "admin"},
            {"name": "r", "role": "superuser"},
            {"name": "\xff" * 3, "role": "admin"},
        ):
            with pytest.raises(AspenError) as err:
                c.request("AuthCreate", **fields)
            assert err.value.error.code == "INVALID_REQUEST", fields
        create(tls_cluster, "dup", "reader", prefixes=["a/"])
        with pytest.raises(AspenError) as err:
            c.request("AuthCreate", name="dup", role="admin")
        assert "exists" in err.value.error.message
        # A credential's secret is nowhere in the replicated state, only its SHA-256.
        raw = c.request("AuthList")
        assert all("token" not in x for x in raw["credentials"])


def test_a_plugin_learns_who_calls_it(tls_cluster: LocalCluster) -> None:
    from tests.plugins.test_plugins_cluster import eventually, install
    from tests.plugins.wat import manifest, plugin

    # handle_request answers with the request it was given: the host's fields included.
    echo = plugin(
        "whoami",
        "1.0.0",
        {},
        handle=(
            "(return (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32)) (i64.extend_i32_u "
            "(local.get $n))))"
        ),
    )
    with admin(tls_cluster) as c:
        install(c, echo, manifest("whoami", "1.0.0", ["WhoAmI"]), wait=True)
        eventually(lambda: c.request("WhoAmI")["caller"] == "root", what="the plugin on every node")
        # A client cannot claim to be someone else: the node overwrites the field.
        assert c.request("WhoAmI", caller="reader-in-disguise")["caller"] == "root"
    token = create(tls_cluster, "caller1", "reader", requests=["WhoAmI"])
    with as_credential(tls_cluster, token) as r:
        assert r.request("WhoAmI", caller="root")["caller"] == "caller1"
    other = create(tls_cluster, "caller2", "reader", prefixes=["pub/"])
    with as_credential(tls_cluster, other) as r:
        assert code_of(lambda: r.request("WhoAmI")) == "PERMISSION_DENIED"


def test_a_forwarded_plugin_request_keeps_its_caller(tls_cluster: LocalCluster) -> None:
    """A plugin Failed on node 1 has node 1 forward requests to a node where it is Ready, over
    node 1's root connection. The plugin there must still see the credential that asked (it
    used to see root: a reader's request ran as root wherever it was forwarded to)."""
    from tests.plugins.test_plugins_cluster import eventually, install
    from tests.plugins.wat import manifest, plugin

    # Echoes the request it was given; traps on one longer than 160 bytes of msgpack (a pad).
    echo = plugin("whofrag", "1.0.0", {}, handle=(
        "(if (i32.gt_u (local.get $n) (i32.const 160)) (then unreachable))"
        "(return (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))"
        " (i64.extend_i32_u (local.get $n))))"))
    with admin(tls_cluster) as c:
        install(c, echo, manifest("whofrag", "1.0.0", ["WhoFrag"]), wait=True)
        eventually(
            lambda: all(
                st.get("state") == "Ready" for st in c.request("PluginInfo", name="whofrag")["nodes"].values()
            ),
            what="whofrag Ready on every node",
        )
    with Client(
        [tls_cluster.nodes[1].client_addr],
        tls_cluster.cookie,
        10.0,
        discover_leader=False,
        **tls_cluster.client_tls(),
    ) as on1:
        for _ in range(5):  # five traps within 60 s on node 1 only: Failed there
            assert code_of(lambda: on1.request("WhoFrag", pad="x" * 200)) == "PLUGIN_TRAP"
        states = on1.request("PluginInfo", name="whofrag")["nodes"]
        assert [states[n]["state"] for n in ("1", "2", "3")] == ["Failed", "Ready", "Ready"], states
        # Root's own request through node 1 is forwarded and is root's there.
        served = on1.request("WhoFrag")
        assert served["caller"] == "root" and served["forwarded_by"] == 1
    token = create(tls_cluster, "fwd1", "reader", requests=["WhoFrag"])
    with as_credential(tls_cluster, token, node_ids=[1], discover_leader=False) as r:
        served = r.request("WhoFrag", caller="root", forwarded_by=2)  # claims are overwritten
        assert served["forwarded_by"] == 1 and served["caller"] == "fwd1", served


def test_no_credential_secret_is_stored_anywhere(tls_cluster: LocalCluster) -> None:
    token = Token.parse(create(tls_cluster, "at-rest", "reader", prefixes=["pub/"]))
    with admin(tls_cluster) as c:
        c.put("pub/after", b"x")  # one more entry through the log after the creation
    for node in tls_cluster.nodes:
        for path in tls_cluster.data_dir(node).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert token.secret not in data and str(token).encode() not in data, path


def test_cli_issues_uses_and_revokes_a_credential(tls_cluster: LocalCluster) -> None:
    import subprocess
    import sys

    tls = tls_cluster.client_tls()
    env = {
        **os.environ,
        "ASPEN_CLUSTER": tls_cluster.endpoints,
        "ASPEN_COOKIE": tls_cluster.cookie,
        "ASPEN_CACERT": str(tls["cacert"]),
        "ASPEN_CERT": str(tls["cert"]),
        "ASPEN_KEY": str(tls["key"]),
    }

    def cli(*args: str, credential: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = {"ASPEN_CREDENTIAL": credential} if credential else {}
        return subprocess.run(
            [str(Path(sys.executable).parent / "aspen-cli"), *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = cli("auth", "create", "cli-reader", "--role", "reader", "--prefix", "cli/")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("aspen1.cli-reader.")
    assert cli("kv", "set", "cli/k", "v").returncode == 0
    got = cli("kv", "get", "cli/k", credential=token)
    assert got.returncode == 0 and "v" in got.stdout, got.stderr
    denied = cli("kv", "set", "cli/k", "w", credential=token)
    assert denied.returncode == 1 and denied.stderr.count("\n") == 1, denied.stderr
    assert denied.stderr.startswith("error: PERMISSION_DENIED: credential 'cli-reader' (reader) may not")
    assert "cli-reader" in cli("auth", "list").stdout
    assert cli("auth", "revoke", "cli-reader").stdout.startswith("revoked cli-reader")
    gone = cli("kv", "get", "cli/k", credential=token)
    assert gone.returncode == 1 and gone.stderr.startswith("error: AUTH_FAILED"), gone.stderr


def test_metrics_want_a_credential_and_a_bare_port_is_loopback(tmp_path: Path) -> None:
    import socket
    import urllib.error
    import urllib.request

    from deploy.launcher import free_ports

    port = free_ports(1)[0]
    with LocalCluster(
        tmp_path / "c", node_args=["--metrics-auth", "--metrics-listen", str(port)], tls=True
    ) as c:
        c.up(1)
        token = create(c, "prometheus", "reader", prefixes=["metrics/"])

        def get(path: str, auth: str | None = None) -> int:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
            if auth is not None:
                req.add_header("Authorization", auth)
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return int(r.status)
            except urllib.error.HTTPError as err:
                return int(err.code)

        assert get("/metrics") == 401
        assert get("/metrics", "Bearer " + str(Token(Token.parse(token).name, os.urandom(32)))) == 401
        assert get("/metrics", "Basic abc") == 401
        assert get("/metrics", "Bearer " + token) == 200
        assert get("/health") == 200  # probes stay open
        with pytest.raises(OSError):  # PORT alone binds loopback's 127.0.0.1 only
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
        with admin(c) as a:
            a.request("AuthRevoke", name="prometheus")
        assert get("/metrics", "Bearer " + token) == 401


def test_an_expired_credential_is_refused_on_open_and_new_connections(tls_cluster: LocalCluster) -> None:
    import time

    with admin(tls_cluster) as c:
        r = c.request("AuthCreate", name="short", role="reader", prefixes=["pub/"], ttl_s=2)
        assert r["expires_ms"] - r["created_ms"] == 2000
        with pytest.raises(AspenError) as err:
            c.request("AuthCreate", name="neg", role="reader", prefixes=["pub/"], ttl_s=-1)
        assert err.value.error.code == "INVALID_REQUEST"
    with as_credential(tls_cluster, r["token"]) as open_conn:
        assert open_conn.ping()["type"] == "Pong"
        time.sleep(max(0.0, r["expires_ms"] / 1000 - time.time()) + 0.2)
        with pytest.raises(AspenError) as err:
            open_conn.get("pub/a")
        assert err.value.error.code == "AUTH_FAILED" and "expired" in err.value.error.message
    with as_credential(tls_cluster, r["token"], retries_max=1) as again:
        assert code_of(lambda: again.ping()) == "AUTH_FAILED"
