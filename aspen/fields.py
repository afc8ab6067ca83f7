"""Request fields: the one place they are checked, by the node and by plugins' request routing
alike. Each helper raises AspenError naming the field (INVALID_REQUEST, or the bound's code).

Keys and hashes are checked by storage's own checks (storage/ops.py, storage/hashing.py), the
ones apply runs, with their codes mapped onto the wire's (aspen/codes.py).
"""

from __future__ import annotations

from typing import Any

from aspen.codes import STORAGE_TO_WIRE
from storage.errors import StorageError
from storage.hashing import check_hash
from storage.ops import validate_key
from wire.errors import AspenError, ErrorCode


def _name(name: str, where: str | None) -> str:
    return f"{where}.{name}" if where else name


def _invalid(name: str, where: str | None, what: str) -> AspenError:
    return AspenError(ErrorCode.INVALID_REQUEST, f"{_name(name, where)}: {what}")


def require_str(req: dict[str, Any], name: str, *, where: str | None = None) -> str:
    """A key field: a UTF-8 str of 1 to 1,024 bytes outside the reserved prefix.

    Raises INVALID_REQUEST (missing, not a str, empty), KEY_TOO_LARGE or RESERVED_KEY.
    """
    value = req.get(name)
    if value is None:
        raise _invalid(name, where, "is required")
    error = validate_key(value, _name(name, where))
    if error is not None:
        raise AspenError(STORAGE_TO_WIRE[error.code], error.message)
    return value


def optional_str(req: dict[str, Any], name: str, max_chars: int = 4096) -> str | None:
    value = req.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_chars:
        raise _invalid(name, None, f"must be a string of at most {max_chars} characters")
    return value


def require_bytes(
    req: dict[str, Any],
    name: str,
    *,
    where: str | None = None,
    max_bytes: int | None = None,
    code: ErrorCode = ErrorCode.VALUE_TOO_LARGE,
) -> bytes:
    value = req.get(name)
    if value is None:
        raise _invalid(name, where, "is required")
    if not isinstance(value, bytes):
        raise _invalid(name, where, "must be bytes (msgpack bin)")
    if max_bytes is not None and len(value) > max_bytes:
        raise AspenError(code, f"{_name(name, where)}: {len(value)} bytes is over {max_bytes}")
    return value


def optional_bytes(req: dict[str, Any], name: str) -> bytes | None:
    value = req.get(name)
    if value is not None and not isinstance(value, bytes):
        raise _invalid(name, None, "must be bytes (msgpack bin) or nil")
    return value


def optional_bool(req: dict[str, Any], name: str, default: bool) -> bool:
    value = req.get(name, default)
    if not isinstance(value, bool):
        raise _invalid(name, None, "must be a boolean")
    return value


def require_int(req: dict[str, Any], name: str, lo: int, hi: int, *, where: str | None = None) -> int:
    value = req.get(name)
    # bool is an int subclass in Python but not an integer on the wire.
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _invalid(name, where, f"must be an integer from {lo} to {hi}")
    return value


def optional_int(req: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = req.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _invalid(name, None, f"must be an integer from {lo} to {hi}")
    return value


def require_list(req: dict[str, Any], name: str, max_items: int) -> list[Any]:
    value = req.get(name)
    if not isinstance(value, list):
        raise _invalid(name, None, "must be a list")
    if len(value) > max_items:
        raise _invalid(name, None, f"at most {max_items} items")
    return value


def require_hash(req: dict[str, Any], name: str) -> str:
    try:
        return check_hash(req.get(name))
    except StorageError as exc:
        raise AspenError(STORAGE_TO_WIRE[exc.code], exc.message) from None
