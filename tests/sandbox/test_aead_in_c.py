"""The AEAD host functions answered in C (sandbox/_guestcall.c, aead_fast): for XChaCha20-Poly1305
with plain, well-formed arguments the C path answers, for everything else the Python method
does, and either way the guest gets what the Python method gives: the same result for the same
argument bytes (valid, mutated, hostile), and the same fuel taken. Through real wasm: one WAT
guest passes its request's "a" field, as bytes, to the host function and returns the result."""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Iterator
from typing import Any

import msgpack
import nacl.bindings
import pytest
import wasmtime

import sandbox.runtime
from sandbox import InMemoryHost, Permissions, PluginConfig, PluginInstance, Runtime, abi, crypto, limits
from sandbox.cryptofuncs import CryptoHostFunctions
from tests.sandbox.guests import (
    ALLOC,
    PREFIX_OFF,
    RESULT_PREFIX,
    _import,
    call_guest,
    embed_result,
    info_export,
    wat_bytes,
)

CRYPTO = Permissions(crypto=True)
AEAD_NOGIL_BYTES = 64 * 1024  # sandbox/_guestcall.c: larger inputs go to the Python method
KEY = bytes(range(32))
NONCE = bytes(range(100, 124))


def forwarding_guest(fn: str, alloc: str = ALLOC) -> bytes:
    """handle_request({"type": "Probe", "a": <bin>}) calls `fn` on the bin's bytes, in place;
    `alloc` is its aspen_alloc (tests/sandbox/guests.py's bump allocator unless given)."""
    # The request as the host packs it: 0x82, "type", "Probe", "a", then bin8/16/32 and the bytes.
    head = len(abi.pack({"type": "Probe", "a": b""})) - 2  # up to the bin marker
    return wasmtime.wat2wasm(f"""(module
{_import(fn)}  (memory (export "memory") 2)
  (global $ap (mut i32) (i32.const 0)) (global $al (mut i32) (i32.const 0))
{alloc}
  (data (i32.const {PREFIX_OFF}) "{wat_bytes(RESULT_PREFIX)}")
{info_export()}
  (func (export "handle_request") (param $p i32) (param $l i32) (result i64)
    (local $m i32) (local $d i32) (local $n i32) (local $r i64)
    (local $rp i32) (local $rl i32) (local $out i32)
    (local.set $d (i32.add (local.get $p) (i32.const {head})))
    (local.set $m (i32.load8_u (local.get $d)))
    (local.set $d (i32.add (local.get $d) (i32.const 1)))
    (if (i32.eq (local.get $m) (i32.const 0xc4)) (then
      (local.set $n (i32.load8_u (local.get $d)))
      (local.set $d (i32.add (local.get $d) (i32.const 1)))))
    (if (i32.eq (local.get $m) (i32.const 0xc5)) (then
      (local.set $n (i32.or (i32.shl (i32.load8_u (local.get $d)) (i32.const 8))
                            (i32.load8_u offset=1 (local.get $d))))
      (local.set $d (i32.add (local.get $d) (i32.const 2)))))
    (if (i32.eq (local.get $m) (i32.const 0xc6)) (then
      (local.set $n (i32.or (i32.or (i32.shl (i32.load8_u (local.get $d)) (i32.const 24))
                                    (i32.shl (i32.load8_u offset=1 (local.get $d)) (i32.const 16)))
                            (i32.or (i32.shl (i32.load8_u offset=2 (local.get $d)) (i32.const 8))
                                    (i32.load8_u offset=3 (local.get $d)))))
      (local.set $d (i32.add (local.get $d) (i32.const 4)))))
    (global.set $ap (local.get $d))
    (global.set $al (local.get $n))
    {embed_result(f"(call ${fn} (local.get $d) (local.get $n))")}))""")


class Counted:
    """The Python AEAD methods, counted: which calls reached them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in ("crypto_aead_seal", "crypto_aead_open"):
            method = getattr(CryptoHostFunctions, name)

            def counted(funcs: Any, ap: int, al: int, method: Any = method, name: str = name) -> bytes:
                self.calls.append(name)
                return method(funcs, ap, al)

            monkeypatch.setattr(CryptoHostFunctions, name, counted)


class Guest:
    """One instance of the forwarding guest for `fn`: results through wasm (the C path where it
    answers) and through the Python method directly, on the same instance's memory. With
    `in_c` False the instance has no C path: the reference the C path is held to."""

    def __init__(self, runtime: Runtime, fn: str, fuel_limit: int = limits.FUEL_DEFAULT, in_c: bool = True,
                 wasm: bytes | None = None) -> None:
        self.fn = fn
        with pytest.MonkeyPatch.context() as m:
            if not in_c:
                m.setattr(sandbox.runtime, "answer_aead_in_c", lambda name, address: None)
            self.plugin: PluginInstance = runtime.load(
                wasm or forwarding_guest(fn), PluginConfig("t", CRYPTO, fuel_limit=fuel_limit), InMemoryHost()
            )
        self.plugin.init()

    def through_wasm(self, args: bytes) -> Any:
        response = self.plugin.handle_request({"type": "Probe", "a": args})
        if response.get("type") == "Error":
            return ["CALL", response["code"]]
        assert response["type"] == "Result", response
        return response["r"]

    def through_python(self, args: bytes) -> Any:
        funcs = self.plugin._funcs
        assert funcs.memory is not None and funcs.store is not None
        ptr = 65536 - len(args) - 8  # past the module's data, below its allocator's start
        assert ptr > 4096, "these arguments are too long for the comparison"
        funcs.memory.write(ptr, args)
        funcs.store.set_fuel(limits.FUEL_DEFAULT)
        return abi.unpack(getattr(funcs, self.fn)(ptr, len(args)))

    def fuel_used(self, args: bytes) -> int:
        before = self.plugin.stats.fuel_used
        self.through_wasm(args)
        return self.plugin.stats.fuel_used - before


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    return Counted(monkeypatch)  # before any instance: its host functions bind the methods then


@pytest.fixture
def seal(runtime: Runtime, counted: Counted) -> Iterator[Guest]:
    yield Guest(runtime, "crypto_aead_seal")


@pytest.fixture
def opener(runtime: Runtime, counted: Counted) -> Iterator[Guest]:
    yield Guest(runtime, "crypto_aead_open")


def fits(args: bytes) -> bool:
    """Whether through_python has room for these arguments."""
    return len(args) + 8 + 4096 < 65536


def pk(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def seal_args(plaintext: bytes, aad: bytes = b"ad", **extra: Any) -> bytes:
    fields = {"alg": crypto.XCHACHA, "key": KEY, "plaintext": plaintext, "aad": aad, "nonce": NONCE}
    return pk({**fields, **extra})


# Plaintext lengths at the result's msgpack header changes (bin8 up to 255 bytes of nonce, ciphertext
# and tag, then bin16, then bin32) and at the C path's 64 KiB bound.
SIZES = [0, 1, 215, 216, 1024, 65535 - 40, 65536 - 40, 60_000]


@pytest.mark.parametrize("size", SIZES)
def test_seal_and_open_in_c_give_what_python_and_libsodium_give(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    counted = Counted(monkeypatch)
    seal, opener = Guest(runtime, "crypto_aead_seal"), Guest(runtime, "crypto_aead_open")
    plaintext = os.urandom(size)
    args = seal_args(plaintext)
    expected = NONCE + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, b"ad", NONCE, KEY)
    open_args = pk({"alg": crypto.XCHACHA, "key": KEY, "sealed": expected, "aad": b"ad"})
    sealed, opened = seal.through_wasm(args), opener.through_wasm(open_args)
    # Answered in C up to 64 KiB of input (plaintext or sealed, and aad); past it, in Python.
    inputs = {"crypto_aead_seal": size + 2, "crypto_aead_open": len(expected) + 2}
    assert counted.calls == [name for name, n in inputs.items() if n > AEAD_NOGIL_BYTES]
    assert sealed == [abi.TAG_OK, expected]
    assert opened == [abi.TAG_OK, plaintext]
    if fits(args):
        assert seal.through_python(args) == sealed
    if fits(open_args):
        assert opener.through_python(open_args) == opened


def test_a_random_nonce_when_none_is_given_or_it_is_nil(seal: Guest, counted: Counted) -> None:
    for args in (pk({"alg": crypto.XCHACHA, "key": KEY, "plaintext": b"x"}),
                 pk({"alg": crypto.XCHACHA, "key": KEY, "plaintext": b"x", "nonce": None})):
        one, two = seal.through_wasm(args), seal.through_wasm(args)
        assert one[0] == two[0] == abi.TAG_OK and one[1][:24] != two[1][:24]
        assert crypto.aead_open(crypto.XCHACHA, KEY, one[1]) == b"x"
    assert counted.calls == []


def test_forgeries_fail_in_c_with_the_python_answer(opener: Guest, counted: Counted) -> None:
    sealed = crypto.aead_seal(crypto.XCHACHA, KEY, b"attack at dawn", b"ctx")
    flipped = bytearray(sealed)
    flipped[30] ^= 1
    cases = [
        pk({"alg": crypto.XCHACHA, "key": key, "sealed": bad, "aad": aad})
        for bad, aad, key in [(bytes(flipped), b"ctx", KEY), (sealed[:-1], b"ctx", KEY),
                              (sealed, b"other", KEY), (sealed, b"ctx", bytes(32))]
    ]
    results = [opener.through_wasm(args) for args in cases]
    assert counted.calls == []  # refused in C
    assert results == [opener.through_python(args) for args in cases]
    assert results == [[abi.TAG_ERROR, "DECRYPT_FAILED", crypto.FORGED]] * len(cases)


@pytest.mark.parametrize(
    "args",
    [
        pk({"alg": crypto.AESGCM256, "key": KEY, "plaintext": b"x", "nonce": bytes(12)}),  # another algorithm
        pk({"alg": crypto.XCHACHA, "key": KEY, "plaintext": b"x", "aad": None}),  # nil aad: an error there
        pk({"alg": crypto.XCHACHA, "key": KEY, "plaintext": b"x", "extra": 1}),  # an unknown name
        pk({"alg": crypto.XCHACHA, "key": KEY[:31], "plaintext": b"x"}),  # a short key
        pk({"alg": crypto.XCHACHA, "key": KEY, "plaintext": b"x", "nonce": bytes(12)}),  # a short nonce
        pk({"alg": crypto.XCHACHA, "key": KEY, "plaintext": "text"}),  # str, not bin
        pk({"alg": crypto.XCHACHA, "key": KEY}),  # no plaintext
        pk({"alg": crypto.XCHACHA, "key": KEY, "plaintext": b"x"}) + b"\x00",  # trailing bytes
        pk([crypto.XCHACHA, KEY, b"x"]),  # not a map
        b"",
        b"\x85\xa3alg\xb2xchacha20-poly1305\xa3key\xc4\x20" + KEY + b"\xa9plaintext\xc4\x01x"
        b"\xa5nonce\xc0\xa5nonce\xc4\x18" + NONCE,  # a name twice (the dict keeps the last)
        b"\x84\xa3alg\xb2xchacha20-poly1305\xa3key\xc4\x20" + KEY + b"\xa9plaintext\xc4\x01x"
        b"\xa5nonce\xc4\x18" + NONCE[:-1],  # cut short
        pk({"alg": crypto.XCHACHA, "key": KEY, "plaintext": bytes(70_000)}),  # past the C path's 64 KiB
    ],
)
def test_everything_else_reaches_the_python_method(seal: Guest, counted: Counted, args: bytes) -> None:
    result = seal.through_wasm(args)
    assert counted.calls == ["crypto_aead_seal"]
    if fits(args):
        python = seal.through_python(args)
        if result[0] == abi.TAG_OK and python[0] == abi.TAG_OK and b"\xa5nonce\xc4" not in args:
            assert len(result[1]) == len(python[1])  # a random nonce each
        else:
            assert result == python


def same_answer(got: Any, want: Any, args: bytes) -> bool:
    """Equal, or two seals with random nonces (no usable nonce given) of the same plaintext."""
    if got == want:
        return True
    if not (got[0] == want[0] == abi.TAG_OK and len(got[1]) == len(want[1])):
        return False
    fields = msgpack.unpackb(args, raw=False, strict_map_key=False)
    alg, key, aad = fields["alg"], fields["key"], fields.get("aad", b"")
    return crypto.aead_open(alg, key, got[1], aad) == crypto.aead_open(alg, key, want[1], aad)


def test_mutated_arguments_get_the_python_answer(seal: Guest, opener: Guest) -> None:
    """Random corruptions of valid arguments (bit flips, cuts, spliced bytes): whatever the C path
    takes, it answers as the Python method does for the same bytes."""
    rng = random.Random(14)
    bases = [seal_args(b"p" * 300), seal_args(b"", aad=b""), pk({"alg": crypto.XCHACHA, "key": KEY,
                                                                   "plaintext": b"q" * 20, "nonce": NONCE})]
    sealed = crypto.aead_seal(crypto.XCHACHA, KEY, b"m" * 100, b"ad", NONCE)
    open_bases = [pk({"alg": crypto.XCHACHA, "key": KEY, "sealed": sealed, "aad": b"ad"})]
    for guest, pool in ((seal, bases), (opener, open_bases)):
        for _ in range(400):
            args = bytearray(rng.choice(pool))
            for _ in range(rng.randint(1, 3)):
                if not args:
                    break
                kind = rng.randrange(4)
                at = rng.randrange(len(args))
                if kind == 3:  # inside the values, mostly: the C path answers these itself
                    args[rng.randrange(len(args) // 2, len(args))] ^= 1 << rng.randrange(8)
                elif kind == 0:
                    args[at] ^= 1 << rng.randrange(8)
                elif kind == 1:
                    del args[at:]
                else:
                    args[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            got, want = guest.through_wasm(bytes(args)), guest.through_python(bytes(args))
            assert same_answer(got, want, bytes(args)), bytes(args).hex()


def test_the_c_path_takes_the_fuel_the_python_method_takes(runtime: Runtime, counted: Counted) -> None:
    """The same seal answered in C and (with a name the C path does not take, which the Python
    method ignores) by the Python method, each on a fresh instance: the same fuel used."""
    for size in (0, 1000, 60_000):
        plain, extra = seal_args(bytes(size)), seal_args(bytes(size), x=0)
        in_c, in_python = Guest(runtime, "crypto_aead_seal"), Guest(runtime, "crypto_aead_seal")
        assert in_c.fuel_used(plain) == in_python.fuel_used(extra) > limits.CRYPTO_FUEL_BASE + size
        assert counted.calls == ["crypto_aead_seal"]  # the second one only
        counted.calls.clear()
    # Too little fuel for the charge: the Python method's answer (LIMIT_EXCEEDED, no fuel left),
    # so the guest stops at its next instruction.
    poor = Guest(runtime, "crypto_aead_seal", fuel_limit=limits.CRYPTO_FUEL_BASE + 30_000)
    assert poor.through_wasm(seal_args(bytes(60_000))) == ["CALL", "FUEL_EXHAUSTED"]
    assert counted.calls == ["crypto_aead_seal"]


def test_without_the_crypto_permission_nothing_is_answered_in_c(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = Counted(monkeypatch)
    guest = forwarding_guest("crypto_aead_seal")
    plugin = runtime.load(guest, PluginConfig("t", Permissions()), InMemoryHost())
    plugin.init()
    response = plugin.handle_request({"type": "Probe", "a": seal_args(b"x")})
    assert response["r"][:2] == [abi.TAG_ERROR, "PERMISSION_DENIED"]
    assert counted.calls == ["crypto_aead_seal"]


# -- the C path against an instance without it: same inputs, same order ------------------------


def _str(x: bytes, rng: random.Random) -> bytes:
    """msgpack str in any of its encodings (the C path takes all; the minimal one is not required)."""
    kind = rng.randrange(4)
    if kind == 0 and len(x) < 32:
        return bytes([0xa0 | len(x)]) + x
    if kind <= 1 and len(x) < 256:
        return b"\xd9" + bytes([len(x)]) + x
    if kind == 2:
        return b"\xda" + struct.pack(">H", len(x)) + x
    return b"\xdb" + struct.pack(">I", len(x)) + x


def _bin(x: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(3)
    if kind == 0 and len(x) < 256:
        return b"\xc4" + bytes([len(x)]) + x
    if kind <= 1 and len(x) < 65536:
        return b"\xc5" + struct.pack(">H", len(x)) + x
    return b"\xc6" + struct.pack(">I", len(x)) + x


def generated_args(rng: random.Random, fn: str) -> bytes:
    """Arguments a guest could send: mostly well-formed in every encoding, the rest with wrong
    names, types, sizes, duplicates, map16/map32 headers and trailing bytes."""
    good = rng.random() < 0.6
    pick = (lambda xs: xs[0]) if good else rng.choice
    entries = [
        (b"alg", _str(pick([b"xchacha20-poly1305", b"aes256-gcm", b"XCHACHA20-poly1305"]), rng)),
        (b"key", _bin(pick([KEY, KEY[:31], bytes(33)]), rng)),
        (b"aad", rng.choice([_bin(b"ad", rng), _bin(b"", rng), b"\xc0", _str(b"ad", rng)])),
    ]
    if fn == "crypto_aead_seal":
        plaintext = _bin(b"p" * rng.choice([0, 5, 300]), rng)
        entries.append((b"plaintext", pick([plaintext, b"\xc0", _str(b"p", rng)])))
        entries.append((b"nonce", rng.choice([_bin(NONCE, rng), b"\xc0", _bin(NONCE[:23], rng), b"\xc2"])))
    else:
        sealed = crypto.aead_seal(crypto.XCHACHA, KEY, b"m" * rng.choice([0, 1, 100]), b"ad", NONCE)
        entries.append((b"sealed", _bin(pick([sealed, sealed[:-1], sealed[:40], sealed[:39], b""]), rng)))
        if rng.random() < 0.1:
            entries.append((b"nonce", _bin(NONCE, rng)))
    rng.shuffle(entries)
    if not good:
        entries = [e for e in entries if rng.random() > 0.1]
        if entries and rng.random() < 0.2:
            entries.append(rng.choice(entries))  # a name twice
    body = b"".join(_str(name, rng) + value for name, value in entries)
    kind = 0 if good else rng.randrange(5)
    n = len(entries)
    head = bytes([0x80 | n]) if kind < 3 else (b"\xde" + struct.pack(">H", n) if kind == 3 else
                                               b"\xdf" + struct.pack(">I", n))
    return head + body + (b"\x00" if not good and rng.random() < 0.1 else b"")


@pytest.mark.parametrize("fn", ["crypto_aead_seal", "crypto_aead_open"])
def test_the_c_path_answers_as_an_instance_without_it(
    runtime: Runtime, counted: Counted, fn: str
) -> None:
    rng = random.Random(fn)
    in_c = 0
    for _ in range(10):
        with_c, without = Guest(runtime, fn), Guest(runtime, fn, in_c=False)
        for _ in range(60):
            args = generated_args(rng, fn)
            counted.calls.clear()
            fuel = with_c.plugin.stats.fuel_used, without.plugin.stats.fuel_used
            got, want = with_c.through_wasm(args), without.through_wasm(args)
            assert same_answer(got, want, args), args.hex()
            used = with_c.plugin.stats.fuel_used - fuel[0], without.plugin.stats.fuel_used - fuel[1]
            assert used[0] == used[1], args.hex()
            in_c += counted.calls == [fn]  # only the instance without the C path reached the method
    assert in_c > 60  # the comparison exercised the C path, not only the fall-through


@pytest.mark.parametrize("fn", ["crypto_aead_seal", "crypto_aead_open"])
def test_fuel_at_and_around_the_charge(runtime: Runtime, fn: str) -> None:
    """Fuel limits stepped across the point where the charge no longer fits: the same outcome
    and the same fuel with and without the C path (open: of a forgery too)."""
    sealed = crypto.aead_seal(crypto.XCHACHA, KEY, b"x" * 100, b"ad", NONCE)
    cases = [seal_args(b"x" * 100)] if fn == "crypto_aead_seal" else [
        pk({"alg": crypto.XCHACHA, "key": KEY, "sealed": sealed, "aad": b"ad"}),
        pk({"alg": crypto.XCHACHA, "key": KEY, "sealed": sealed[:-1] + b"\x00", "aad": b"ad"}),
    ]
    for args in cases:
        base = Guest(runtime, fn).fuel_used(args)  # the whole call's fuel, charge included
        for limit in range(base - 40, base + 40, 3):
            with_c = Guest(runtime, fn, fuel_limit=limit)
            without = Guest(runtime, fn, fuel_limit=limit, in_c=False)
            got, want = with_c.through_wasm(args), without.through_wasm(args)
            assert got == want, (limit, got, want)
            assert with_c.plugin.stats.fuel_used == without.plugin.stats.fuel_used, limit


# An allocator that misbehaves when asked for the result of a 1-byte seal ([0, bin8]: 4 + 41
# bytes): a pointer outside memory, a trap, a memory.grow, or a second seal from inside it.
_RESULT_N = 4 + 24 + 1 + 16
_IS_RESULT = f"(i32.eq (local.get $n) (i32.const {_RESULT_N}))"
_MISBEHAVING = {
    "bad pointer": f"(if {_IS_RESULT} (then (return (i32.const -256))))",
    "trap": f"(if {_IS_RESULT} (then unreachable))",
    "grow": f"(if {_IS_RESULT} (then (drop (memory.grow (i32.const 20)))))",
    "re-entry": f"(if (i32.and {_IS_RESULT} (i32.ne (global.get $al) (i32.const 0)))"
                " (then (local.set $p (global.get $al)) (global.set $al (i32.const 0))"
                " (drop (call $crypto_aead_seal (global.get $ap) (local.get $p)))))",
}


@pytest.mark.parametrize("how", list(_MISBEHAVING))
def test_a_misbehaving_allocator_gets_what_it_got_from_python(
    runtime: Runtime, counted: Counted, how: str
) -> None:
    alloc = ALLOC.replace("(local $p i32) (local $need i32)",
                          "(local $p i32) (local $need i32)\n    " + _MISBEHAVING[how])
    wasm = forwarding_guest("crypto_aead_seal", alloc)
    args = seal_args(b"x", aad=b"")
    with_c = Guest(runtime, "crypto_aead_seal", wasm=wasm)
    without = Guest(runtime, "crypto_aead_seal", wasm=wasm, in_c=False)
    got = with_c.plugin.handle_request({"type": "Probe", "a": args})
    want = without.plugin.handle_request({"type": "Probe", "a": args})
    assert got == want
    assert (got["type"] == "Error") == (how in ("bad pointer", "trap")), got  # a trap ends the call
    assert with_c.plugin.stats.fuel_used == without.plugin.stats.fuel_used
    assert counted.calls.count("crypto_aead_seal") == (2 if how == "re-entry" else 1)  # the one without C


@pytest.mark.parametrize("fn", ["crypto_aead_seal", "crypto_aead_open"])
@pytest.mark.parametrize(
    ("ptr", "length"),
    [(0, limits.CRYPTO_MAX_BYTES + 1), (0, 2**31 - 1), (0, -1), (-8, 16), (2 * 65536 - 8, 64), (1 << 30, 10)],
)
def test_hostile_pointers_and_lengths_get_the_python_answer(
    runtime: Runtime, counted: Counted, fn: str, ptr: int, length: int
) -> None:
    """A guest that claims arguments past the bound, past its memory or at a negative address:
    the C path leaves them to the Python method (LIMIT_EXCEEDED, or a trap), which answers as it
    would without the C path."""
    wasm = call_guest(fn, [ptr, length])
    with_c, without = Guest(runtime, fn, wasm=wasm), Guest(runtime, fn, wasm=wasm, in_c=False)
    got = with_c.plugin.handle_request({"type": "Probe"})
    assert got == without.plugin.handle_request({"type": "Probe"})
    assert counted.calls == [fn, fn]  # both reached the method
    assert got["type"] == "Error" or got["r"][:2] == [abi.TAG_ERROR, "LIMIT_EXCEEDED"], got
