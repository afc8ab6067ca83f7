"""NATS-style subjects: `*` matches one segment, `>` (last only) matches one or more."""

from __future__ import annotations

from sandbox.limits import PATTERN_MAX_CHARS


def pattern_problem(pattern: object) -> str | None:
    if not isinstance(pattern, str) or not pattern:
        return "pattern must be a non-empty string"
    if len(pattern) > PATTERN_MAX_CHARS:
        return f"pattern is over {PATTERN_MAX_CHARS} characters"
    parts = pattern.split(".")
    for i, part in enumerate(parts):
        if not part:
            return "pattern has an empty segment"
        if part == ">" and i != len(parts) - 1:
            return "'>' may only be the last segment"
        if part not in ("*", ">") and ("*" in part or ">" in part):
            return "wildcards must be whole segments"
    return None


def subject_matches(pattern: str, subject: str) -> bool:
    p = pattern.split(".")
    s = subject.split(".")
    for i, part in enumerate(p):
        if part == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if part != "*" and part != s[i]:
            return False
    return len(p) == len(s)
