"""The cluster secret (cookie) and the mutual HMAC challenge of docs/PROTOCOL.md.

The cookie never crosses the wire: each side proves it holds it by a MAC over both sides'
fresh nonces (the server's proof also names its node id), compared in constant time. The
session keys that tag every later frame come from the same nonces (aspen/session.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

CLIENT_CONTEXT = b"aspen-client-v2"
SERVER_CONTEXT = b"aspen-server-v2"
NONCE_BYTES = 32
COOKIE_MIN_CHARS = 16
COOKIE_MAX_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Cookie:
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not COOKIE_MIN_CHARS <= len(self.secret) <= COOKIE_MAX_CHARS:
            raise ValueError(f"cluster cookie must be {COOKIE_MIN_CHARS} to {COOKIE_MAX_CHARS} characters")

    def __repr__(self) -> str:
        return "Cookie(<secret>)"

    def mac(self, context: bytes, nonce: bytes) -> bytes:
        return hmac.new(self.secret.encode(), context + nonce, hashlib.sha256).digest()

    def check(self, context: bytes, nonce: bytes, mac: object) -> bool:
        return isinstance(mac, bytes) and hmac.compare_digest(self.mac(context, nonce), mac)


def client_proof(server_nonce: bytes, client_nonce: bytes) -> tuple[bytes, bytes]:
    """(context, data) the client's Auth mac covers."""
    return CLIENT_CONTEXT, server_nonce + client_nonce


def server_proof(server_nonce: bytes, client_nonce: bytes, node_id: int) -> tuple[bytes, bytes]:
    """(context, data) the server's AuthOk mac covers: the node id too, which the client then
    trusts (Hello is not authenticated)."""
    return SERVER_CONTEXT, server_nonce + client_nonce + node_id.to_bytes(8, "big")


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def generate_cookie() -> str:
    return secrets.token_urlsafe(32)


def read_cookie_file(path: Path) -> Cookie:
    """Read a cookie file; refuse one that others can read, as ssh does with keys."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"{path}: cookie file is readable by others (mode {oct(mode & 0o777)}); chmod 600 it"
        )
    try:
        return Cookie(path.read_text().strip())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def write_cookie_file(path: Path, secret: str) -> Cookie:
    cookie = Cookie(secret)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o600)
    return cookie


def load_cookie(*, cookie: str | None = None, cookie_file: Path | None = None) -> Cookie | None:
    """--cookie, then --cookie-file, then ASPEN_COOKIE, then ASPEN_COOKIE_FILE; None if none."""
    if cookie:
        return Cookie(cookie)
    if cookie_file is not None:
        return read_cookie_file(cookie_file)
    env = os.environ.get("ASPEN_COOKIE")
    if env:
        return Cookie(env)
    env_file = os.environ.get("ASPEN_COOKIE_FILE")
    if env_file:
        return read_cookie_file(Path(env_file))
    return None
