"""How aspen-cli shows results: human text by default, JSON with --json."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aspen.cli.registry import UsageError


def to_jsonable(value: Any) -> Any:
    """bytes become text when they are UTF-8, else {"base64": ...}; nothing is lost."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """JSON has no bytes: {"base64": "..."} or {"utf8": "..."} stands for a msgpack bin."""
    if isinstance(value, dict):
        if set(value) == {"base64"}:
            try:
                return base64.b64decode(str(value["base64"]), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise UsageError(f"not base64: {str(value['base64'])[:64]!r} ({exc})") from None
        if set(value) == {"utf8"}:
            return str(value["utf8"]).encode()
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def human(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return f"{value.hex()} (not UTF-8: {len(value)} bytes shown as hex)"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"  # JSON's spelling, as --json prints it
    return str(value)


def render(result: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(to_jsonable(result), sort_keys=True)
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        return "\n".join(f"{k}: {human(v)}" for k, v in result.items() if k != "type")
    return human(result)
