"""cluster's own error codes: replication's refusals, and the codes of storage's results that
a proposal's future carries on.

The node maps them onto the wire's codes explicitly (aspen/codes.py); cluster knows nothing of
the wire.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from storage.errors import StorageCode


class ClusterCode(StrEnum):
    NOT_LEADER = "NOT_LEADER"
    UNAVAILABLE = "UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    OVERLOADED = "OVERLOADED"
    MEMBERSHIP_CHANGE_IN_PROGRESS = "MEMBERSHIP_CHANGE_IN_PROGRESS"
    VALUE_TOO_LARGE = "VALUE_TOO_LARGE"  # one write over the log entry limit
    BLOB_NOT_FOUND = "BLOB_NOT_FOUND"
    NOT_FOUND = "NOT_FOUND"  # move-leader to a node that is not a member
    INTERNAL = "INTERNAL"


class ClusterError(Exception):
    """Raised by ReplicatedNode and blob sync. `applied` in details, when there: "no" (safe to
    retry) or "unknown" (the write may still apply)."""

    def __init__(self, code: ClusterCode | StorageCode, message: str, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
