"""Writes a benchmark's table into its own section of benchmarks/README.md."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"
HEADER = "# Benchmarks\n\nEach section is written by the program named in it; rerun it to refresh.\n"


def write_section(name: str, title: str, body: str, readme: Path = README) -> None:
    text = readme.read_text() if readme.exists() else HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n## {title}\n\n`python benchmarks/{name}.py`\n\n{body}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text)
