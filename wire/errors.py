"""The wire's error vocabulary (docs/PROTOCOL.md): its codes, the Error value and AspenError.

The client and the server both import it, and it imports nothing of ours, so a client never
loads the server stack. Errors are values with a stable `code` and a human `message`; the wire
sends them as `{"type": "Error", "code": ..., "message": ...}` plus optional detail fields.
Codes never change meaning once released. The layers below keep their own codes
(storage/errors.py, cluster/errors.py, sandbox/errors.py); aspen/codes.py maps them onto these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    NOT_LEADER = "NOT_LEADER"
    CAS_FAILED = "CAS_FAILED"
    KEY_TOO_LARGE = "KEY_TOO_LARGE"
    VALUE_TOO_LARGE = "VALUE_TOO_LARGE"
    INVALID_REQUEST = "INVALID_REQUEST"
    UNKNOWN_REQUEST = "UNKNOWN_REQUEST"
    TIMEOUT = "TIMEOUT"
    UNAVAILABLE = "UNAVAILABLE"
    AUTH_FAILED = "AUTH_FAILED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    MALFORMED_FRAME = "MALFORMED_FRAME"
    BLOB_TOO_LARGE = "BLOB_TOO_LARGE"
    BLOB_NOT_FOUND = "BLOB_NOT_FOUND"
    BLOB_CORRUPT = "BLOB_CORRUPT"
    NOT_FOUND = "NOT_FOUND"
    RESERVED_KEY = "RESERVED_KEY"
    OVERLOADED = "OVERLOADED"
    MEMBERSHIP_CHANGE_IN_PROGRESS = "MEMBERSHIP_CHANGE_IN_PROGRESS"
    LEASE_NOT_FOUND = "LEASE_NOT_FOUND"
    LEASE_LIMIT = "LEASE_LIMIT"
    COMPACTED = "COMPACTED"  # a watch from a revision the history no longer holds
    WATCH_OVERFLOW = "WATCH_OVERFLOW"  # a watcher that did not keep up; resume from a revision
    SNAPSHOT_CORRUPT = "SNAPSHOT_CORRUPT"
    UNSEAL_KEY_WRONG = "UNSEAL_KEY_WRONG"  # the secrets barrier (docs/SECRETS.md)
    KEYRING_CORRUPT = "KEYRING_CORRUPT"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class Error:
    code: ErrorCode | str  # a plugin may answer with its own codes (READ_FAILED, ...)
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "Error", "code": str(self.code), "message": self.message}
        wire.update(self.details)
        return wire


class AspenError(Exception):
    """Raised inside the node and the client; carries an Error value."""

    def __init__(self, code: ErrorCode | str, message: str, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.error = Error(code, message, details)

    @property
    def code(self) -> ErrorCode | str:
        return self.error.code

    @property
    def message(self) -> str:
        return self.error.message
