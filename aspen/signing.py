"""Plugin signatures: Ed25519 over the 32-byte BLAKE3 digest of the wasm.

One implementation for `cargo aspen-plugin sign/verify` and for the node's
`plugin install --verify-signature`. The signature object lives in plugin.json:

    {"algorithm": "ed25519", "public_key": HEX, "wasm_hash": HEX, "signature": HEX}
"""

from __future__ import annotations

import blake3
import nacl.exceptions
import nacl.signing

from storage.errors import AspenError

ALGORITHM = "ed25519"


def wasm_digest(wasm: bytes) -> str:
    return blake3.blake3(wasm).hexdigest()


def sign(wasm: bytes, key: nacl.signing.SigningKey) -> dict[str, str]:
    digest = wasm_digest(wasm)
    return {
        "algorithm": ALGORITHM,
        "public_key": bytes(key.verify_key).hex(),
        "wasm_hash": digest,
        "signature": key.sign(bytes.fromhex(digest)).signature.hex(),
    }


def verify(signature: object, wasm_hash: str, trusted: dict[str, str] | None = None) -> str:
    """Check a signature object against the wasm's hash (and a set of trusted keys, if given).

    Returns the signer's public key hex; raises AspenError SIGNATURE_MISSING / SIGNATURE_INVALID
    / SIGNATURE_UNTRUSTED saying which.
    """
    if not isinstance(signature, dict) or not signature:
        raise AspenError("SIGNATURE_MISSING", "the plugin is not signed (no signature in its manifest)")
    if signature.get("algorithm") != ALGORITHM:
        raise AspenError("SIGNATURE_INVALID", f"signature algorithm must be {ALGORITHM}")
    if signature.get("wasm_hash") != wasm_hash:
        raise AspenError(
            "SIGNATURE_INVALID",
            f"the wasm hashes to {wasm_hash} but the signature covers {signature.get('wasm_hash')}: the binary was changed",
        )
    try:
        key_hex = str(signature["public_key"])
        nacl.signing.VerifyKey(bytes.fromhex(key_hex)).verify(bytes.fromhex(wasm_hash), bytes.fromhex(str(signature["signature"])))
    except (KeyError, ValueError, nacl.exceptions.CryptoError):
        raise AspenError("SIGNATURE_INVALID", "the signature does not verify against its public key") from None
    if trusted is not None and key_hex not in trusted:
        raise AspenError("SIGNATURE_UNTRUSTED", f"signed by {key_hex[:16]}..., which is not a trusted author key")
    return key_hex
