"""The two dependencies whose internals we rely on are pinned to the versions the code was
written against: cluster/raft.py (pysyncobj) and sandbox/raw.py (wasmtime-py) each refuse to
import under another, and nothing else touches those internals."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from cluster import raft
from sandbox import raw

ROOT = Path(__file__).resolve().parents[2]


def _requirement(name: str) -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d for d in deps if re.match(rf"{name}\b", d))


def test_the_pins_are_the_versions_the_code_checks() -> None:
    assert _requirement("pysyncobj") == f"pysyncobj=={raft.PYSYNCOBJ_WRITTEN_FOR}"
    major = int(raw.WASMTIME_WRITTEN_FOR)
    assert _requirement("wasmtime") == f"wasmtime>={major},<{major + 1}"


def test_private_members_are_reached_from_one_file_each() -> None:
    def users(pattern: str) -> set[str]:
        out = subprocess.run(["git", "grep", "-l", "-E", pattern, "--", "*.py", ":!tests"], cwd=ROOT,
                             capture_output=True, text=True).stdout
        return set(out.split())

    assert users(r"_SyncObj__|\._isLeader|\._getLeader|getStatus\(") == {"cluster/raft.py"}
    assert users(r"wasmtime import _|\._context\(\)|\._func\b|\._memory\b|_from_ptr") == {"sandbox/raw.py"}
