"""sha256_digest (ABI version 2): NIST's published vectors, its bound, and its fuel charge."""

from __future__ import annotations

import pytest

from sandbox import InMemoryHost, PluginConfig, Runtime, abi, limits
from tests.sandbox.guests import call_guest, decode_result

# FIPS 180-2 appendix B (and NIST's SHA-256 example values): the one-block, two-block and
# million-'a' messages, and the empty message.
VECTORS = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]


def hash_in_guest(runtime: Runtime, host: InMemoryHost, args: list[bytes | int],
                  fuel_limit: int = limits.FUEL_DEFAULT) -> tuple[dict, int]:
    # No permissions at all: sha256_digest needs none.
    plugin = runtime.load(call_guest("sha256_digest", args), PluginConfig("t", fuel_limit=fuel_limit), host)
    plugin.init()
    return plugin.handle_request({"type": "Probe"}), plugin.stats.fuel_used


@pytest.mark.parametrize(("message", "digest"), VECTORS, ids=["empty", "abc", "two-block", "million-a"])
def test_published_vectors(runtime: Runtime, host: InMemoryHost, message: bytes, digest: str) -> None:
    response, _ = hash_in_guest(runtime, host, [message])
    assert decode_result(response) == [abi.TAG_OK, bytes.fromhex(digest)]


def test_over_the_bound_is_refused_before_reading(runtime: Runtime, host: InMemoryHost) -> None:
    # A length past the bound is refused before the pointer is even looked at.
    response, _ = hash_in_guest(runtime, host, [0, limits.SHA256_MAX_BYTES + 1])
    result = decode_result(response)
    assert result[:2] == [abi.TAG_ERROR, "LIMIT_EXCEEDED"] and str(limits.SHA256_MAX_BYTES) in result[2]


def test_hashing_is_paid_for_in_fuel(runtime: Runtime, host: InMemoryHost) -> None:
    _, small = hash_in_guest(runtime, host, [b"x"])
    _, big = hash_in_guest(runtime, host, [b"x" * 500_000])
    charged = big - small  # the guest's own work is the same for both: the difference is the charge
    assert charged == (500_000 - 1) * limits.SHA256_FUEL_PER_BYTE


def test_hashing_past_the_fuel_left_ends_the_call(runtime: Runtime, host: InMemoryHost) -> None:
    response, _ = hash_in_guest(runtime, host, [b"x" * 500_000], fuel_limit=400_000)
    assert response["type"] == "Error" and response["code"] == "FUEL_EXHAUSTED", response
