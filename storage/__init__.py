"""storage: the replicated state machine's data and the BLAKE3 blob store (no networking).

Public names: StateMachine, CommitEvent, BlobRecord, Entry, ScanPage, KvStore, BlobStore,
BlobRef, validate_op, validate_key, Error, ErrorCode, AspenError; `storage.snapshot` dumps
and loads a StateMachine.
"""

from storage.blobs import BlobRef, BlobStore, blob_hash, check_hash
from storage.errors import AspenError, Error, ErrorCode
from storage.kv import Entry, KvStore, ScanPage
from storage.state import BlobRecord, CommitEvent, StateMachine, validate_key, validate_op

__all__ = [
    "AspenError",
    "BlobRecord",
    "BlobRef",
    "BlobStore",
    "CommitEvent",
    "Entry",
    "Error",
    "ErrorCode",
    "KvStore",
    "ScanPage",
    "StateMachine",
    "blob_hash",
    "check_hash",
    "validate_key",
    "validate_op",
]
