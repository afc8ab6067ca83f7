"""The installed package's version, for every tool's --version."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def aspen_version() -> str:
    try:
        return version("aspen")
    except PackageNotFoundError:
        return "unknown (not installed)"
