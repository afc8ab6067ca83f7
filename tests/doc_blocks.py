"""The runnable blocks of a doc: a `<!-- run -->` line, then a fenced bash or python block.

Tests run them as written (tests/toolchain/test_docs.py, tests/node/test_operations_doc.py), so
the commands a doc shows cannot drift from what the code does.
"""

from __future__ import annotations

import re
from pathlib import Path

RUN_BLOCK = re.compile(r"<!-- run -->\n```(bash|python)\n(.*?)```", re.S)
RUN_MARKER = re.compile(r"^<!-- run -->$", re.M)


def run_blocks(doc: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"bash": [], "python": []}
    for lang, code in RUN_BLOCK.findall(doc.read_text()):
        found[lang].append(code)
    return found


def marker_count(doc: Path) -> int:
    return len(RUN_MARKER.findall(doc.read_text()))
