"""storage: the replicated state machine's data and the BLAKE3 blob store (no networking).

`storage.snapshot` dumps and loads a StateMachine; `storage.codec` is its canonical encoding.
"""

from storage.blobs import BlobRef, BlobStore
from storage.errors import StorageCode, StorageError
from storage.hashing import blob_hash, check_hash, is_blob_hash
from storage.kv import Entry, KvStore, ScanPage
from storage.ops import Result, validate_key, validate_op
from storage.snapshot import SnapshotError
from storage.state import BlobRecord, CommitEvent, StateMachine

__all__ = [
    "BlobRecord",
    "BlobRef",
    "BlobStore",
    "CommitEvent",
    "Entry",
    "KvStore",
    "Result",
    "ScanPage",
    "SnapshotError",
    "StateMachine",
    "StorageCode",
    "StorageError",
    "blob_hash",
    "check_hash",
    "is_blob_hash",
    "validate_key",
    "validate_op",
]
