"""The secrets plugin on a real 3-node cluster through aspen-cli: KV v2 end to end, a sealed
node, and no secret in clear in any file of any node's data dir."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.signing
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aspen import secrets
from aspen.unseal_key import new_unseal_key
from deploy.launcher import LocalCluster
from tests.secrets.test_barrier import cli, eventually, files_bytes, status
from wire.errors import AspenError

SECRET = "kv-SECRET-7f3a9c2e41"
TRANSIT_SECRET = "transit-plain-93be1c"


@pytest.fixture(scope="module")
def exported_keys() -> list[bytes]:
    """Key material the tests exported: test_zz greps every data dir for it."""
    return []


@pytest.fixture(scope="module")
def unseal_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "unseal.key"
    path.write_text(new_unseal_key().hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def sc(
    tmp_path_factory: pytest.TempPathFactory, secrets_wasm: Path, unseal_key: Path
) -> Iterator[LocalCluster]:
    with LocalCluster(
        tmp_path_factory.mktemp("secrets") / "c", node_args=["--seal-key-file", str(unseal_key)]
    ) as c:
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
        assert js(sc, "--node", str(node), "secrets", "kv", "get", "app/db")["data"] == {
            "user": "u",
            "pass": SECRET,
        }
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
    assert (
        js(sc, "secrets", "kv", "get", "app/db", "--version", "2", status=1)["destroyed"] is True
    )  # no data: 1
    r = js(
        sc,
        "secrets",
        "kv",
        "metadata",
        "put",
        "app/db",
        "--max-versions",
        "5",
        "--cas-required",
        "true",
        "--delete-version-after",
        "1h",
        "--custom-metadata",
        "owner=team-a",
    )
    assert r["metadata"]["delete_version_after_ms"] == 3_600_000 and r["metadata"]["custom_metadata"] == {
        "owner": "team-a"
    }
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


def test_transit_through_the_cli(sc: LocalCluster, exported_keys: list[bytes]) -> None:
    for name, kind in (("orders", "xchacha20-poly1305"), ("legacy", "aes256-gcm96"), ("signer", "ed25519")):
        r = cli(sc, "secrets", "transit", "create", name, "--type", kind, "--exportable")
        assert r.returncode == 0 and r.stdout.startswith(f"created {name}: {kind}"), r.stderr
    ct = cli(sc, "secrets", "transit", "encrypt", "orders", "--text", TRANSIT_SECRET).stdout.strip()
    assert ct.startswith("aspen:v1:")
    # Decrypted on every node.
    for node in sc.nodes:
        r = cli(sc, "--node", str(node), "secrets", "transit", "decrypt", "orders", ct, "--decode")
        assert r.stdout.strip() == TRANSIT_SECRET, r.stderr
    # The plugin's ciphertext opens with libsodium given the exported key, for each AEAD.
    for name in ("orders", "legacy"):
        key = base64.b64decode(js(sc, "secrets", "transit", "export", name, "encryption-key")["keys"]["1"])
        exported_keys.append(key)
        c = cli(sc, "secrets", "transit", "encrypt", name, "--text", "interop").stdout.strip()
        raw = base64.b64decode(c.split(":")[2])
        if name == "orders":
            plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(raw[24:], b"", raw[:24], key)
        else:
            plain = AESGCM(key).decrypt(raw[:12], raw[12:], b"")
        assert plain == b"interop"
    # Rotation, rewrap, min versions.
    assert "latest version 2" in cli(sc, "secrets", "transit", "rotate", "orders").stdout
    new = cli(sc, "secrets", "transit", "rewrap", "orders", ct).stdout.strip()
    assert new.startswith("aspen:v2:")
    assert cli(sc, "secrets", "transit", "config", "orders", "--min-decryption-version", "2").returncode == 0
    r = cli(sc, "secrets", "transit", "decrypt", "orders", ct)
    assert r.returncode != 0 and "MIN_DECRYPTION_VERSION" in r.stderr
    assert (
        cli(sc, "secrets", "transit", "decrypt", "orders", new, "--decode").stdout.strip() == TRANSIT_SECRET
    )
    # Batch, datakey, sign/verify, hmac, delete rules.
    batch = sc.root / "batch.json"
    batch.write_text(json.dumps([{"plaintext": base64.b64encode(b"a").decode()}, {"plaintext": "%%"}]))
    out = cli(sc, "secrets", "transit", "encrypt", "orders", "--batch", str(batch)).stdout.splitlines()
    assert out[0].startswith("aspen:v2:") and out[1].startswith("error: INVALID_REQUEST")
    dk = js(sc, "secrets", "transit", "datakey", "orders", "plaintext")
    assert len(base64.b64decode(dk["plaintext"])) == 32
    sig = cli(sc, "secrets", "transit", "sign", "signer", "--text", "hello").stdout.strip()
    assert (
        cli(
            sc, "secrets", "transit", "verify", "signer", "--text", "hello", "--signature", sig
        ).stdout.strip()
        == "valid"
    )
    r = cli(sc, "secrets", "transit", "verify", "signer", "--text", "hellO", "--signature", sig)
    assert r.returncode == 1 and r.stdout.strip() == "invalid"
    seed = base64.b64decode(js(sc, "secrets", "transit", "export", "signer", "signing-key")["keys"]["1"])
    exported_keys.append(seed)
    nacl.signing.SigningKey(seed).verify_key.verify(b"hello", base64.b64decode(sig.split(":")[2]))
    mac = cli(sc, "secrets", "transit", "hmac", "orders", "--text", "m").stdout.strip()
    assert cli(sc, "secrets", "transit", "verify", "orders", "--text", "m", "--hmac", mac).returncode == 0
    r = cli(sc, "secrets", "transit", "delete", "legacy")
    assert r.returncode != 0 and "DELETION_NOT_ALLOWED" in r.stderr
    assert cli(sc, "secrets", "transit", "config", "legacy", "--deletion-allowed", "true").returncode == 0
    assert cli(sc, "secrets", "transit", "delete", "legacy").returncode == 0
    assert cli(sc, "secrets", "transit", "list").stdout.split() == ["orders", "signer"]
    r = cli(sc, "secrets", "transit", "decrypt", "orders", "aspen:v2:AAAA")
    assert r.returncode != 0 and "DECRYPT_FAILED" in r.stderr


def test_sigkill_of_the_leader_loses_nothing_acknowledged(sc: LocalCluster) -> None:
    """KV writes and transit rotations while the leader is SIGKILLed: every acknowledged
    version is there afterwards, on every node."""
    cli(sc, "secrets", "transit", "create", "chaos")
    acked_kv: list[int] = []
    acked_rot: list[int] = []
    killed = None
    with sc.client(timeout_s=5.0) as client:
        for i in range(40):
            if i == 15:
                killed = sc.leader_id()
                assert killed is not None
                sc.kill(killed)
            try:
                r = client.request("SecretsKvPut", path="chaos/x", data={"i": str(i)})
                acked_kv.append(r["version"])
            except (AspenError, OSError, TimeoutError):
                pass
            try:
                r = client.request("SecretsTransitRotate", name="chaos")
                acked_rot.append(r["key"]["latest_version"])
            except (AspenError, OSError, TimeoutError):
                pass
    assert killed is not None and len(acked_kv) >= 20 and len(acked_rot) >= 20
    sc.start(killed)
    sc.wait_caught_up(killed)
    eventually(lambda: cli(sc, "--node", str(killed), "secrets", "kv", "get", "chaos/x").returncode == 0, 60)
    for node in sc.nodes:
        meta = js(sc, "--node", str(node), "secrets", "kv", "metadata", "get", "chaos/x")["metadata"]
        assert meta["current_version"] >= max(acked_kv)
        kept = {v["version"] for v in meta["versions"]}
        assert set(acked_kv[-10:]) <= kept  # max_versions 10: the newest acknowledged are all kept
        key = js(sc, "--node", str(node), "secrets", "transit", "read", "chaos")["key"]
        assert key["latest_version"] >= max(acked_rot) and {str(v) for v in acked_rot} <= set(key["keys"])
    last = js(sc, "secrets", "kv", "get", "chaos/x", "--version", str(max(acked_kv)))
    assert last["data"]["i"].isdigit()


def test_zz_no_secret_in_any_data_dir(sc: LocalCluster, exported_keys: list[bytes]) -> None:
    """Last in the module: every secret written above, grepped in every file of every node."""
    needles = [SECRET.encode(), b"second", b"team-a", TRANSIT_SECRET.encode(), b"interop", *exported_keys]
    assert len(exported_keys) == 3
    for node in list(sc.nodes):
        sc.stop(node)  # everything flushed
    for path, data in files_bytes(sc):
        for needle in needles:
            assert needle not in data, f"{needle!r} is in clear in {path}"
