"""Signed manifests (issue 13 item 4): the signature covers every field that changes what a
plugin may do, and an edit of any of them after signing is refused naming the field."""

from __future__ import annotations

import json

import nacl.signing
import pytest

from aspen import signing
from aspen.manifest import Manifest
from sandbox.permissions import PERMISSION_NAMES
from wire.errors import AspenError

WASM = b"\x00asm\x01\x00\x00\x00"
KEY = nacl.signing.SigningKey(b"\x01" * 32)
BASE = {"name": "greeter", "version": "1.0.0", "handles": ["Greet"], "permissions": {"kv_read": True},
        "kv_prefixes": ["greeter:"]}

# Each signed field, and an edit of it an attacker (or a careless operator) might make.
EDITS = {
    "name": {"name": "greeter2"},
    "version": {"version": "1.0.1"},
    "handles": {"handles": ["Greet", "ReadKey"]},
    "priority": {"priority": 900},
    "permissions": {"permissions": {"kv_read": True, "kv_write": True}},
    "kv_prefixes": {"kv_prefixes": ["greeter:", "mitm/"]},
    "fuel_limit": {"fuel_limit": 10**11},
    "memory_limit": {"memory_limit": 1024**3},
    "execution_timeout_secs": {"execution_timeout_secs": 300},
    "min_api_version": {"min_api_version": 0},
}


def signed(raw: dict) -> dict:
    return {**raw, "signature": signing.sign(Manifest.from_json(raw), WASM, KEY)}


def check(raw: dict, wasm: bytes = WASM, trusted: dict[str, str] | None = None) -> str:
    return signing.verify(Manifest.from_json(raw), signing.wasm_digest(wasm), trusted)


def test_a_signed_manifest_verifies_and_survives_json_and_defaults() -> None:
    good = signed(BASE)
    assert check(good) == bytes(KEY.verify_key).hex()
    assert check(json.loads(json.dumps(good))) == bytes(KEY.verify_key).hex()
    # Writing out a default, or a permission as false, means the same manifest.
    assert check({**good, "priority": 950, "permissions": {"kv_read": True, "hooks": False}})
    assert check({**good, "description": "edited", "author": "someone", "enabled": False})  # not covered


@pytest.mark.parametrize("field", sorted(EDITS))
def test_every_signed_field_edited_after_signing_is_refused_by_name(field: str) -> None:
    assert set(EDITS) == {signing.MANIFEST_FIELD.get(f, f) for f in signing.SIGNED_FIELDS} - {"wasm_hash"}
    with pytest.raises(AspenError) as err:
        check({**signed(BASE), **EDITS[field]})
    assert err.value.code == "SIGNATURE_INVALID"
    assert err.value.message.startswith(field), err.value.message


def test_a_changed_binary_is_named_first() -> None:
    with pytest.raises(AspenError) as err:
        check({**signed(BASE), "kv_prefixes": ["mitm/"]}, wasm=WASM + b"\x00")
    assert err.value.code == "SIGNATURE_INVALID" and err.value.message.startswith("wasm_hash")
    assert "changed after signing" in err.value.message


def test_a_forged_signed_copy_does_not_verify() -> None:
    # Editing the copy of the signed fields along with the manifest breaks the signature itself.
    good = signed(BASE)
    forged = {
        **good,
        "kv_prefixes": ["mitm/"],
        "signature": {
            **good["signature"],
            "signed": {**good["signature"]["signed"], "kv_prefixes": ["mitm/"]},
        },
    }
    with pytest.raises(AspenError) as err:
        check(forged)
    assert err.value.code == "SIGNATURE_INVALID" and "does not verify" in err.value.message


def test_an_old_wasm_only_signature_is_refused() -> None:
    old = {
        "algorithm": "ed25519",
        "public_key": bytes(KEY.verify_key).hex(),
        "wasm_hash": signing.wasm_digest(WASM),
        "signature": KEY.sign(bytes.fromhex(signing.wasm_digest(WASM))).signature.hex(),
    }
    with pytest.raises(AspenError) as err:
        check({**BASE, "signature": old})
    assert err.value.code == "SIGNATURE_INVALID" and signing.FORMAT in err.value.message


def test_missing_and_untrusted() -> None:
    with pytest.raises(AspenError) as err:
        check(BASE)
    assert err.value.code == "SIGNATURE_MISSING"
    with pytest.raises(AspenError) as err:
        check(signed(BASE), trusted={"ab" * 32: "other"})
    assert err.value.code == "SIGNATURE_UNTRUSTED"


def test_the_canonical_form_is_the_documented_bytes() -> None:
    """docs/PLUGIN_DEVELOPMENT.md shows these bytes: other tools must produce them exactly."""
    fields = signing.canonical_fields(
        Manifest.from_json(
            {"name": "echo", "version": "0.1.0", "handles": ["Ping"], "permissions": {"kv_read": True}}
        ),
        "ab" * 32,
    )
    # The version-1 permissions, each named; ABI v3's only when granted: the bytes did not change.
    perms = ",".join(
        f'"{p}":{"true" if p == "kv_read" else "false"}'
        for p in sorted(PERMISSION_NAMES)
        if p not in signing.ADDED_PERMISSIONS
    )
    assert (
        signing.canonical_bytes(fields)
        == (
            '{"execution_timeout_ms":30000,"format":"aspen-manifest-v1","fuel_limit":500000000,"handles":["Ping"],'
            '"kv_prefixes":[],"memory_limit":134217728,"min_api_version":1,"name":"echo",'
            f'"permissions":{{{perms}}},"priority":950,"version":"0.1.0","wasm_hash":"{"ab" * 32}"}}'
        ).encode()
    )
    assert signing.canonical_bytes({"name": "é"}) == '{"name":"é"}'.encode()


def test_a_v3_permission_is_signed_when_granted() -> None:
    base = {"name": "echo", "version": "0.1.0", "handles": ["Ping"], "permissions": {"kv_read": True}}
    granted = {**base, "permissions": {"kv_read": True, "crypto": True}}
    plain = signing.canonical_fields(Manifest.from_json(base), "ab" * 32)["permissions"]
    more = signing.canonical_fields(Manifest.from_json(granted), "ab" * 32)["permissions"]
    assert "crypto" not in plain and more["crypto"] is True
    key = nacl.signing.SigningKey.generate()
    wasm = b"\0asm\1\0\0\0"
    sig = signing.sign(Manifest.from_json(base), wasm, key)
    # Adding the grant to a manifest signed without it breaks the signature, naming it.
    with pytest.raises(AspenError, match="crypto signed False, now True"):
        signing.verify(Manifest.from_json({**granted, "signature": sig}), signing.wasm_digest(wasm))
