"""The data model's bounds and the frame's, as docs/PROTOCOL.md states them: defined once.

storage/limits.py and sandbox/limits.py take these (apply and the host functions check the
same numbers the client is told); tests/structure/test_vocabulary.py asserts every relation other bounds
have with them.
"""

MIB = 1024 * 1024

KEY_MAX_BYTES = 1024  # UTF-8 encoded length
VALUE_MAX_BYTES = 1 * MIB
SCAN_LIMIT_DEFAULT = 1000
SCAN_LIMIT_MAX = 10_000
BATCH_OPS_MAX = 1000
CONDITIONS_MAX = 100
BLOB_MAX_BYTES = 50 * MIB
RESERVED_KEY_PREFIX = "__aspen/"  # the cluster's own keys; RESERVED_KEY for anyone else
LEASE_TTL_MAX_S = 30 * 24 * 3600  # a lease's time to live: 1 s to 30 days
LEASE_ID_MAX = 2**63 - 1

# One frame after the handshake: a request or an answer, whole. Before the peer proved the
# cookie: Hello, Auth and AuthOk are under 200 bytes each.
FRAME_MAX_BYTES = 64 * MIB
PREAUTH_FRAME_MAX_BYTES = 4 * 1024
