"""The node's Ed25519 identity key (plugins sign with it through sign_data)."""

from __future__ import annotations

import os
from pathlib import Path

import nacl.signing


def load_or_create(path: Path) -> nacl.signing.SigningKey:
    if path.exists():
        mode = path.stat().st_mode & 0o077
        if mode:
            raise SystemExit(f"aspen-node: {path} is readable by others; chmod 600 it")
        return nacl.signing.SigningKey(bytes.fromhex(path.read_text().strip()))
    key = nacl.signing.SigningKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(bytes(key).hex())
    return key
