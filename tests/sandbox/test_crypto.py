"""ABI version 3's crypto and barrier host functions: the published vectors through the Python
primitives (sandbox/crypto.py) and through real wasm (WAT guests), bounds, bad input, fuel and
permission denial."""

from __future__ import annotations

import os

import msgpack
import nacl.bindings
import pytest

from sandbox import InMemoryHost, Permissions, PluginConfig, Runtime, SandboxCode, abi, crypto, limits
from tests.sandbox.guests import call_guest, decode_result

H = bytes.fromhex

# RFC 5869 appendix A: test cases 1 (basic), 2 (long inputs) and 3 (no salt, no info).
HKDF = [
    (H("0b" * 22), H("000102030405060708090a0b0c"), H("f0f1f2f3f4f5f6f7f8f9"), 42,
     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
    (bytes(range(0x00, 0x50)), bytes(range(0x60, 0xb0)), bytes(range(0xb0, 0x100)), 82,
     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09"
     "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"),
    (H("0b" * 22), b"", b"", 42,
     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
]
# RFC 4231: test cases 1, 2 and 6 (a key longer than the block).
HMAC = [
    (H("0b" * 20), b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        H("aa" * 131),
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
]
# RFC 8032 section 7.1: TEST 1 (empty message), TEST 2 (one byte), TEST 3 (two bytes).
ED25519 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]
# draft-irtf-cfrg-xchacha-03 appendix A.3.1.
XCHACHA = (
    H("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"),
    H("404142434445464748494a4b4c4d4e4f5051525354555657"),
    H("50515253c0c1c2c3c4c5c6c7"),
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    b"sunscreen would be it.",
    H(
        "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216"
        "cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13"
        "b52e"
    )
    + H("c0875924c1c7987947deafd8780acf49"),
)
# The GCM specification's (McGrew and Viega) test cases 13 and 14 (AES-256, zero key and IV), and
# test case 16 (AES-256 with AAD), as NIST's GCM validation and Wycheproof also carry them.
AESGCM = [
    (bytes(32), bytes(12), b"", b"", H("530f8afbc74536b9a963b4f1c4cb738b")),
    (
        bytes(32),
        bytes(12),
        b"",
        bytes(16),
        H("cea7403d4d606b6e074ec5d3baf39d18") + H("d0d1c8a799996bf0265b98b5d48ab919"),
    ),
    (
        H("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
        H("cafebabefacedbaddecaf888"),
        H("feedfacedeadbeeffeedfacedeadbeefabaddad2"),
        H(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657"
            "ba637b39"
        ),
        H(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0a"
            "bcc9f662"
        )
        + H("76fc6ece0f4e1768cddf8853bb2d551b"),
    ),
]

CRYPTO = Permissions(crypto=True)


def call(
    runtime: Runtime,
    host: InMemoryHost,
    fn: str,
    args: list,
    perms: Permissions = CRYPTO,
    name: str = "t",
    fuel_limit: int = limits.FUEL_DEFAULT,
) -> list:
    plugin = runtime.load(call_guest(fn, args), PluginConfig(name, perms, fuel_limit=fuel_limit), host)
    plugin.init()
    response = plugin.handle_request({"type": "Probe"})
    if response.get("type") == "Error":
        return ["CALL", response["code"]]
    return decode_result(response)


def pk(value: dict) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


# -- the published vectors, in Python and in wasm ------------------------------------------------


@pytest.mark.parametrize(
    ("ikm", "salt", "info", "length", "okm"), HKDF, ids=["rfc5869-1", "rfc5869-2", "rfc5869-3"]
)
def test_hkdf_rfc5869(
    runtime: Runtime, host: InMemoryHost, ikm: bytes, salt: bytes, info: bytes, length: int, okm: str
) -> None:
    assert crypto.hkdf_sha256(ikm, length, salt, info) == H(okm)
    args = pk({"ikm": ikm, "salt": salt, "info": info, "length": length})
    assert call(runtime, host, "crypto_hkdf_sha256", [args]) == [abi.TAG_OK, H(okm)]


@pytest.mark.parametrize(("key", "data", "mac"), HMAC, ids=["rfc4231-1", "rfc4231-2", "rfc4231-6"])
def test_hmac_rfc4231(runtime: Runtime, host: InMemoryHost, key: bytes, data: bytes, mac: str) -> None:
    assert crypto.hmac_sha256(key, data) == H(mac)
    assert call(runtime, host, "crypto_hmac_sha256", [key, data]) == [abi.TAG_OK, H(mac)]


@pytest.mark.parametrize(
    ("seed", "public", "message", "signature"), ED25519, ids=["rfc8032-1", "rfc8032-2", "rfc8032-3"]
)
def test_ed25519_rfc8032(
    runtime: Runtime, host: InMemoryHost, seed: str, public: str, message: str, signature: str
) -> None:
    assert crypto.ed25519_public_key(H(seed)) == H(public)
    assert crypto.ed25519_sign(H(seed), H(message)) == H(signature)
    assert crypto.ed25519_verify(H(public), H(message), H(signature)) is True
    assert call(runtime, host, "crypto_ed25519_public_key", [H(seed)]) == [abi.TAG_OK, H(public)]
    assert call(runtime, host, "crypto_ed25519_sign", [H(seed), H(message)]) == [abi.TAG_OK, H(signature)]
    assert call(runtime, host, "crypto_ed25519_verify", [H(public), H(message), H(signature)]) == [
        abi.TAG_OK,
        True,
    ]
    forged = bytearray(H(signature))
    forged[0] ^= 1
    assert call(runtime, host, "crypto_ed25519_verify", [H(public), H(message), bytes(forged)]) == [
        abi.TAG_OK,
        False,
    ]


def test_xchacha20_poly1305_draft_vector(runtime: Runtime, host: InMemoryHost) -> None:
    key, nonce, aad, plaintext, body = XCHACHA
    sealed = crypto.aead_seal(crypto.XCHACHA, key, plaintext, aad, nonce)
    assert sealed == nonce + body
    assert crypto.aead_open(crypto.XCHACHA, key, sealed, aad) == plaintext
    args = pk({"alg": crypto.XCHACHA, "key": key, "nonce": nonce, "aad": aad, "plaintext": plaintext})
    assert call(runtime, host, "crypto_aead_seal", [args]) == [abi.TAG_OK, nonce + body]
    args = pk({"alg": crypto.XCHACHA, "key": key, "aad": aad, "sealed": nonce + body})
    assert call(runtime, host, "crypto_aead_open", [args]) == [abi.TAG_OK, plaintext]


@pytest.mark.parametrize("size", [0, 1, 1024, 64 * 1024 + 1, limits.CRYPTO_MAX_BYTES])
def test_xchacha20_poly1305_agrees_with_pynacl(size: int) -> None:
    """sandbox/_guestcall.c calls libsodium through its function addresses (holding the GIL, or
    not past 64 KiB): the same bytes as PyNaCl's own binding, both ways, at every size."""
    key, aad, plaintext = os.urandom(32), os.urandom(size % 97), os.urandom(size)
    sealed = crypto.aead_seal(crypto.XCHACHA, key, plaintext, aad)
    nonce, body = sealed[:24], sealed[24:]
    assert nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(body, aad, nonce, key) == plaintext
    theirs = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)
    assert crypto.aead_seal(crypto.XCHACHA, key, plaintext, aad, nonce) == nonce + theirs
    assert crypto.aead_open(crypto.XCHACHA, key, nonce + theirs, aad) == plaintext
    assert crypto.aead_seal(crypto.XCHACHA, key, plaintext, aad)[:24] != nonce  # a fresh random nonce


def test_xchacha20_poly1305_refuses_bad_sizes() -> None:
    for key, nonce in [(bytes(31), None), (bytes(33), None), (bytes(32), bytes(23)), (bytes(32), bytes(25))]:
        with pytest.raises(crypto.CryptoError) as info:
            crypto.aead_seal(crypto.XCHACHA, key, b"x", b"", nonce)
        assert info.value.code == SandboxCode.INVALID_ARGUMENT
    for sealed in [b"", bytes(39)]:
        with pytest.raises(crypto.CryptoError) as info:
            crypto.aead_open(crypto.XCHACHA, bytes(32), sealed)
        assert info.value.code == SandboxCode.DECRYPT_FAILED


@pytest.mark.parametrize(
    ("key", "nonce", "aad", "plaintext", "body"), AESGCM, ids=["gcm-13", "gcm-14", "gcm-16"]
)
def test_aes256_gcm_vectors(
    runtime: Runtime, host: InMemoryHost, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes, body: bytes
) -> None:
    assert crypto.aead_seal(crypto.AESGCM256, key, plaintext, aad, nonce) == nonce + body
    assert crypto.aead_open(crypto.AESGCM256, key, nonce + body, aad) == plaintext
    args = pk({"alg": crypto.AESGCM256, "key": key, "nonce": nonce, "aad": aad, "plaintext": plaintext})
    assert call(runtime, host, "crypto_aead_seal", [args]) == [abi.TAG_OK, nonce + body]
    args = pk({"alg": crypto.AESGCM256, "key": key, "aad": aad, "sealed": nonce + body})
    assert call(runtime, host, "crypto_aead_open", [args]) == [abi.TAG_OK, plaintext]


# -- AEAD misuse: every forgery is one error -----------------------------------------------------


@pytest.mark.parametrize("alg", [crypto.XCHACHA, crypto.AESGCM256])
def test_aead_refuses_forgeries(runtime: Runtime, host: InMemoryHost, alg: str) -> None:
    key = bytes(range(32))
    sealed = crypto.aead_seal(alg, key, b"attack at dawn", b"ctx")  # a random nonce
    assert sealed != crypto.aead_seal(alg, key, b"attack at dawn", b"ctx")
    flipped = bytearray(sealed)
    flipped[-1] ^= 0x80
    for bad, aad, k in [
        (bytes(flipped), b"ctx", key),
        (sealed[:-1], b"ctx", key),
        (sealed[:5], b"ctx", key),
        (sealed, b"other", key),
        (sealed, b"ctx", bytes(32)),
    ]:
        with pytest.raises(crypto.CryptoError) as info:
            crypto.aead_open(alg, k, bad, aad)
        assert info.value.code == SandboxCode.DECRYPT_FAILED
        args = pk({"alg": alg, "key": k, "aad": aad, "sealed": bad})
        assert call(runtime, host, "crypto_aead_open", [args])[:2] == [abi.TAG_ERROR, "DECRYPT_FAILED"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"alg": "rot13", "key": bytes(32), "plaintext": b"x"}, "alg must be"),
        ({"alg": crypto.XCHACHA, "key": bytes(31), "plaintext": b"x"}, "32 bytes"),
        (
            {"alg": crypto.AESGCM256, "key": bytes(32), "plaintext": b"x", "nonce": bytes(24)},
            "nonce is 12 bytes",
        ),
        (
            {"alg": crypto.XCHACHA, "key": bytes(32), "plaintext": "text, not bin"},
            "plaintext must be msgpack bin",
        ),
        ({"alg": crypto.XCHACHA, "key": bytes(32)}, "plaintext must be msgpack bin"),
    ],
)
def test_aead_bad_arguments(runtime: Runtime, host: InMemoryHost, args: dict, needle: str) -> None:
    result = call(runtime, host, "crypto_aead_seal", [pk(args)])
    assert result[:2] == [abi.TAG_ERROR, "INVALID_ARGUMENT"] and needle in result[2], result


def test_bad_shapes_and_bounds(runtime: Runtime, host: InMemoryHost) -> None:
    assert call(runtime, host, "crypto_aead_seal", [b"\xc1"])[:2] == [abi.TAG_ERROR, "INVALID_ARGUMENT"]
    assert call(runtime, host, "crypto_aead_seal", [pk([1, 2])])[:2] == [abi.TAG_ERROR, "INVALID_ARGUMENT"]
    # A length past the bound is refused before the pointer is looked at.
    over = call(runtime, host, "crypto_hmac_sha256", [b"k", 0, limits.CRYPTO_MAX_BYTES + 1])
    assert over[:2] == [abi.TAG_ERROR, "LIMIT_EXCEEDED"]
    hkdf = call(runtime, host, "crypto_hkdf_sha256", [pk({"ikm": b"k", "length": crypto.HKDF_MAX_BYTES + 1})])
    assert hkdf[:2] == [abi.TAG_ERROR, "INVALID_ARGUMENT"]
    assert call(runtime, host, "crypto_ed25519_sign", [bytes(31), b"m"])[:2] == [
        abi.TAG_ERROR,
        "INVALID_ARGUMENT",
    ]
    assert call(runtime, host, "crypto_ed25519_verify", [bytes(32), b"m", bytes(63)])[:2] == [
        abi.TAG_ERROR,
        "INVALID_ARGUMENT",
    ]
    assert call(runtime, host, "crypto_random_bytes", [0])[:2] == [abi.TAG_ERROR, "LIMIT_EXCEEDED"]
    assert call(runtime, host, "crypto_random_bytes", [limits.RANDOM_MAX_BYTES + 1])[:2] == [
        abi.TAG_ERROR,
        "LIMIT_EXCEEDED",
    ]
    one, two = (
        call(runtime, host, "crypto_random_bytes", [32]),
        call(runtime, host, "crypto_random_bytes", [32]),
    )
    assert one[0] == two[0] == abi.TAG_OK and len(one[1]) == 32 and one[1] != two[1]


def test_crypto_is_paid_for_in_fuel(runtime: Runtime, host: InMemoryHost) -> None:
    # 1 MiB to MAC with only 500,000 fuel: the charge exceeds it, the call ends FUEL_EXHAUSTED.
    assert call(runtime, host, "crypto_hmac_sha256", [b"k", b"x" * (1 << 20)], fuel_limit=500_000) == [
        "CALL",
        "FUEL_EXHAUSTED",
    ]


# -- permissions -------------------------------------------------------------------------------

V3 = [
    ("crypto_aead_seal", [pk({"alg": crypto.XCHACHA, "key": bytes(32), "plaintext": b"x"})], "crypto"),
    ("crypto_aead_open", [pk({"alg": crypto.XCHACHA, "key": bytes(32), "sealed": bytes(40)})], "crypto"),
    ("crypto_hmac_sha256", [b"k", b"d"], "crypto"),
    ("crypto_hkdf_sha256", [pk({"ikm": b"k", "length": 32})], "crypto"),
    ("crypto_ed25519_public_key", [bytes(32)], "crypto"),
    ("crypto_ed25519_sign", [bytes(32), b"d"], "crypto"),
    ("crypto_ed25519_verify", [bytes(32), b"d", bytes(64)], "crypto"),
    ("crypto_random_bytes", [16], "crypto"),
    ("barrier_seal", [b"aad", b"secret"], "barrier"),
    ("barrier_open", [b"aad", bytes(60)], "barrier"),
    ("barrier_status", [], "barrier"),
]


@pytest.mark.parametrize(("fn", "args", "permission"), V3, ids=[c[0] for c in V3])
def test_denied_without_the_permission(
    runtime: Runtime, host: InMemoryHost, fn: str, args: list, permission: str
) -> None:
    # Every other permission granted is not enough; the one named is.
    others = Permissions(**{p: p != permission for p in Permissions().to_mapping()})
    result = call(runtime, host, fn, args, perms=others)
    assert result[:2] == [abi.TAG_ERROR, "PERMISSION_DENIED"] and permission in result[2]
    result = call(runtime, host, fn, args, perms=Permissions(**{permission: True}))
    assert result[:2] != [abi.TAG_ERROR, "PERMISSION_DENIED"]


# -- the barrier -------------------------------------------------------------------------------

BARRIER = Permissions(barrier=True)


def test_barrier_round_trip_binds_plugin_and_aad(runtime: Runtime, host: InMemoryHost) -> None:
    [tag, sealed] = call(runtime, host, "barrier_seal", [b"kv/app/db", b"hunter2"], perms=BARRIER)
    assert tag == abi.TAG_OK and b"hunter2" not in sealed and sealed[0] == crypto.BARRIER_VERSION
    assert call(runtime, host, "barrier_open", [b"kv/app/db", sealed], perms=BARRIER) == [
        abi.TAG_OK,
        b"hunter2",
    ]
    # Another aad (the value moved to another key), another plugin, a flipped bit: one error.
    assert (
        call(runtime, host, "barrier_open", [b"kv/app/other", sealed], perms=BARRIER)[1] == "DECRYPT_FAILED"
    )
    assert (
        call(runtime, host, "barrier_open", [b"kv/app/db", sealed], perms=BARRIER, name="other")[1]
        == "DECRYPT_FAILED"
    )
    flipped = bytes([sealed[0]]) + bytes([sealed[1] ^ 1]) + sealed[2:]
    assert call(runtime, host, "barrier_open", [b"kv/app/db", flipped], perms=BARRIER)[1] == "DECRYPT_FAILED"
    # The same plugin on a host with the same data key opens it (another node of the cluster).
    twin = InMemoryHost(data_key=host.data_key)
    assert call(runtime, twin, "barrier_open", [b"kv/app/db", sealed], perms=BARRIER) == [
        abi.TAG_OK,
        b"hunter2",
    ]
    assert call(runtime, host, "barrier_status", [], perms=BARRIER) == [abi.TAG_OK, False]


def test_a_sealed_host_answers_sealed(runtime: Runtime) -> None:
    host = InMemoryHost(data_key=None)
    assert call(runtime, host, "barrier_status", [], perms=BARRIER) == [abi.TAG_OK, True]
    for fn, args in [("barrier_seal", [b"a", b"secret"]), ("barrier_open", [b"a", bytes(60)])]:
        result = call(runtime, host, fn, args, perms=BARRIER)
        assert result[:2] == [abi.TAG_ERROR, "SEALED"], result
