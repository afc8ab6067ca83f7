"""Hard bounds of the data model (Tiger Style: every input is bounded at the edge).

The ones a client is told are wire/limits.py's; storage adds its own.
"""

from wire.limits import (  # noqa: F401  (re-exported: storage's checks use them under these names)
    BATCH_OPS_MAX,
    BLOB_MAX_BYTES,
    CONDITIONS_MAX,
    KEY_MAX_BYTES,
    LEASE_ID_MAX,
    LEASE_TTL_MAX_S,
    RESERVED_KEY_PREFIX,
    SCAN_LIMIT_DEFAULT,
    SCAN_LIMIT_MAX,
    VALUE_MAX_BYTES,
)

META_TABLE_MAX_BYTES = 64  # UTF-8 encoded length of a meta table name
DELETE_RANGE_MAX = 1000  # keys one delrange op removes: bounds one entry's apply time
LEASES_MAX = 10_000  # granted and not yet revoked or expired, per cluster
LEASE_KEYS_MAX = 1000  # keys attached to one lease: bounds the apply of its revoke
