"""docs/DESIGN.md stays true: its module table names every module of every package, and only
modules that exist; every file it names by path exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESIGN = (ROOT / "docs" / "DESIGN.md").read_text()
SOURCE = ("*.py", "*.c", "*.h")


def table() -> dict[str, set[str]]:
    rows = re.findall(r"^\| `([a-z_/]+/)` \| (.+) \|$", DESIGN, re.M)
    return {directory: set(re.findall(r"`([A-Za-z0-9_]+\.(?:py|c|h))`", cells)) for directory, cells in rows}


def test_the_module_table_matches_the_tree() -> None:
    rows = table()
    packages = {p.parent.relative_to(ROOT).as_posix() + "/" for p in ROOT.glob("*/__init__.py")}
    packages |= {p.parent.relative_to(ROOT).as_posix() + "/" for p in ROOT.glob("aspen/*/__init__.py")}
    packages -= {"tests/", "benchmarks/"}
    assert set(rows) == packages, "a row per package"
    for directory, named in rows.items():
        on_disk = {p.name for pattern in SOURCE for p in (ROOT / directory).glob(pattern)} - {"__init__.py"}
        assert named == on_disk, f"{directory}: missing from the table {sorted(on_disk - named)}, " \
                                 f"not in the tree {sorted(named - on_disk)}"


def test_every_path_the_design_names_exists() -> None:
    paths = set(re.findall(r"\b((?:[a-z_]+/)+[A-Za-z0-9_.]+\.(?:py|c|h|md))\b", DESIGN))
    assert paths, "the design names files by path"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing
