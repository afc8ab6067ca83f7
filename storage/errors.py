"""storage's own result codes: what an op's ("err", code, message, details) result and a
StorageError carry.

Results go into every node's state and onto the wire, so a code's string never changes. The
node maps these onto the wire's codes explicitly (aspen/codes.py); storage knows nothing of the
wire.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class StorageCode(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    KEY_TOO_LARGE = "KEY_TOO_LARGE"
    VALUE_TOO_LARGE = "VALUE_TOO_LARGE"
    RESERVED_KEY = "RESERVED_KEY"
    CAS_FAILED = "CAS_FAILED"
    BLOB_TOO_LARGE = "BLOB_TOO_LARGE"
    BLOB_CORRUPT = "BLOB_CORRUPT"
    LEASE_NOT_FOUND = "LEASE_NOT_FOUND"
    LEASE_LIMIT = "LEASE_LIMIT"
    INTERNAL = "INTERNAL"


class StorageError(Exception):
    """An op or input storage refuses: raised (blobs, snapshots) or returned (validate_op)."""

    def __init__(self, code: StorageCode, message: str, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
