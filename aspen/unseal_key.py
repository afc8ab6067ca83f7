"""The secrets barrier's unseal key as operators handle it: made, named, read from a file.

Apart from aspen/barrier.py so that `aspen-cli secrets` (which makes and names keys) loads no
server code. The key never enters the log (docs/SECRETS.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

KEY_BYTES = 32
KEY_FILE_MAX_BYTES = 4096


def key_id(unseal_key: bytes) -> str:
    """A fingerprint that names an unseal key without revealing it (HMAC-SHA256, 8 bytes hex)."""
    return hmac.new(unseal_key, b"aspen unseal key id", hashlib.sha256).hexdigest()[:16]


def parse_unseal_key(text: str) -> bytes:
    """An unseal key file holds 64 hex characters (32 bytes), surrounding whitespace ignored."""
    stripped = text.strip()
    try:
        raw = bytes.fromhex(stripped)
    except ValueError:
        raw = b""
    if len(raw) != KEY_BYTES or len(stripped) != 2 * KEY_BYTES:
        raise ValueError(f"an unseal key is {2 * KEY_BYTES} hex characters ({KEY_BYTES} bytes)")
    return raw


def read_unseal_key_file(path: Path) -> bytes:
    if path.stat().st_size > KEY_FILE_MAX_BYTES:
        raise ValueError(f"{path}: not an unseal key file (over {KEY_FILE_MAX_BYTES} bytes)")
    return parse_unseal_key(path.read_text())


def new_unseal_key() -> bytes:
    return os.urandom(KEY_BYTES)
