"""ABI version 3's host functions: vetted crypto (`crypto` permission) and the barrier
(`barrier` permission). HostFunctions (sandbox/hostfuncs.py) inherits these methods.

Every function checks its permission first, then bounds its input (CRYPTO_MAX_BYTES a call),
charges the running call's fuel for the bytes it processes (like sha256_digest), and answers a
tagged result: never a trap for bad input. The primitives are in sandbox/crypto.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sandbox import _guestcall, abi, crypto, limits
from sandbox.decode import DecodeRefused, unpack_guest
from sandbox.errors import HostError, SandboxCode

if TYPE_CHECKING:
    from sandbox.host_interface import Host
    from sandbox.permissions import Permissions, PluginConfig


def _err(code: str, message: str) -> bytes:
    return abi.error(code, message)


class CryptoHostFunctions:
    """Mixed into HostFunctions, which provides these attributes and helpers."""

    config: PluginConfig
    host: Host
    perms: Permissions
    _read: Callable[[int, int, int], bytes | None]
    _charge_fuel: Callable[[int], bool]
    _denied: Callable[[str], bytes]
    _subkey: tuple[bytes, bytes] | None  # (the data key it was derived from, the subkey)

    # -- helpers ---------------------------------------------------------------------------

    def _crypto_bytes(self, ptr: int, length: int, what: str) -> bytes:
        data = self._read(ptr, length, limits.CRYPTO_MAX_BYTES)
        if data is None:
            raise crypto.CryptoError(
                str(SandboxCode.LIMIT_EXCEEDED), f"{what} is over {limits.CRYPTO_MAX_BYTES} bytes"
            )
        return data

    def _crypto_args(self, ptr: int, length: int) -> dict[str, Any]:
        raw = self._crypto_bytes(ptr, length, "arguments")
        try:
            args = unpack_guest(raw)
        except (DecodeRefused, ValueError, TypeError):
            args = None
        if not isinstance(args, dict):
            raise crypto.CryptoError(SandboxCode.INVALID_ARGUMENT, "arguments must be one msgpack map")
        return args

    def _pay(self, nbytes: int) -> None:
        if not self._charge_fuel(limits.CRYPTO_FUEL_BASE + limits.CRYPTO_FUEL_PER_BYTE * nbytes):
            raise crypto.CryptoError(
                str(SandboxCode.LIMIT_EXCEEDED), "not enough fuel left for this much crypto"
            )

    def _crypto(self, permission: str, fn: Callable[[], Any]) -> bytes:
        if not getattr(self.perms, permission):
            return self._denied(permission)
        try:
            return abi.ok(fn())
        except crypto.CryptoError as exc:
            return _err(exc.code, exc.message)
        except HostError as exc:
            return _err(exc.code, exc.message)

    # -- crypto (permission `crypto`) ------------------------------------------------------

    # The AEADs and the barrier serve every transit and secrets request: written out, without
    # _crypto's closure and extra call (half a microsecond of a ~20 us request). For
    # XChaCha20-Poly1305 with plain arguments the trampoline answers the AEADs itself
    # (sandbox/_guestcall.c, aead_fast; AEAD_IN_C below): a change here must be made there too,
    # and tests/sandbox/test_aead_in_c.py holds the two to the same answers.

    def crypto_aead_seal(self, ap: int, al: int) -> bytes:
        if not self.perms.crypto:
            return self._denied("crypto")
        try:
            args = self._crypto_args(ap, al)
            alg, key, plaintext = _s(args, "alg"), _b(args, "key"), _b(args, "plaintext")
            aad, nonce = _b(args, "aad", b""), _b_opt(args, "nonce")
            self._pay(len(plaintext) + len(aad))
            return abi.ok(crypto.aead_seal(alg, key, plaintext, aad, nonce))
        except (crypto.CryptoError, HostError) as exc:
            return _err(exc.code, exc.message)

    def crypto_aead_open(self, ap: int, al: int) -> bytes:
        if not self.perms.crypto:
            return self._denied("crypto")
        try:
            args = self._crypto_args(ap, al)
            alg, key, sealed = _s(args, "alg"), _b(args, "key"), _b(args, "sealed")
            aad = _b(args, "aad", b"")
            self._pay(len(sealed) + len(aad))
            return abi.ok(crypto.aead_open(alg, key, sealed, aad))
        except (crypto.CryptoError, HostError) as exc:
            return _err(exc.code, exc.message)

    def crypto_hmac_sha256(self, kp: int, kl: int, dp: int, dl: int) -> bytes:
        def run() -> bytes:
            key, data = self._crypto_bytes(kp, kl, "key"), self._crypto_bytes(dp, dl, "data")
            self._pay(len(key) + len(data))
            return crypto.hmac_sha256(key, data)

        return self._crypto("crypto", run)

    def crypto_hkdf_sha256(self, ap: int, al: int) -> bytes:
        def run() -> bytes:
            args = self._crypto_args(ap, al)
            ikm, salt, info = _b(args, "ikm"), _b(args, "salt", b""), _b(args, "info", b"")
            length = args.get("length")
            if type(length) is not int:
                raise crypto.CryptoError(SandboxCode.INVALID_ARGUMENT, "length must be an integer")
            self._pay(len(ikm) + len(salt) + len(info) + max(0, length))
            return crypto.hkdf_sha256(ikm, length, salt, info)

        return self._crypto("crypto", run)

    def crypto_ed25519_public_key(self, sp: int, sl: int) -> bytes:
        def run() -> bytes:
            seed = self._crypto_bytes(sp, sl, "seed")
            self._pay(0)
            return crypto.ed25519_public_key(seed)

        return self._crypto("crypto", run)

    def crypto_ed25519_sign(self, sp: int, sl: int, dp: int, dl: int) -> bytes:
        def run() -> bytes:
            seed, data = self._crypto_bytes(sp, sl, "seed"), self._crypto_bytes(dp, dl, "data")
            self._pay(len(data))
            return crypto.ed25519_sign(seed, data)

        return self._crypto("crypto", run)

    def crypto_ed25519_verify(self, kp: int, kl: int, dp: int, dl: int, sp: int, sl: int) -> bytes:
        def run() -> bool:
            key, data = self._crypto_bytes(kp, kl, "public key"), self._crypto_bytes(dp, dl, "data")
            sig = self._crypto_bytes(sp, sl, "signature")
            self._pay(len(data))
            return crypto.ed25519_verify(key, data, sig)

        return self._crypto("crypto", run)

    def crypto_random_bytes(self, count: int) -> bytes:
        def run() -> bytes:
            if not 0 < count <= limits.RANDOM_MAX_BYTES:
                raise crypto.CryptoError(
                    str(SandboxCode.LIMIT_EXCEEDED), f"count must be from 1 to {limits.RANDOM_MAX_BYTES}"
                )
            return os.urandom(count)

        return self._crypto("crypto", run)

    # -- the barrier (permission `barrier`) ------------------------------------------------

    def _barrier_key(self) -> bytes:
        # The plugin's subkey, derived again only when the node's data key changes (an unseal
        # after a seal): HKDF on every call was a tenth of a transit request.
        data_key = self.host.barrier_key()
        cached = getattr(self, "_subkey", None)
        if cached is not None and cached[0] is data_key:
            return cached[1]
        subkey = crypto.barrier_subkey(data_key, self.config.name)
        self._subkey = (data_key, subkey)
        return subkey

    def barrier_seal(self, ap: int, al: int, pp: int, pl: int) -> bytes:
        if not self.perms.barrier:
            return self._denied("barrier")
        try:
            aad, plaintext = self._crypto_bytes(ap, al, "aad"), self._crypto_bytes(pp, pl, "plaintext")
            self._pay(len(aad) + len(plaintext))
            return abi.ok(crypto.barrier_seal(self._barrier_key(), aad, plaintext))
        except (crypto.CryptoError, HostError) as exc:
            return _err(exc.code, exc.message)

    def barrier_open(self, ap: int, al: int, cp: int, cl: int) -> bytes:
        if not self.perms.barrier:
            return self._denied("barrier")
        try:
            aad, sealed = self._crypto_bytes(ap, al, "aad"), self._crypto_bytes(cp, cl, "ciphertext")
            self._pay(len(aad) + len(sealed))
            return abi.ok(crypto.barrier_open(self._barrier_key(), aad, sealed))
        except (crypto.CryptoError, HostError) as exc:
            return _err(exc.code, exc.message)

    def barrier_status(self) -> bytes:
        if not self.perms.barrier:
            return self._denied("barrier")
        try:
            self.host.barrier_key()
        except HostError as exc:
            return _SEALED if exc.code == SandboxCode.SEALED else _err(exc.code, exc.message)
        return _UNSEALED


_SEALED, _UNSEALED = abi.ok(True), abi.ok(False)

# The host functions sandbox/_guestcall.c answers itself for XChaCha20-Poly1305 with plain,
# well-formed arguments (aead_fast there): the same result and fuel as the methods above, ~3 us
# less a call. Everything else still reaches the methods. op: 1 seals, 2 opens.
AEAD_IN_C = {
    "crypto_aead_seal": (1, crypto.XCHACHA_ENCRYPT_ADDRESS),
    "crypto_aead_open": (2, crypto.XCHACHA_DECRYPT_ADDRESS),
}


def answer_aead_in_c(name: str, host_address: int) -> None:
    """Have host function `name` (its define_host address, before it is bound) answer in C
    what it can. Only for a plugin granted `crypto`: the C path checks no permission."""
    op, cipher = AEAD_IN_C[name]
    _guestcall.serve_aead(
        host_address, op, cipher, limits.CRYPTO_MAX_BYTES, limits.CRYPTO_FUEL_BASE,
        limits.CRYPTO_FUEL_PER_BYTE, _err(SandboxCode.DECRYPT_FAILED, crypto.FORGED),
    )


def _b(args: dict[str, Any], name: str, default: bytes | None = None) -> bytes:
    value = args.get(name, default)
    if type(value) is not bytes:
        raise crypto.CryptoError(SandboxCode.INVALID_ARGUMENT, f"{name} must be msgpack bin")
    return value


def _b_opt(args: dict[str, Any], name: str) -> bytes | None:
    return None if args.get(name) is None else _b(args, name)


def _s(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if type(value) is not str:
        raise crypto.CryptoError(SandboxCode.INVALID_ARGUMENT, f"{name} must be a string")
    return value
