"""The plugin author's toolchain behind `cargo aspen-plugin` (init, check, build, keygen, sign,
verify), and the Rust guest SDK it points new projects at (aspen/guest_sdk).

Public names: run (the CLI), Project, check_project, find_toolchain, render, TEMPLATES, SDK_DIR.
"""

from aspen.toolchain.check import check_project
from aspen.toolchain.cli import run
from aspen.toolchain.project import SDK_DIR, Project
from aspen.toolchain.rust import find_toolchain
from aspen.toolchain.templates import TEMPLATES, render

__all__ = ["SDK_DIR", "TEMPLATES", "Project", "check_project", "find_toolchain", "render", "run"]
