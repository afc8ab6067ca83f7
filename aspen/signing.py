"""Plugin signatures: Ed25519 over the canonical form of the whole manifest.

One implementation for `cargo aspen-plugin sign/verify` and for the node's
`plugin install --verify-signature` (and the `require_signatures` setting).

A signature covering only the wasm let anyone with a signed module install it with every
permission and any kv_prefixes. So what is signed is every manifest field that changes what
the plugin may do or how it is run (SIGNED_FIELDS), plus the wasm's BLAKE3 hash, in a canonical
form other tools can produce byte for byte (docs/PLUGIN_DEVELOPMENT.md, "The canonical form"):

    UTF-8 JSON, keys sorted, no whitespace, non-ASCII characters written as themselves:
    {"execution_timeout_ms":30000,"format":"aspen-manifest-v1","fuel_limit":500000000,
     "handles":["Ping"],"kv_prefixes":[],"memory_limit":134217728,"min_api_version":1,
     "name":"echo","permissions":{"blob_read":false,...every permission...},"priority":950,
     "version":"0.1.0","wasm_hash":"<64 hex>"}

Defaults are written out (an absent priority is 950) and every permission is listed, so two
manifests that mean the same have one canonical form. The timeout is whole milliseconds (JSON
tools disagree on how to print 30.0). The signature object keeps a copy of what was signed, so
an edit after signing is reported by the field it changed:

    {"algorithm": "ed25519", "format": "aspen-manifest-v1", "public_key": HEX,
     "signature": HEX, "signed": {...the canonical fields...}}
"""

from __future__ import annotations

import json
from typing import Any

import blake3
import nacl.exceptions
import nacl.signing

from aspen.manifest import Manifest
from sandbox.permissions import PERMISSION_NAMES
from wire.errors import AspenError

ALGORITHM = "ed25519"
FORMAT = "aspen-manifest-v1"
# The manifest fields a signature covers, in the names of the canonical form; description,
# author and enabled are not covered (they change nothing the plugin may do).
SIGNED_FIELDS = (
    "wasm_hash",
    "name",
    "version",
    "handles",
    "priority",
    "permissions",
    "kv_prefixes",
    "fuel_limit",
    "memory_limit",
    "execution_timeout_ms",
    "min_api_version",
)
# The manifest field each canonical field comes from, where the names differ.
MANIFEST_FIELD = {"execution_timeout_ms": "execution_timeout_secs"}
# Permissions newer than the manifest format (ABI v3): in the signed form only when granted.
ADDED_PERMISSIONS = frozenset({"crypto", "barrier"})


def wasm_digest(wasm: bytes) -> str:
    return blake3.blake3(wasm).hexdigest()


def canonical_fields(manifest: Manifest, wasm_hash: str) -> dict[str, Any]:
    """What a signature covers, for this manifest and the wasm hashing to `wasm_hash`."""
    return {
        "format": FORMAT,
        "name": manifest.name,
        "version": manifest.version,
        "handles": list(manifest.handles),
        "priority": manifest.priority,
        # ABI v3's permissions count only when granted, so signatures made before they existed
        # still verify (a grant added or removed still changes the signed bytes).
        "permissions": {p: bool(manifest.permissions.get(p, False)) for p in sorted(PERMISSION_NAMES)
                        if p not in ADDED_PERMISSIONS or manifest.permissions.get(p)},
        "kv_prefixes": list(manifest.kv_prefixes),
        "fuel_limit": manifest.fuel_limit,
        "memory_limit": manifest.memory_limit,
        "execution_timeout_ms": round(manifest.execution_timeout_secs * 1000),
        "min_api_version": manifest.min_api_version,
        "wasm_hash": wasm_hash,
    }


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    """The signed message: canonical JSON of `fields` (sorted keys, no whitespace, UTF-8)."""
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sign(manifest: Manifest, wasm: bytes, key: nacl.signing.SigningKey) -> dict[str, Any]:
    fields = canonical_fields(manifest, wasm_digest(wasm))
    return {
        "algorithm": ALGORITHM,
        "format": FORMAT,
        "public_key": bytes(key.verify_key).hex(),
        "signature": key.sign(canonical_bytes(fields)).signature.hex(),
        "signed": fields,
    }


def _invalid(message: str) -> AspenError:
    return AspenError("SIGNATURE_INVALID", message)


def _changed(field: str, signed: Any, now: Any) -> AspenError:
    name = MANIFEST_FIELD.get(field, field)
    if field == "wasm_hash":
        return _invalid(f"wasm_hash: the wasm hashes to {now} but the signature covers {signed}: "
                        "the binary was changed after signing")
    if field == "permissions":
        signed = signed if isinstance(signed, dict) else {}
        diff = sorted(p for p in set(now) | set(signed) if now.get(p, False) != signed.get(p, False))
        changes = (f"{p} signed {signed.get(p, False)}, now {now.get(p, False)}" for p in diff)
        return _invalid("permissions changed after signing: " + ", ".join(changes))
    return _invalid(f"{name} changed after signing: signed {signed!r}, now {now!r}")


def verify(manifest: Manifest, wasm_hash: str, trusted: dict[str, str] | None = None) -> str:
    """Check the manifest's signature: that it verifies, that it covers this manifest as it is
    now (every signed field) and the wasm hashing to `wasm_hash`, and that its key is trusted
    (when `trusted` is given).

    Returns the signer's public key hex; raises AspenError SIGNATURE_MISSING / SIGNATURE_INVALID
    (naming the field that changed) / SIGNATURE_UNTRUSTED.
    """
    signature = manifest.signature
    if not isinstance(signature, dict) or not signature:
        raise AspenError("SIGNATURE_MISSING", "the plugin is not signed (no signature in its manifest)")
    if signature.get("algorithm") != ALGORITHM:
        raise _invalid(f"signature algorithm must be {ALGORITHM}")
    signed = signature.get("signed")
    if signature.get("format") != FORMAT or not isinstance(signed, dict) or signed.get("format") != FORMAT:
        raise _invalid(
            f"the signature is not of format {FORMAT} (a signature over the wasm alone covers "
            "nothing else of the manifest): sign again with `cargo aspen-plugin sign`"
        )
    try:
        key_hex = str(signature["public_key"])
        message = canonical_bytes(signed)
        nacl.signing.VerifyKey(bytes.fromhex(key_hex)).verify(
            message, bytes.fromhex(str(signature["signature"]))
        )
    except (KeyError, TypeError, ValueError, nacl.exceptions.CryptoError):
        raise _invalid("the signature does not verify against its public key") from None
    # The copy is authentic: now every field of the manifest must equal it.
    now = canonical_fields(manifest, wasm_hash)
    for field in SIGNED_FIELDS:  # the wasm first: a changed binary is the news
        if signed.get(field) != now[field]:
            raise _changed(field, signed.get(field), now[field])
    if set(signed) != set(now):
        raise _invalid(f"the signed fields are {sorted(signed)}, not those of {FORMAT}")
    if trusted is not None and key_hex not in trusted:
        raise AspenError(
            "SIGNATURE_UNTRUSTED", f"signed by {key_hex[:16]}..., which is not a trusted author key"
        )
    return key_hex
