"""The vetted primitives behind ABI version 3's crypto host functions (docs/HOST_ABI.md).

Nothing here is hand-rolled: XChaCha20-Poly1305 and Ed25519 are libsodium's (PyNaCl's build;
XChaCha20-Poly1305 through its function addresses from sandbox/_guestcall.c, which holds the
GIL where cffi gave it up on every call: see xchacha_seal there),
AES-256-GCM, HMAC-SHA256 and HKDF-SHA256 are OpenSSL's (`cryptography`). Each function checks
its sizes and raises CryptoError with an explicit code; tests/sandbox/test_crypto.py runs the
published vectors (RFC 5869, RFC 4231, RFC 8032, the XChaCha20-Poly1305 draft, AES-GCM)
through these functions and through real wasm.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

import nacl._sodium
import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sandbox import _guestcall
from sandbox.errors import SandboxCode

XCHACHA = "xchacha20-poly1305"
AESGCM256 = "aes256-gcm"
KEY_BYTES = 32
TAG_BYTES = 16
NONCE_BYTES = {XCHACHA: 24, AESGCM256: 12}
HKDF_MAX_BYTES = 255 * 32  # RFC 5869: L <= 255 * HashLen
ED25519_SEED_BYTES = 32
ED25519_PUBLIC_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
FORGED = "ciphertext failed authentication"  # one message for every failed open: no oracle


def _sodium_address(name: str) -> int:
    ffi, lib = nacl._sodium.ffi, nacl._sodium.lib
    return int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))


# Imported after nacl.bindings, which initialized libsodium (sodium_init).
XCHACHA_ENCRYPT_ADDRESS = _sodium_address("crypto_aead_xchacha20poly1305_ietf_encrypt")
XCHACHA_DECRYPT_ADDRESS = _sodium_address("crypto_aead_xchacha20poly1305_ietf_decrypt")


@dataclass(frozen=True, slots=True)
class CryptoError(Exception):
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise CryptoError(SandboxCode.INVALID_ARGUMENT, message)


def _alg(alg: str, key: bytes) -> int:
    # Messages are built only on failure: formatted eagerly they were a microsecond of every
    # AEAD call (benchmarks/README.md, "Measurements behind the code").
    size = NONCE_BYTES.get(alg)
    if size is None:
        raise CryptoError(
            SandboxCode.INVALID_ARGUMENT, f"alg must be {XCHACHA!r} or {AESGCM256!r}, not {alg!r}"
        )
    if len(key) != KEY_BYTES:
        raise CryptoError(SandboxCode.INVALID_ARGUMENT, f"an {alg} key is {KEY_BYTES} bytes, not {len(key)}")
    return size


def aead_seal(alg: str, key: bytes, plaintext: bytes, aad: bytes = b"", nonce: bytes | None = None) -> bytes:
    """nonce || ciphertext || tag. Without `nonce`, a random one (24 bytes for XChaCha20, so
    random nonces never collide in practice; 12 for AES-GCM: at most 2^32 messages a key)."""
    size = _alg(alg, key)
    if nonce is not None and len(nonce) != size:
        raise CryptoError(SandboxCode.INVALID_ARGUMENT, f"an {alg} nonce is {size} bytes, not {len(nonce)}")
    if alg == XCHACHA:  # a random nonce from the kernel's CSPRNG, as os.urandom's
        return _guestcall.xchacha_seal(XCHACHA_ENCRYPT_ADDRESS, key, plaintext, aad, nonce)
    if nonce is None:
        nonce = os.urandom(size)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(alg: str, key: bytes, sealed: bytes, aad: bytes = b"") -> bytes:
    """The plaintext of `aead_seal`'s output; DECRYPT_FAILED for any forgery, truncation,
    wrong key or wrong aad (one error, no oracle)."""
    size = _alg(alg, key)
    if len(sealed) < size + TAG_BYTES:
        raise CryptoError(SandboxCode.DECRYPT_FAILED, "ciphertext is shorter than a nonce and a tag")
    if alg == XCHACHA:
        plaintext = _guestcall.xchacha_open(XCHACHA_DECRYPT_ADDRESS, key, sealed, aad)
        if plaintext is None:
            raise CryptoError(SandboxCode.DECRYPT_FAILED, FORGED)
        return plaintext
    try:
        return AESGCM(key).decrypt(sealed[:size], sealed[size:], aad)
    except InvalidTag:
        raise CryptoError(SandboxCode.DECRYPT_FAILED, FORGED) from None


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf_sha256(ikm: bytes, length: int, salt: bytes = b"", info: bytes = b"") -> bytes:
    _need(0 < length <= HKDF_MAX_BYTES, f"length must be from 1 to {HKDF_MAX_BYTES}")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)


def _signing_key(seed: bytes) -> nacl.signing.SigningKey:
    _need(len(seed) == ED25519_SEED_BYTES, f"an Ed25519 seed is {ED25519_SEED_BYTES} bytes, not {len(seed)}")
    return nacl.signing.SigningKey(seed)


def ed25519_public_key(seed: bytes) -> bytes:
    return bytes(_signing_key(seed).verify_key)


def ed25519_sign(seed: bytes, data: bytes) -> bytes:
    return _signing_key(seed).sign(data).signature


def ed25519_verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    _need(len(public_key) == ED25519_PUBLIC_BYTES, f"an Ed25519 public key is {ED25519_PUBLIC_BYTES} bytes")
    _need(
        len(signature) == ED25519_SIGNATURE_BYTES, f"an Ed25519 signature is {ED25519_SIGNATURE_BYTES} bytes"
    )
    try:
        nacl.signing.VerifyKey(public_key).verify(data, signature)
        return True
    except nacl.exceptions.BadSignatureError:
        return False
    except nacl.exceptions.CryptoError:  # a public key that is not a curve point
        raise CryptoError(SandboxCode.INVALID_ARGUMENT, "not a valid Ed25519 public key") from None


# -- the barrier's envelope ------------------------------------------------------------------

BARRIER_VERSION = 1
BARRIER_AAD = b"aspen-barrier-v1\x00"


def barrier_subkey(data_key: bytes, plugin: str) -> bytes:
    """Each plugin's own key under the cluster's data key: one plugin cannot open another's."""
    return hkdf_sha256(data_key, KEY_BYTES, info=b"aspen barrier plugin\x00" + plugin.encode())


def barrier_seal(subkey: bytes, aad: bytes, plaintext: bytes) -> bytes:
    return bytes([BARRIER_VERSION]) + aead_seal(XCHACHA, subkey, plaintext, BARRIER_AAD + aad)


def barrier_open(subkey: bytes, aad: bytes, sealed: bytes) -> bytes:
    if not sealed or sealed[0] != BARRIER_VERSION:
        raise CryptoError(SandboxCode.DECRYPT_FAILED, "not a barrier envelope of version 1")
    return aead_open(XCHACHA, subkey, sealed[1:], BARRIER_AAD + aad)
