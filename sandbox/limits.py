"""The guide's Resource Limits, and the bounds of every host function argument.

A plugin's KV and blob arguments are bounded as a client's are: those numbers are wire/limits.py's.
"""

from wire.limits import (  # noqa: F401  (re-exported: the host functions check them under these names)
    BATCH_OPS_MAX,
    BLOB_MAX_BYTES,
    FRAME_MAX_BYTES,
    KEY_MAX_BYTES,
    MIB,
    SCAN_LIMIT_DEFAULT,
    SCAN_LIMIT_MAX,
    VALUE_MAX_BYTES,
)

FUEL_DEFAULT = 500_000_000
FUEL_MAX = 100_000_000_000
WASM_PAGE_BYTES = 64 * 1024  # the WebAssembly spec's page
MEMORY_MIN_BYTES = WASM_PAGE_BYTES  # a module gets at least one page
MEMORY_DEFAULT_BYTES = 128 * MIB
MEMORY_MAX_BYTES = 1024 * MIB
# The memory budget (sandbox/budget.py): memory_limit covers the linear memory, one table and
# the globals. The table's share is a sixteenth of it, within these bounds.
TABLES_MAX = 1
TABLE_BYTES_MIN = 8 * 1024
TABLE_BYTES_MAX = 1 * MIB
GLOBALS_MAX = 1000
TIMEOUT_DEFAULT_S = 30.0
TIMEOUT_MAX_S = 300.0
WASM_MAX_BYTES = 50 * MIB

TIMERS_MAX = 16
TIMER_MIN_MS = 1_000
TIMER_MAX_MS = 24 * 3600 * 1000
SUBSCRIPTIONS_MAX = 16
PATTERN_MAX_CHARS = 256
RANDOM_MAX_BYTES = 4096
# sha256_digest: at most this much input a call, and fuel charged for it so that hashing is
# bounded by the call's fuel like guest work (about 1 M fuel per MiB, where SHA-256 compiled
# into a guest costs ~164 M).
SHA256_MAX_BYTES = 64 * MIB
SHA256_FUEL_BASE = 1_000
SHA256_FUEL_PER_BYTE = 1
# The crypto and barrier functions (ABI version 3): at most this much input a call, paid for in
# fuel like sha256_digest (OpenSSL's AES-GCM and libsodium's XChaCha20 run at ~1-3 GB/s here).
CRYPTO_MAX_BYTES = 4 * MIB
CRYPTO_FUEL_BASE = 10_000
CRYPTO_FUEL_PER_BYTE = 1
# A plugin's log line (sandbox/logs.py): at most this much of a message is read, and its
# escaped text is cut at so many characters; each plugin may log so many lines and bytes a
# second (a second's worth at once), and drops are reported at most once an interval.
LOG_LINE_MAX_BYTES = 4096
LOG_LINE_MAX_CHARS = 4096
LOG_LINES_PER_S = 100
LOG_BYTES_PER_S = 64 * 1024
LOG_REPORT_INTERVAL_S = 10.0
NAME_MAX_CHARS = 128
GUEST_OUTPUT_MAX_BYTES = FRAME_MAX_BYTES  # an answer goes back in one frame
# A batch is one Raft entry: no bigger than a client's whole request frame may be.
BATCH_MAX_BYTES = FRAME_MAX_BYTES

# Decoding what a guest hands over (call output, msgpack arguments of host functions): it is
# walked first and refused when its objects would take more than this (sandbox/decode.py).
DECODE_DEPTH_MAX = 32
DECODE_BYTES_PER_BYTE = 16
DECODE_SLACK_BYTES = 4 * MIB
DECODE_MAX_BYTES = 128 * MIB

# Epoch interruption: the ticker advances the engine's epoch this often; a call's wall-clock
# deadline is counted in ticks, so timeouts are enforced to within one tick. Guest code also
# holds the GIL for at most one tick before giving it up (sandbox/_guestcall.c).
EPOCH_TICK_S = 0.001

# Failure policy (documented in docs/HOST_ABI.md): this many traps or timeouts within the
# window put the plugin in Failed; health checks failing move Ready <-> Degraded.
FAILURES_TO_FAIL = 5
FAILURE_WINDOW_S = 60.0
SHUTDOWN_TIMEOUT_S = 5.0
HEALTH_TIMEOUT_S = 5.0
LATENCY_SAMPLES = 1024
