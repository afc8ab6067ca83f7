"""The seam between the layers' error vocabularies and the wire's, written out.

storage (StorageCode), cluster (ClusterCode) and the sandbox (SandboxCode) each own their codes;
the node answers clients in the wire's (wire/errors.py ErrorCode). Each table below names, for
every code of a layer, the wire code it becomes; tests/node/test_vocabulary.py checks that no
code is left out. `wire_error` turns a layer's exception into the AspenError the server answers.
"""

from __future__ import annotations

from cluster.errors import ClusterCode, ClusterError
from sandbox.errors import SandboxCode
from storage.errors import StorageCode, StorageError
from wire.errors import AspenError, ErrorCode

STORAGE_TO_WIRE: dict[StorageCode, ErrorCode] = {
    StorageCode.INVALID_REQUEST: ErrorCode.INVALID_REQUEST,
    StorageCode.KEY_TOO_LARGE: ErrorCode.KEY_TOO_LARGE,
    StorageCode.VALUE_TOO_LARGE: ErrorCode.VALUE_TOO_LARGE,
    StorageCode.RESERVED_KEY: ErrorCode.RESERVED_KEY,
    StorageCode.CAS_FAILED: ErrorCode.CAS_FAILED,
    StorageCode.BLOB_TOO_LARGE: ErrorCode.BLOB_TOO_LARGE,
    StorageCode.BLOB_CORRUPT: ErrorCode.BLOB_CORRUPT,
    StorageCode.LEASE_NOT_FOUND: ErrorCode.LEASE_NOT_FOUND,
    StorageCode.LEASE_LIMIT: ErrorCode.LEASE_LIMIT,
    StorageCode.INTERNAL: ErrorCode.INTERNAL,
}

CLUSTER_TO_WIRE: dict[ClusterCode, ErrorCode] = {
    ClusterCode.NOT_LEADER: ErrorCode.NOT_LEADER,
    ClusterCode.UNAVAILABLE: ErrorCode.UNAVAILABLE,
    ClusterCode.TIMEOUT: ErrorCode.TIMEOUT,
    ClusterCode.OVERLOADED: ErrorCode.OVERLOADED,
    ClusterCode.MEMBERSHIP_CHANGE_IN_PROGRESS: ErrorCode.MEMBERSHIP_CHANGE_IN_PROGRESS,
    ClusterCode.VALUE_TOO_LARGE: ErrorCode.VALUE_TOO_LARGE,
    ClusterCode.BLOB_NOT_FOUND: ErrorCode.BLOB_NOT_FOUND,
    ClusterCode.NOT_FOUND: ErrorCode.NOT_FOUND,
    ClusterCode.INTERNAL: ErrorCode.INTERNAL,
}

# A plugin call's outcome reaches the client as an Error response carrying the sandbox's code as
# it is (the wire keeps a plugin's own codes too); the ones a guest sees in a host result can
# also come back in its answer. None of them is a wire code of its own: the wire passes them on.
SANDBOX_PASSED_ON: frozenset[SandboxCode] = frozenset(SandboxCode)

# Every outcome a request can be counted under (aspen/metrics.py): ok, or a code a node answers.
OUTCOMES: frozenset[str] = frozenset({"ok", *ErrorCode, *SANDBOX_PASSED_ON})

# What aspen code catches when it calls into storage or cluster and answers with the wire's code.
LAYER_ERRORS = (AspenError, ClusterError, StorageError)


def wire_code(code: str) -> ErrorCode:
    """A storage or cluster code (a result's, or an exception's) as the wire's."""
    if code in CLUSTER_TO_WIRE:
        return CLUSTER_TO_WIRE[ClusterCode(code)]
    return STORAGE_TO_WIRE[StorageCode(code)]


def wire_error(exc: AspenError | ClusterError | StorageError) -> AspenError:
    """The AspenError a client is answered with for an error of any layer below."""
    if isinstance(exc, AspenError):
        return exc
    error = AspenError(wire_code(exc.code), exc.message, **exc.details)
    error.__cause__ = exc
    return error
