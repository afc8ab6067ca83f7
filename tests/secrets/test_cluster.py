"""The secrets plugin on a real 3-node cluster through aspen-cli: KV v2 end to end, a sealed
node, and no secret in clear in any file of any node's data dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aspen import secrets
from aspen.barrier import new_unseal_key
from deploy.launcher import LocalCluster
from storage.errors import AspenError
from tests.secrets.test_barrier import cli, eventually, files_bytes, status

SECRET = "kv-SECRET-7f3a9c2e41"


@pytest.fixture(scope="module")
def unseal_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "unseal.key"
    path.write_text(new_unseal_key().hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory, secrets_wasm: Path, unseal_key: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("secrets") / "c", node_args=["--seal-key-file", str(unseal_key)]) as c:
        c.up(3)
        r = cli(c, "plugin", "install", str(secrets_wasm), "--manifest", str(secrets.MANIFEST), "--wait")
        assert r.returncode == 0, r.stderr
        eventually(lambda: all(not status(c, n)["sealed"] for n in c.nodes))
        yield c


def js(c: LocalCluster, *args: str, status: int = 0) -> Any:
    r = cli(c, "--json", *args)
    assert r.returncode == status, r.stderr
    return json.loads(r.stdout)


def test_kv_v2_through_the_cli(sc: LocalCluster) -> None:
    r = cli(sc, "secrets", "kv", "put", "app/db", "user=u", f"pass={SECRET}")
    assert r.returncode == 0 and "app/db version 1 (live)" in r.stdout, r.stderr
    assert cli(sc, "secrets", "kv", "get", "app/db", "--field", "pass").stdout.strip() == SECRET
    # Every node serves it (reads are linearizable on each).
    for node in sc.nodes:
        assert js(sc, "--node", str(node), "secrets", "kv", "get", "app/db")["data"] == {"user": "u", "pass": SECRET}
    r = cli(sc, "secrets", "kv", "put", "app/db", "user=u", "pass=second", "--cas", "0")
    assert r.returncode != 0 and "CAS_MISMATCH" in r.stderr
    assert js(sc, "secrets", "kv", "put", "app/db", "user=u", "pass=second", "--cas", "1")["version"] == 2
    assert js(sc, "secrets", "kv", "patch", "app/db", "extra=x")["version"] == 3
    assert js(sc, "secrets", "kv", "get", "app/db", "--version", "1")["data"]["pass"] == SECRET
    assert js(sc, "secrets", "kv", "get", "app/db")["data"] == {"user": "u", "pass": "second", "extra": "x"}
    cli(sc, "secrets", "kv", "put", "app/api/key", "k=v")
    assert cli(sc, "secrets", "kv", "list", "app/").stdout.split() == ["api/", "db"]
    assert cli(sc, "secrets", "kv", "delete", "app/db").returncode == 0
    r = cli(sc, "secrets", "kv", "get", "app/db")
    assert r.returncode == 1 and "deleted" in r.stdout
    assert cli(sc, "secrets", "kv", "undelete", "app/db", "--versions", "3").returncode == 0
    assert cli(sc, "secrets", "kv", "destroy", "app/db", "--versions", "2").returncode == 0
    assert js(sc, "secrets", "kv", "get", "app/db", "--version", "2", status=1)["destroyed"] is True  # no data: 1
    r = js(sc, "secrets", "kv", "metadata", "put", "app/db", "--max-versions", "5", "--cas-required", "true",
           "--delete-version-after", "1h", "--custom-metadata", "owner=team-a")
    assert r["metadata"]["delete_version_after_ms"] == 3_600_000 and r["metadata"]["custom_metadata"] == {"owner": "team-a"}
    r = cli(sc, "secrets", "kv", "put", "app/db", "a=b")
    assert r.returncode != 0 and "CAS_REQUIRED" in r.stderr
    assert "current version 3" in cli(sc, "secrets", "kv", "metadata", "get", "app/db").stdout
    # Bad input: one clear error each.
    assert "INVALID_REQUEST" in cli(sc, "secrets", "kv", "put", "/abs", "a=b").stderr
    assert cli(sc, "secrets", "kv", "put", "p", "novalue").returncode == 2
    # Over the 512 KiB limit (too long for one command-line argument): through the client.
    with sc.client() as client, pytest.raises(AspenError, match="VALUE_TOO_LARGE"):
        client.request("SecretsKvPut", path="big", data={"v": "x" * (600 * 1024)})
    assert cli(sc, "secrets", "kv", "metadata", "delete", "app/api/key").returncode == 0
    assert "NOT_FOUND" in cli(sc, "secrets", "kv", "get", "app/api/key").stderr


def test_raw_reads_of_the_namespace_show_nothing(sc: LocalCluster) -> None:
    cli(sc, "secrets", "kv", "put", "raw/x", f"pass={SECRET}")
    # A raw ReadKey/ScanKeys of the namespace gets barrier envelopes: version byte 01, then
    # nonce and ciphertext; neither the secret nor a field name.
    r = cli(sc, "kv", "get", "secrets:kv/m/raw/x")
    assert r.returncode == 0 and r.stdout.startswith("01") and "not UTF-8" in r.stdout, r.stdout + r.stderr
    with sc.client() as client:
        rows = client.request("ScanKeys", prefix="secrets:", limit=1000)["entries"]
    assert len(rows) >= 2
    for row in rows:
        assert SECRET.encode() not in row["value"] and b"pass" not in row["value"] and row["value"][0] == 1


def test_a_sealed_node_answers_sealed_and_serves_the_rest(sc: LocalCluster) -> None:
    cli(sc, "secrets", "kv", "put", "sealed/x", "a=b")
    sc.stop(2)
    args = sc.node_args
    sc.node_args = []
    try:
        sc.start(2)
        sc.wait_caught_up(2)
        # Once its plugins are loaded again: SEALED, with exit status 1.
        eventually(lambda: "SEALED" in cli(sc, "--node", "2", "secrets", "kv", "get", "sealed/x").stderr)
        assert cli(sc, "--node", "2", "secrets", "kv", "get", "sealed/x").returncode == 1
        assert cli(sc, "--node", "2", "kv", "set", "plain-key", "v").returncode == 0
        assert cli(sc, "--node", "2", "kv", "get", "plain-key").stdout.strip() == "v"
        assert js(sc, "--node", "1", "secrets", "kv", "get", "sealed/x")["data"] == {"a": "b"}
    finally:
        sc.stop(2)
        sc.node_args = args
        sc.start(2)
    eventually(lambda: not status(sc, 2)["sealed"])
    eventually(lambda: cli(sc, "--node", "2", "secrets", "kv", "get", "sealed/x").returncode == 0)
    assert js(sc, "--node", "2", "secrets", "kv", "get", "sealed/x")["data"] == {"a": "b"}


def test_zz_no_secret_in_any_data_dir(sc: LocalCluster) -> None:
    """Last in the module: every secret written above, grepped in every file of every node."""
    needles = [SECRET.encode(), b"second", b"team-a"]
    for node in list(sc.nodes):
        sc.stop(node)  # everything flushed
    for path, data in files_bytes(sc):
        for needle in needles:
            assert needle not in data, f"{needle!r} is in clear in {path}"
