"""Cookie handling and the HMAC challenge values."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import pytest

from aspen import auth
from aspen.auth import Cookie

SECRET = "a-secret-of-enough-length"


def test_cookie_never_prints_its_secret() -> None:
    c = Cookie(SECRET)
    for text in (repr(c), str(c), f"{c}", repr([c]), repr({"c": c})):
        assert SECRET not in text


def test_cookie_length_bounds() -> None:
    with pytest.raises(ValueError):
        Cookie("short")
    with pytest.raises(ValueError):
        Cookie("x" * (auth.COOKIE_MAX_CHARS + 1))


def test_macs_are_hmac_sha256_over_context_and_nonce() -> None:
    c = Cookie(SECRET)
    nonce = auth.new_nonce()
    assert len(nonce) == auth.NONCE_BYTES == 32
    expected = hmac.new(SECRET.encode(), b"aspen-client-v2" + nonce, hashlib.sha256).digest()
    assert c.mac(auth.CLIENT_CONTEXT, nonce) == expected
    assert c.check(auth.CLIENT_CONTEXT, nonce, expected)
    assert not c.check(auth.SERVER_CONTEXT, nonce, expected)  # contexts are not interchangeable
    assert not c.check(auth.CLIENT_CONTEXT, nonce, "not bytes")
    assert not Cookie(SECRET + "x").check(auth.CLIENT_CONTEXT, nonce, expected)


def test_generated_cookies_are_random_and_valid() -> None:
    a, b = auth.generate_cookie(), auth.generate_cookie()
    assert a != b and Cookie(a) and len(a) >= 32


def test_cookie_file_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    auth.write_cookie_file(path, SECRET)
    assert path.stat().st_mode & 0o777 == 0o600
    assert auth.read_cookie_file(path).secret == SECRET


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620])
def test_cookie_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "cookie"
    auth.write_cookie_file(path, SECRET)
    os.chmod(path, mode)
    with pytest.raises(ValueError, match="chmod 600"):
        auth.read_cookie_file(path)


def test_load_cookie_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cookie"
    auth.write_cookie_file(path, "from-the-file-0123456789")
    monkeypatch.delenv("ASPEN_COOKIE", raising=False)
    monkeypatch.delenv("ASPEN_COOKIE_FILE", raising=False)
    assert auth.load_cookie() is None
    monkeypatch.setenv("ASPEN_COOKIE_FILE", str(path))
    assert auth.load_cookie().secret == "from-the-file-0123456789"  # type: ignore[union-attr]
    monkeypatch.setenv("ASPEN_COOKIE", "from-the-env-0123456789")
    assert auth.load_cookie().secret == "from-the-env-0123456789"  # type: ignore[union-attr]
    assert auth.load_cookie(cookie_file=path).secret == "from-the-file-0123456789"  # type: ignore[union-attr]
    assert (
        auth.load_cookie(cookie="from-the-flag-0123456789", cookie_file=path).secret
        == "from-the-flag-0123456789"
    )  # type: ignore[union-attr]


def test_proofs_cover_both_nonces_and_the_node_id() -> None:
    ns, nc = b"s" * 32, b"c" * 32
    assert auth.client_proof(ns, nc) == (b"aspen-client-v2", ns + nc)
    assert auth.server_proof(ns, nc, 7) == (b"aspen-server-v2", ns + nc + (7).to_bytes(8, "big"))
    c = Cookie(SECRET)
    assert c.mac(*auth.server_proof(ns, nc, 7)) != c.mac(*auth.server_proof(ns, nc, 8))
