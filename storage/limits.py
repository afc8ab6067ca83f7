"""Hard bounds of the data model (Tiger Style: every input is bounded at the edge)."""

KEY_MAX_BYTES = 1024  # UTF-8 encoded length
VALUE_MAX_BYTES = 1024 * 1024
SCAN_LIMIT_DEFAULT = 1000
SCAN_LIMIT_MAX = 10_000
BATCH_OPS_MAX = 1000
CONDITIONS_MAX = 100
BLOB_MAX_BYTES = 50 * 1024 * 1024
RESERVED_KEY_PREFIX = "__aspen/"
META_TABLE_MAX_BYTES = 64  # UTF-8 encoded length of a meta table name
DELETE_RANGE_MAX = 1000  # keys one delrange op removes: bounds one entry's apply time
LEASE_TTL_MAX_S = 30 * 24 * 3600  # a lease's time to live: 1 s to 30 days
LEASES_MAX = 10_000  # granted and not yet revoked or expired, per cluster
LEASE_KEYS_MAX = 1000  # keys attached to one lease: bounds the apply of its revoke
LEASE_ID_MAX = 2**63 - 1
