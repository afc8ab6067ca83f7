"""The author toolchain as authors run it: `cargo aspen-plugin ...` through cargo itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aspen.toolchain.rust import ToolchainError, find_toolchain

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "plugins"
EXAMPLE_NAMES = ("echo-plugin", "kv-counter", "audit-logger", "scheduled-cleanup")
CARGO_TIMEOUT_S = 600


def author_env(home: Path | None = None) -> dict[str, str]:
    """cargo finds `cargo-aspen-plugin` on PATH, as after `pip install` into an active venv."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if home is not None:
        # A test's own HOME (for keygen's default path); rustup and cargo keep their homes.
        real = Path.home()
        env.setdefault("RUSTUP_HOME", str(real / ".rustup"))
        env.setdefault("CARGO_HOME", str(real / ".cargo"))
        env["HOME"] = str(home)
    return env


def any_cargo() -> str:
    """A cargo for `cargo aspen-plugin` and `cargo test` (any target): PATH's, else Debian's."""
    found = shutil.which("cargo") or ("/usr/bin/cargo" if Path("/usr/bin/cargo").exists() else None)
    if found is None:
        pytest.fail("no cargo: .ci/run installs Debian's rustc, cargo and libstd-rust-dev-wasm32")
    return found


def cargo(
    *args: str, cwd: Path, home: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [any_cargo(), *args],
        cwd=cwd,
        env=author_env(home),
        capture_output=True,
        text=True,
        timeout=CARGO_TIMEOUT_S,
    )
    if check:
        assert r.returncode == 0, f"cargo {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="session")
def wasm_toolchain() -> None:
    try:
        find_toolchain()
    except ToolchainError as exc:
        pytest.fail(f"the wasm32 toolchain is missing ({exc}); .ci/run installs it")


@pytest.fixture(scope="session")
def examples(wasm_toolchain: None) -> dict[str, Path]:
    """The example plugins, built once with `cargo aspen-plugin build --release`."""
    out = {}
    for name in EXAMPLE_NAMES:
        cargo("aspen-plugin", "build", "--release", cwd=EXAMPLES / name)
        out[name] = (
            EXAMPLES
            / name
            / "target"
            / "wasm32-unknown-unknown"
            / "release"
            / f"aspen_{name.replace('-', '_')}.wasm"
        )
        assert out[name].is_file()
    return out
