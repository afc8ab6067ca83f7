"""The guest ABI, version 3 (docs/HOST_ABI.md is its prose; tests keep the two equal).

Version 2 only adds `sha256_digest`, version 3 only the crypto and barrier functions
(sandbox/cryptofuncs.py): every version-1 and version-2 module links and runs unchanged.

Imports come from module "aspen". Pointers and lengths are i32 offsets into the guest's
exported `memory`. A host function that returns data returns an i64 `(ptr << 32) | len` of a
buffer it allocated with the guest's `aspen_alloc`; the guest owns it and frees it. That
buffer is a msgpack array: [0, value] ok, [1] not found, [2, code, message] error.
"""

from __future__ import annotations

from typing import Any

import msgpack

ABI_VERSION = 3
IMPORT_MODULE = "aspen"

I32, I64 = "i32", "i64"

# name -> (params, results)
IMPORTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "kv_get_value": ((I32, I32), (I64,)),
    "kv_put_value": ((I32, I32, I32, I32), (I64,)),
    "kv_delete_key": ((I32, I32), (I64,)),
    "kv_scan_prefix": ((I32, I32, I32), (I64,)),
    "kv_compare_and_swap": ((I32, I32, I32, I32, I32, I32), (I64,)),
    "kv_batch_write": ((I32, I32), (I64,)),
    "blob_exists": ((I32, I32), (I64,)),
    "blob_get_data": ((I32, I32), (I64,)),
    "blob_put_data": ((I32, I32), (I64,)),
    "is_current_leader": ((), (I64,)),
    "get_leader_id": ((), (I64,)),
    "get_node_id": ((), (I64,)),
    "sign_data": ((I32, I32), (I64,)),
    "verify_signature": ((I32, I32, I32, I32, I32, I32), (I64,)),
    "public_key": ((), (I64,)),
    "get_random_bytes": ((I32,), (I64,)),
    "schedule_timer_on_host": ((I32, I32), (I64,)),
    "cancel_timer_on_host": ((I32, I32), (I64,)),
    "subscribe_hook_events": ((I32, I32), (I64,)),
    "unsubscribe_hook_events": ((I32, I32), (I64,)),
    "log_info_msg": ((I32, I32), ()),
    "log_debug_msg": ((I32, I32), ()),
    "log_warn_msg": ((I32, I32), ()),
    "current_time_ms": ((), (I64,)),
    "hlc_now_ms": ((), (I64,)),
    "sha256_digest": ((I32, I32), (I64,)),  # version 2
    # version 3: vetted crypto (permission `crypto`) and the barrier (permission `barrier`)
    "crypto_aead_seal": ((I32, I32), (I64,)),
    "crypto_aead_open": ((I32, I32), (I64,)),
    "crypto_hmac_sha256": ((I32, I32, I32, I32), (I64,)),
    "crypto_hkdf_sha256": ((I32, I32), (I64,)),
    "crypto_ed25519_public_key": ((I32, I32), (I64,)),
    "crypto_ed25519_sign": ((I32, I32, I32, I32), (I64,)),
    "crypto_ed25519_verify": ((I32, I32, I32, I32, I32, I32), (I64,)),
    "crypto_random_bytes": ((I32,), (I64,)),
    "barrier_seal": ((I32, I32, I32, I32), (I64,)),
    "barrier_open": ((I32, I32, I32, I32), (I64,)),
    "barrier_status": ((), (I64,)),
}

# The permission each import checks first (None: always allowed). The author toolchain's
# `check` uses it to warn about missing or unused grants; docs/HOST_ABI.md's table says the same.
IMPORT_PERMISSIONS: dict[str, str | None] = {
    "kv_get_value": "kv_read",
    "kv_put_value": "kv_write",
    "kv_delete_key": "kv_write",
    "kv_scan_prefix": "kv_read",
    "kv_compare_and_swap": "kv_write",
    "kv_batch_write": "kv_write",
    "blob_exists": "blob_read",
    "blob_get_data": "blob_read",
    "blob_put_data": "blob_write",
    "is_current_leader": "cluster_info",
    "get_leader_id": "cluster_info",
    "get_node_id": None,
    "sign_data": "signing",
    "verify_signature": "signing",
    "public_key": "signing",
    "get_random_bytes": "randomness",
    "schedule_timer_on_host": "timers",
    "cancel_timer_on_host": "timers",
    "subscribe_hook_events": "hooks",
    "unsubscribe_hook_events": "hooks",
    "log_info_msg": None,
    "log_debug_msg": None,
    "log_warn_msg": None,
    "current_time_ms": None,
    "hlc_now_ms": None,
    "sha256_digest": None,
    "crypto_aead_seal": "crypto", "crypto_aead_open": "crypto", "crypto_hmac_sha256": "crypto",
    "crypto_hkdf_sha256": "crypto", "crypto_ed25519_public_key": "crypto", "crypto_ed25519_sign": "crypto",
    "crypto_ed25519_verify": "crypto", "crypto_random_bytes": "crypto",
    "barrier_seal": "barrier", "barrier_open": "barrier", "barrier_status": "barrier",
}

# Guest exports. Lifecycle exports return an i64 (ptr << 32 | len) of a msgpack value in guest
# memory (0 = nothing); the host frees it with aspen_free when the guest exports one.
EXPORT_MEMORY = "memory"
EXPORT_ALLOC = "aspen_alloc"  # (len: i32) -> ptr: i32
EXPORT_FREE = "aspen_free"  # (ptr: i32, len: i32) -> ()
LIFECYCLE_EXPORTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "plugin_info": ((), (I64,)),
    "plugin_init": ((), (I64,)),
    "handle_request": ((I32, I32), (I64,)),
    "plugin_health": ((), (I64,)),
    "plugin_on_timer": ((I32, I32), (I64,)),
    "plugin_on_hook_event": ((I32, I32), (I64,)),
    "plugin_shutdown": ((), (I64,)),
}
REQUIRED_EXPORTS = ("memory", "aspen_alloc", "plugin_info", "handle_request")

TAG_OK, TAG_NOT_FOUND, TAG_ERROR = 0, 1, 2
CAS_EXPECT_ABSENT = -1  # expected_len of kv_compare_and_swap meaning "key must not exist"

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_NOT_FOUND = _packb([TAG_NOT_FOUND])


_OK_BIN8, _OK_BIN16, _OK_BIN32 = b"\x92\x00\xc4", b"\x92\x00\xc5", b"\x92\x00\xc6"


def ok(value: Any = None) -> bytes:
    # Bytes are what kv_get_value and blob_get_data return: their msgpack ([0, bin]) is built
    # by hand, a third of the packer's cost on the hottest host call. Same bytes as _packb.
    if type(value) is bytes:
        n = len(value)
        if n < 0x100:
            return _OK_BIN8 + n.to_bytes(1, "big") + value
        if n < 0x10000:
            return _OK_BIN16 + n.to_bytes(2, "big") + value
        return _OK_BIN32 + n.to_bytes(4, "big") + value
    return _packb([TAG_OK, value])


def not_found() -> bytes:
    return _NOT_FOUND


def error(code: str, message: str) -> bytes:
    return _packb([TAG_ERROR, code, message])


def pack(value: Any) -> bytes:
    return _packb(value)


def unpack(data: bytes) -> Any:
    """Trusted bytes, or guest bytes already walked (sandbox/decode.py): this alone does not
    bound what decoding allocates."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False, max_ext_len=0)
