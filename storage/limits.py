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
