"""Ed25519 secret keys on disk: the node's identity key and plugin authors' signing keys.

A key file holds the 32-byte seed as hex, mode 0600; a file others can read is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import nacl.exceptions
import nacl.signing


class KeyFileError(Exception):
    pass


def load(path: Path) -> nacl.signing.SigningKey:
    try:
        mode = path.stat().st_mode & 0o077
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    if mode:
        raise KeyFileError(f"{path} is readable by others; chmod 600 it")
    try:
        return nacl.signing.SigningKey(bytes.fromhex(path.read_text().strip()))
    except (ValueError, nacl.exceptions.CryptoError):
        raise KeyFileError(f"{path}: not an Ed25519 key (64 hex characters)") from None


def create(path: Path, *, overwrite: bool = False) -> nacl.signing.SigningKey:
    """Write a new key (parent made 0700 when missing); refuses to replace one unless asked."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = nacl.signing.SigningKey.generate()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; pass --force to replace it") from None
    with os.fdopen(fd, "w") as f:
        f.write(bytes(key).hex() + "\n")
    os.chmod(path, 0o600)  # O_TRUNC keeps an old file's mode
    return key


def load_or_create(path: Path) -> nacl.signing.SigningKey:
    try:
        return load(path) if path.exists() else create(path)
    except KeyFileError as exc:
        raise SystemExit(f"aspen-node: {exc}") from None
