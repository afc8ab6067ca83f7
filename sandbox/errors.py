"""Sandbox error codes: what a guest sees in a host result, and what a caller gets after a trap."""

from __future__ import annotations

from enum import StrEnum


class SandboxCode(StrEnum):
    PERMISSION_DENIED = "PERMISSION_DENIED"
    KV_PREFIX_DENIED = "KV_PREFIX_DENIED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    HOST_ERROR = "HOST_ERROR"
    KEY_TOO_LARGE = "KEY_TOO_LARGE"
    VALUE_TOO_LARGE = "VALUE_TOO_LARGE"
    DECRYPT_FAILED = "DECRYPT_FAILED"  # an AEAD open or barrier_open that failed authentication
    SEALED = "SEALED"  # barrier calls on a node not unsealed (docs/SECRETS.md)
    # Call outcomes (the caller sees these; the guest never does).
    FUEL_EXHAUSTED = "FUEL_EXHAUSTED"
    TIMEOUT = "TIMEOUT"
    PLUGIN_TRAP = "PLUGIN_TRAP"
    INVALID_RESPONSE = "INVALID_RESPONSE"
    PLUGIN_FAILED = "PLUGIN_FAILED"
    NOT_READY = "NOT_READY"
    # Load-time refusals.
    INVALID_MODULE = "INVALID_MODULE"
    UNKNOWN_IMPORT = "UNKNOWN_IMPORT"
    MISSING_EXPORT = "MISSING_EXPORT"
    MODULE_TOO_LARGE = "MODULE_TOO_LARGE"


class SandboxError(Exception):
    def __init__(self, code: SandboxCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class HostError(Exception):
    """Raised by a Host implementation; reaches the guest as an error result with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
