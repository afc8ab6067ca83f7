"""Op validation: the one set of checks shared by the node's edge and the state machine.

Every checker returns None when its op can be applied, else an error Result. Checkers never
raise, whatever they are given: apply runs them on entries straight from the Raft log.
Lists and tuples are both accepted as sequences (msgpack decodes tuples as lists).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage.errors import StorageCode, StorageError
from storage.hashing import is_blob_hash
from storage.limits import (
    BATCH_OPS_MAX,
    BLOB_MAX_BYTES,
    CONDITIONS_MAX,
    DELETE_RANGE_MAX,
    KEY_MAX_BYTES,
    LEASE_ID_MAX,
    LEASE_TTL_MAX_S,
    META_TABLE_MAX_BYTES,
    RESERVED_KEY_PREFIX,
    VALUE_MAX_BYTES,
)

Result = tuple[Any, ...]  # ("ok", dict) | ("err", code, message, details)
Check = Callable[[Any], "Result | None"]

_SEQ = (list, tuple)
_INVALID = StorageCode.INVALID_REQUEST.value


def err(code: StorageCode, message: str, **details: Any) -> Result:
    return ("err", code.value, message, details)


def _invalid(message: str) -> Result:
    return ("err", _INVALID, message, {})


def _utf8_len(text: str) -> int:
    """UTF-8 length, or -1 when the text cannot be encoded (lone surrogates)."""
    if text.isascii():  # O(1) in CPython: skips the encode for the common case
        return len(text)
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return -1


def check_key(key: Any, what: str = "key") -> Result | None:
    if type(key) is not str:
        return _invalid(f"{what}: must be a string")
    size = _utf8_len(key)
    if size <= 0:
        return _invalid(f"{what}: must be non-empty valid UTF-8")
    if size > KEY_MAX_BYTES:
        return err(StorageCode.KEY_TOO_LARGE, f"{what}: {size} UTF-8 bytes is over {KEY_MAX_BYTES}")
    if key.startswith(RESERVED_KEY_PREFIX):
        return err(StorageCode.RESERVED_KEY, f"{what}: {RESERVED_KEY_PREFIX!r} is reserved for the cluster")
    return None


def check_value(value: Any, what: str = "value") -> Result | None:
    if type(value) is not bytes:
        return _invalid(f"{what}: must be bytes")
    if len(value) > VALUE_MAX_BYTES:
        return err(StorageCode.VALUE_TOO_LARGE, f"{what}: {len(value)} bytes is over {VALUE_MAX_BYTES}")
    return None


def _check_optional_value(value: Any, what: str) -> Result | None:
    return None if value is None else check_value(value, what)


def _arity(op: Any, args: int) -> Result | None:
    if len(op) != args + 1:
        return _invalid(f"{op[0]}: takes {args} argument(s), got {len(op) - 1}")
    return None


def _check_batch_ops(ops: Any) -> Result | None:
    if type(ops) not in _SEQ:
        return _invalid("ops: must be a list")
    if len(ops) > BATCH_OPS_MAX:
        return _invalid(f"ops: {len(ops)} is over {BATCH_OPS_MAX} per batch")
    for i, sub in enumerate(ops):
        if type(sub) not in _SEQ or not sub:
            return _invalid(f"ops[{i}]: must be [put, key, value] or [del, key]")
        name = sub[0]
        if name == "put" and len(sub) == 3:
            bad = check_key(sub[1], f"ops[{i}].key") or check_value(sub[2], f"ops[{i}].value")
        elif name == "del" and len(sub) == 2:
            bad = check_key(sub[1], f"ops[{i}].key")
        else:
            return _invalid(f"ops[{i}]: must be [put, key, value] or [del, key]")
        if bad is not None:
            return bad
    return None


def _check_conditions(conditions: Any) -> Result | None:
    if type(conditions) not in _SEQ:
        return _invalid("conditions: must be a list")
    if len(conditions) > CONDITIONS_MAX:
        return _invalid(f"conditions: {len(conditions)} is over {CONDITIONS_MAX}")
    for i, cond in enumerate(conditions):
        if type(cond) not in _SEQ or not cond:
            return _invalid(f"conditions[{i}]: must be [eq, key, value], [exists, key] or [absent, key]")
        kind = cond[0]
        if kind == "eq" and len(cond) == 3:
            bad = check_key(cond[1], f"conditions[{i}].key") or check_value(cond[2], f"conditions[{i}].value")
        elif (kind == "exists" or kind == "absent") and len(cond) == 2:
            bad = check_key(cond[1], f"conditions[{i}].key")
        else:
            return _invalid(f"conditions[{i}]: must be [eq, key, value], [exists, key] or [absent, key]")
        if bad is not None:
            return bad
    return None


def _check_meta_address(table: Any, key: Any) -> Result | None:
    # "/" would make the commit event's "table/key" ambiguous.
    if type(table) is not str or not 0 < _utf8_len(table) <= META_TABLE_MAX_BYTES or "/" in table:
        return _invalid(f"table: 1 to {META_TABLE_MAX_BYTES} UTF-8 bytes without '/'")
    if type(key) is not str:
        return _invalid("meta key: must be a string")
    size = _utf8_len(key)
    if size <= 0:
        return _invalid("meta key: must be non-empty valid UTF-8")
    if size > KEY_MAX_BYTES:
        return err(StorageCode.KEY_TOO_LARGE, f"meta key: {size} UTF-8 bytes is over {KEY_MAX_BYTES}")
    return None


# -- one checker per op ------------------------------------------------------------------------


def check_put(op: Any) -> Result | None:
    return _arity(op, 2) or check_key(op[1]) or check_value(op[2])


def check_del(op: Any) -> Result | None:
    return _arity(op, 1) or check_key(op[1])


def check_delrange(op: Any) -> Result | None:
    """["delrange", prefix, limit]: delete up to `limit` keys starting with `prefix` (empty:
    every key), in key order, as one write. Bounded so one log entry's apply stays short; the
    caller repeats while the result says more remain."""
    if bad := _arity(op, 2):
        return bad
    _, prefix, limit = op
    if type(prefix) is not str:
        return _invalid("prefix: must be a string")
    size = _utf8_len(prefix)
    if size < 0:
        return _invalid("prefix: must be valid UTF-8")
    if size > KEY_MAX_BYTES:
        return err(StorageCode.KEY_TOO_LARGE, f"prefix: {size} UTF-8 bytes is over {KEY_MAX_BYTES}")
    if prefix.startswith(RESERVED_KEY_PREFIX):
        return err(StorageCode.RESERVED_KEY, f"prefix: {RESERVED_KEY_PREFIX!r} is reserved for the cluster")
    if type(limit) is not int or not 0 < limit <= DELETE_RANGE_MAX:
        return _invalid(f"limit: an integer from 1 to {DELETE_RANGE_MAX}")
    return None


def check_lease_id(lease_id: Any, what: str = "lease") -> Result | None:
    if type(lease_id) is not int or not 0 < lease_id <= LEASE_ID_MAX:
        return _invalid(f"{what}: a lease id from 1 to 2^63-1")
    return None


def check_lease_grant(op: Any) -> Result | None:
    """["lease_grant", id, ttl_s]: the id is chosen by the node that proposes it."""
    if bad := _arity(op, 2):
        return bad
    if type(op[2]) is not int or not 0 < op[2] <= LEASE_TTL_MAX_S:
        return _invalid(f"ttl_s: an integer from 1 to {LEASE_TTL_MAX_S}")
    return check_lease_id(op[1], "id")


def check_lease_revoke(op: Any) -> Result | None:
    """["lease_revoke", id]: the lease and every key attached to it go, as one write."""
    return _arity(op, 1) or check_lease_id(op[1], "id")


def check_lput(op: Any) -> Result | None:
    """["lput", key, value, lease]: a put that attaches the key to a lease."""
    return _arity(op, 3) or check_key(op[1]) or check_value(op[2]) or check_lease_id(op[3])


def check_cas(op: Any) -> Result | None:
    return (
        _arity(op, 3)
        or check_key(op[1])
        or _check_optional_value(op[2], "expected")
        or check_value(op[3], "new_value")
    )


def check_cad(op: Any) -> Result | None:
    return _arity(op, 2) or check_key(op[1]) or check_value(op[2], "expected")


def check_batch(op: Any) -> Result | None:
    return _arity(op, 1) or _check_batch_ops(op[1])


def check_cbatch(op: Any) -> Result | None:
    return _arity(op, 2) or _check_conditions(op[1]) or _check_batch_ops(op[2])


def check_noop(op: Any) -> Result | None:
    return _arity(op, 0)


def check_meta_put(op: Any) -> Result | None:
    return _arity(op, 3) or _check_meta_address(op[1], op[2]) or check_value(op[3])


def check_meta_del(op: Any) -> Result | None:
    return _arity(op, 2) or _check_meta_address(op[1], op[2])


def check_meta_cas(op: Any) -> Result | None:
    return (
        _arity(op, 4)
        or _check_meta_address(op[1], op[2])
        or _check_optional_value(op[3], "expected")
        or _check_optional_value(op[4], "new")
    )


META_CAS_ALL_MAX = 16


def check_meta_cas_all(op: Any) -> Result | None:
    """["meta_cas_all", [[table, key, expected|None, new|None], ...]]: every expectation holds
    and every write applies, or none does (a registry change checked against a version row)."""
    if bad := _arity(op, 1):
        return bad
    items = op[1]
    if type(items) not in _SEQ or not 0 < len(items) <= META_CAS_ALL_MAX:
        return _invalid(f"meta_cas_all: a list of 1 to {META_CAS_ALL_MAX} [table, key, expected, new]")
    seen: set[tuple[Any, Any]] = set()
    for i, item in enumerate(items):
        if type(item) not in _SEQ or len(item) != 4:
            return _invalid(f"meta_cas_all[{i}]: must be [table, key, expected, new]")
        bad = (_check_meta_address(item[0], item[1]) or _check_optional_value(item[2], "expected")
               or _check_optional_value(item[3], "new"))
        if bad is not None:
            return bad
        if (item[0], item[1]) in seen:
            return _invalid(f"meta_cas_all[{i}]: {item[0]}/{item[1]} is listed twice")
        seen.add((item[0], item[1]))
    return None


def check_blob_add(op: Any) -> Result | None:
    if bad := _arity(op, 3):
        return bad
    _, blob_hash, size_bytes, holder = op
    if not is_blob_hash(blob_hash):
        return _invalid("hash: must be 64 lowercase hex characters (BLAKE3)")
    if type(size_bytes) is not int or not 0 <= size_bytes <= BLOB_MAX_BYTES:
        return _invalid(f"size: an integer from 0 to {BLOB_MAX_BYTES}")
    if type(holder) is not int or holder <= 0:
        return _invalid("holder: a positive node id")
    return None


TAG_ORIGIN_MAX_CHARS = 128
TAG_DEPTH_MAX = 64
TAGGABLE = frozenset({"put", "del", "cas", "cad", "batch", "cbatch"})


def check_tagged(op: Any) -> Result | None:
    """["tagged", origin, depth, op]: a KV write made by a plugin (origin) at a hook depth; the
    tag rides in the log so every node can apply the hook loop rule (aspen/plugins/hooks.py)."""
    if bad := _arity(op, 3):
        return bad
    _, origin, depth, inner = op
    if type(origin) is not str or not 0 < len(origin) <= TAG_ORIGIN_MAX_CHARS:
        return _invalid(f"tagged: origin must be 1 to {TAG_ORIGIN_MAX_CHARS} characters")
    if type(depth) is not int or not 0 <= depth <= TAG_DEPTH_MAX:
        return _invalid(f"tagged: depth must be an integer from 0 to {TAG_DEPTH_MAX}")
    if op_name(inner) not in TAGGABLE:
        return _invalid(f"tagged: the inner op must be one of {', '.join(sorted(TAGGABLE))}")
    return check_op(inner)


CHECKS: dict[str, Check] = {
    "put": check_put,
    "del": check_del,
    "delrange": check_delrange,
    "lease_grant": check_lease_grant,
    "lease_revoke": check_lease_revoke,
    "lput": check_lput,
    "cas": check_cas,
    "cad": check_cad,
    "batch": check_batch,
    "cbatch": check_cbatch,
    "noop": check_noop,
    "meta_put": check_meta_put,
    "meta_del": check_meta_del,
    "meta_cas": check_meta_cas,
    "meta_cas_all": check_meta_cas_all,
    "blob_add": check_blob_add,
    "tagged": check_tagged,
}


def op_name(op: Any) -> str | None:
    """The op's name when op is a non-empty sequence starting with a string, else None."""
    if type(op) not in _SEQ or not op or type(op[0]) is not str:
        return None
    return op[0]


def check_op(op: Any) -> Result | None:
    name = op_name(op)
    if name is None:
        return _invalid("op: must be a non-empty list starting with the op's name")
    check = CHECKS.get(name)
    if check is None:
        return _invalid(f"unknown op {name[:64]!r}")
    return check(op)


def _as_error(bad: Result | None) -> StorageError | None:
    return None if bad is None else StorageError(StorageCode(bad[1]), bad[2], **bad[3])


def validate_op(op: Any) -> StorageError | None:
    """Why the state machine would refuse this op, or None; for the node, before proposing."""
    return _as_error(check_op(op))


def validate_key(key: Any, what: str = "key") -> StorageError | None:
    return _as_error(check_key(key, what))
