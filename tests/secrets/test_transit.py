"""Transit in the test kit: every operation and its errors, and interop with the libraries
themselves: a ciphertext made by the plugin opens with libsodium / `cryptography` given the
exported key, and the reverse, for each key type."""

from __future__ import annotations

import base64
import os

import nacl.bindings
import nacl.signing
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tests.secrets.conftest import Kit

B = lambda data: base64.b64encode(data).decode()  # noqa: E731
U = base64.b64decode


def body(ct: str) -> tuple[int, bytes]:
    _, v, b64 = ct.split(":")
    return int(v[1:]), U(b64)


def exported(kit: Kit, name: str, kind: str = "encryption-key") -> dict[int, bytes]:
    return {
        int(v): U(k) for v, k in kit.ok("SecretsTransitExport", name=name, export_type=kind)["keys"].items()
    }


@pytest.mark.parametrize("kind", ["xchacha20-poly1305", "aes256-gcm96"])
def test_interop_with_the_libraries(kit: Kit, kind: str) -> None:
    kit.ok("SecretsTransitCreate", name="k", key_type=kind, exportable=True)
    plain = os.urandom(1024)
    ct = kit.ok("SecretsTransitEncrypt", name="k", plaintext=B(plain))["ciphertext"]
    assert ct.startswith("aspen:v1:")
    key = exported(kit, "k")[1]
    v, raw = body(ct)
    if kind == "xchacha20-poly1305":
        opened = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(raw[24:], b"", raw[:24], key)
        nonce = os.urandom(24)
        made = nonce + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            b"from python", b"", nonce, key
        )
    else:
        opened = AESGCM(key).decrypt(raw[:12], raw[12:], b"")
        nonce = os.urandom(12)
        made = nonce + AESGCM(key).encrypt(nonce, b"from python", b"")
    assert opened == plain and v == 1
    r = kit.ok("SecretsTransitDecrypt", name="k", ciphertext=f"aspen:v1:{B(made)}")
    assert U(r["plaintext"]) == b"from python"
    assert "keys" in kit.ok("SecretsTransitRead", name="k")["key"]
    assert all(
        set(v) == {"created_ms"} for v in kit.ok("SecretsTransitRead", name="k")["key"]["keys"].values()
    )


def test_ed25519_interop_sign_verify(kit: Kit) -> None:
    kit.ok("SecretsTransitCreate", name="s", key_type="ed25519", exportable=True)
    sig = kit.ok("SecretsTransitSign", name="s", input=B(b"message"))["signature"]
    seed = exported(kit, "s", "signing-key")[1]
    public = kit.ok("SecretsTransitRead", name="s")["key"]["keys"]["1"]["public_key"]
    sk = nacl.signing.SigningKey(seed)
    assert bytes(sk.verify_key) == U(public)
    sk.verify_key.verify(b"message", body(sig)[1])  # the library accepts the plugin's signature
    mine = "aspen:v1:" + B(sk.sign(b"other").signature)  # and the plugin the library's
    assert kit.ok("SecretsTransitVerify", name="s", input=B(b"other"), signature=mine)["valid"] is True
    assert kit.ok("SecretsTransitVerify", name="s", input=B(b"tampered"), signature=mine)["valid"] is False
    kit.err("SecretsTransitEncrypt", "UNSUPPORTED_OPERATION", name="s", plaintext=B(b"x"))
    kit.err("SecretsTransitExport", "UNSUPPORTED_OPERATION", name="s", export_type="encryption-key")


def test_rotation_rewrap_min_versions_trim(kit: Kit) -> None:
    kit.ok("SecretsTransitCreate", name="r")
    c1 = kit.ok("SecretsTransitEncrypt", name="r", plaintext=B(b"one"))["ciphertext"]
    assert kit.ok("SecretsTransitRotate", name="r")["key"]["latest_version"] == 2
    c2 = kit.ok("SecretsTransitEncrypt", name="r", plaintext=B(b"two"))["ciphertext"]
    assert c2.startswith("aspen:v2:")
    assert U(kit.ok("SecretsTransitDecrypt", name="r", ciphertext=c1)["plaintext"]) == b"one"
    w = kit.ok("SecretsTransitRewrap", name="r", ciphertext=c1)
    assert w["ciphertext"].startswith("aspen:v2:") and w["key_version"] == 2
    kit.ok("SecretsTransitConfig", name="r", min_decryption_version=2)
    assert "below min_decryption_version 2" in kit.err(
        "SecretsTransitDecrypt", "MIN_DECRYPTION_VERSION", name="r", ciphertext=c1
    )
    assert U(kit.ok("SecretsTransitDecrypt", name="r", ciphertext=w["ciphertext"])["plaintext"]) == b"one"
    kit.ok("SecretsTransitRotate", name="r")
    kit.ok("SecretsTransitConfig", name="r", min_encryption_version=3)
    kit.err("SecretsTransitEncrypt", "MIN_ENCRYPTION_VERSION", name="r", plaintext=B(b"x"), key_version=2)
    kit.err("SecretsTransitConfig", "INVALID_REQUEST", name="r", min_decryption_version=9)
    kit.err(
        "SecretsTransitTrim", "INVALID_REQUEST", name="r", min_available_version=3
    )  # above min_decryption 2
    r = kit.ok("SecretsTransitTrim", name="r", min_available_version=2)["key"]
    assert (r["min_available_version"], sorted(r["keys"])) == (2, ["2", "3"])
    kit.err("SecretsTransitTrim", "INVALID_REQUEST", name="r", min_available_version=1)  # no going back
    kit.err("SecretsTransitDecrypt", "MIN_DECRYPTION_VERSION", name="r", ciphertext=c1)
    # Delete only when allowed.
    kit.err("SecretsTransitDelete", "DELETION_NOT_ALLOWED", name="r")
    kit.ok("SecretsTransitConfig", name="r", deletion_allowed=True)
    kit.ok("SecretsTransitDelete", name="r")
    kit.err("SecretsTransitRead", "NOT_FOUND", name="r")


def test_batch_context_convergent(kit: Kit) -> None:
    kit.ok("SecretsTransitCreate", name="d", derived=True, convergent_encryption=True, exportable=True)
    ctx = B(b"tenant-1")
    r = kit.ok(
        "SecretsTransitEncrypt",
        name="d",
        batch_input=[
            {"plaintext": B(b"a"), "context": ctx},
            {"plaintext": B(b"a"), "context": ctx},
            {"plaintext": B(b"a"), "context": B(b"tenant-2")},
            {"plaintext": B(b"a")},
            {"plaintext": "!!notbase64"},
        ],
    )
    res = r["batch_results"]
    assert res[0]["ciphertext"] == res[1]["ciphertext"] != res[2]["ciphertext"]  # convergent, per context
    assert res[3]["code"] == "INVALID_REQUEST" and "context" in res[3]["error"]
    assert res[4]["code"] == "INVALID_REQUEST" and "base64" in res[4]["error"]
    # The derived key is HKDF-SHA256 of the exported key with the context: the library opens it.
    key = exported(kit, "d")[1]
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"aspen transit derive\x00tenant-1"
    ).derive(key)
    raw = body(res[0]["ciphertext"])[1]
    assert nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(raw[24:], b"", raw[:24], derived) == b"a"
    d = kit.ok(
        "SecretsTransitDecrypt",
        name="d",
        batch_input=[
            {"ciphertext": res[0]["ciphertext"], "context": ctx},
            {"ciphertext": res[0]["ciphertext"], "context": B(b"tenant-2")},
        ],
    )["batch_results"]
    assert U(d[0]["plaintext"]) == b"a" and d[1]["code"] == "DECRYPT_FAILED"
    kit.ok("SecretsTransitCreate", name="plain")
    kit.err("SecretsTransitEncrypt", "INVALID_REQUEST", name="plain", plaintext=B(b"x"), context=ctx)
    kit.err("SecretsTransitEncrypt", "INVALID_REQUEST", name="plain", batch_input=[])
    kit.err("SecretsTransitCreate", "INVALID_REQUEST", name="bad", convergent_encryption=True)


def test_forged_truncated_foreign_ciphertexts(kit: Kit) -> None:
    kit.ok("SecretsTransitCreate", name="a")
    kit.ok("SecretsTransitCreate", name="b")
    ct = kit.ok("SecretsTransitEncrypt", name="a", plaintext=B(b"secret"))["ciphertext"]
    _, raw = body(ct)
    flipped = bytearray(raw)
    flipped[-1] ^= 1
    kit.err("SecretsTransitDecrypt", "DECRYPT_FAILED", name="a", ciphertext=f"aspen:v1:{B(bytes(flipped))}")
    kit.err("SecretsTransitDecrypt", "DECRYPT_FAILED", name="a", ciphertext=f"aspen:v1:{B(raw[:30])}")
    kit.err("SecretsTransitDecrypt", "DECRYPT_FAILED", name="b", ciphertext=ct)  # another key's
    kit.err(
        "SecretsTransitDecrypt", "NOT_FOUND", name="a", ciphertext=f"aspen:v7:{B(raw)}"
    )  # no such version
    for bad in [
        "vault:v1:" + B(raw),
        "aspen:v1:" + B(raw)[:-1],
        "aspen:v1:****",
        "aspen:v0:" + B(raw),
        ct + "\n",
    ]:
        kit.err("SecretsTransitDecrypt", "INVALID_CIPHERTEXT", name="a", ciphertext=bad)
    kit.err("SecretsTransitEncrypt", "INVALID_REQUEST", name="a", plaintext="not base64!")
    kit.err("SecretsTransitEncrypt", "VALUE_TOO_LARGE", name="a", plaintext=B(b"x" * (1024 * 1024 + 1)))
    # A batch within the item bound but over the request's 8 MiB: refused before any work (it
    # would run out of fuel and trap, and five traps in a minute fail the plugin).
    nine = [{"plaintext": B(b"x" * (700 * 1024))}] * 10
    assert "split the batch" in kit.err(
        "SecretsTransitEncrypt", "VALUE_TOO_LARGE", name="a", batch_input=nine
    )
    kit.err("SecretsTransitEncrypt", "NOT_FOUND", name="missing", plaintext=B(b"x"))
    kit.err("SecretsTransitCreate", "INVALID_REQUEST", name="bad/name")
    kit.err("SecretsTransitCreate", "INVALID_REQUEST", name="x", key_type="rsa-4096")


def test_datakey_hmac_export_rules(kit: Kit) -> None:
    kit.ok("SecretsTransitCreate", name="h")
    r = kit.ok("SecretsTransitDatakey", name="h", key_kind="plaintext", bits=256)
    assert len(U(r["plaintext"])) == 32
    assert (
        kit.ok("SecretsTransitDecrypt", name="h", ciphertext=r["ciphertext"])["plaintext"] == r["plaintext"]
    )
    w = kit.ok("SecretsTransitDatakey", name="h", key_kind="wrapped")
    assert "plaintext" not in w and w["ciphertext"].startswith("aspen:v1:")
    kit.err("SecretsTransitDatakey", "INVALID_REQUEST", name="h", bits=100)
    mac = kit.ok("SecretsTransitHmac", name="h", input=B(b"data"))["hmac"]
    assert kit.ok("SecretsTransitVerify", name="h", input=B(b"data"), hmac=mac)["valid"] is True
    assert kit.ok("SecretsTransitVerify", name="h", input=B(b"datA"), hmac=mac)["valid"] is False
    assert "NOT_EXPORTABLE" in kit("SecretsTransitExport", name="h", export_type="hmac-key")["code"]
    kit.ok("SecretsTransitConfig", name="h", exportable=True)
    kit.err("SecretsTransitConfig", "INVALID_REQUEST", name="h", exportable=False)
    hkey = exported(kit, "h", "hmac-key")[1]
    import hmac as std_hmac

    assert body(mac)[1] == std_hmac.new(hkey, b"data", "sha256").digest()
    assert kit.ok("SecretsTransitList")["keys"] == ["h"]
    # No key material in clear in the namespace.
    material = exported(kit, "h")[1]
    assert not any(material in v or hkey in v for v in kit.h.kv.values())


def test_policies_limit_callers(kit: Kit) -> None:
    kit.ok("SecretsKvPut", path="app/db", data={"p": "x"})
    kit.ok("SecretsKvPut", path="other/db", data={"p": "y"})
    kit.ok("SecretsTransitCreate", name="orders")
    kit.ok("SecretsTransitCreate", name="payroll")
    kit.err("SecretsKvGet", "PERMISSION_DENIED", caller="alice", path="app/db")  # no policy: nothing
    kit.ok(
        "SecretsPolicyPut",
        name="alice",
        rules=[
            {"path": "kv/app/*", "capabilities": ["read", "list"]},
            {"path": "transit/orders", "capabilities": ["encrypt"]},
        ],
    )
    assert kit.ok("SecretsKvGet", caller="alice", path="app/db")["data"] == {"p": "x"}
    kit.err("SecretsKvPut", "PERMISSION_DENIED", caller="alice", path="app/db", data={"p": "z"})
    kit.err("SecretsKvGet", "PERMISSION_DENIED", caller="alice", path="other/db")
    ct = kit.ok("SecretsTransitEncrypt", caller="alice", name="orders", plaintext=B(b"x"))["ciphertext"]
    kit.err("SecretsTransitDecrypt", "PERMISSION_DENIED", caller="alice", name="orders", ciphertext=ct)
    kit.err("SecretsTransitEncrypt", "PERMISSION_DENIED", caller="alice", name="payroll", plaintext=B(b"x"))
    kit.err("SecretsTransitRotate", "PERMISSION_DENIED", caller="alice", name="orders")
    kit.err(
        "SecretsPolicyPut",
        "PERMISSION_DENIED",
        caller="alice",
        name="alice",
        rules=[{"path": "*", "capabilities": ["sudo"]}],
    )
    kit.err(
        "SecretsPolicyPut", "INVALID_REQUEST", name="bob", rules=[{"path": "kv/*", "capabilities": ["fly"]}]
    )
    assert kit.ok("SecretsPolicyList")["names"] == ["alice"]
    kit.ok("SecretsPolicyDelete", name="alice")
    kit.err("SecretsKvGet", "PERMISSION_DENIED", caller="alice", path="app/db")


def test_the_opened_key_cache_follows_the_stored_record(kit: Kit) -> None:
    """The plugin reuses a key it opened only while the stored record is byte for byte the same:
    a change made elsewhere (another node's rotate; here the record put back as it was) is seen
    at the next request."""
    kit.ok("SecretsTransitCreate", name="c")
    before = kit.h.host.kv["secrets:transit/k/c"]
    assert kit.ok("SecretsTransitEncrypt", name="c", plaintext=B(b"x"))["key_version"] == 1
    kit.ok("SecretsTransitRotate", name="c")
    assert kit.ok("SecretsTransitEncrypt", name="c", plaintext=B(b"x"))["key_version"] == 2
    kit.h.host.kv["secrets:transit/k/c"] = before
    assert kit.ok("SecretsTransitEncrypt", name="c", plaintext=B(b"x"))["key_version"] == 1
    kit.h.host.kv["secrets:transit/k/c"] = before[:-1] + bytes(
        [before[-1] ^ 1]
    )  # tampered: not opened from cache
    assert kit("SecretsTransitEncrypt", name="c", plaintext=B(b"x"))["code"] == "DECRYPT_FAILED"
