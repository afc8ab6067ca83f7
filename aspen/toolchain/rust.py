"""Find a Rust toolchain that can build for wasm32-unknown-unknown, and run cargo with it.

Order: $ASPEN_CARGO/$ASPEN_RUSTC when set; the cargo that invoked us ($CARGO, as cargo sets it
for a subcommand) or the `cargo` on PATH, with the `rustc` beside it; then Debian's
/usr/bin/cargo and /usr/bin/rustc (`apt-get install rustc cargo libstd-rust-dev-wasm32 lld`),
which is how a machine whose rustup cannot download the target still builds. A toolchain
counts only when its sysroot has the target's standard library and its linker is there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

TARGET = "wasm32-unknown-unknown"
PROBE_TIMEOUT_S = 30.0
BUILD_TIMEOUT_S = 900.0
# Cargo.lock format 4 is read only by cargo 1.78 and newer.
LOCKFILE_V4_CARGO = (1, 78)

INSTALL_HINT = (
    "no Rust toolchain with the wasm32-unknown-unknown target was found. Install one:\n"
    "  rustup target add wasm32-unknown-unknown          (with rustup)\n"
    "  apt-get install rustc cargo libstd-rust-dev-wasm32 lld  (Debian/Ubuntu, no download from rustup "
    "needed)\n"
    "or point ASPEN_CARGO and ASPEN_RUSTC at a cargo and rustc that have it."
)


class ToolchainError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Toolchain:
    cargo: str
    rustc: str
    origin: str

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["RUSTC"] = self.rustc
        # A rustup proxy pins its own toolchain through these; the chosen one must win.
        env.pop("RUSTUP_TOOLCHAIN", None)
        env.pop("RUSTC_WRAPPER", None)
        return env

    def cargo_version(self) -> tuple[int, int]:
        return _version(self.cargo)


def _version(binary: str) -> tuple[int, int]:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (0, 0)
    m = re.search(r"(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def has_wasm_target(rustc: str) -> bool:
    try:
        sysroot = subprocess.run(
            [rustc, "--print", "sysroot"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
            env={k: v for k, v in os.environ.items() if k != "RUSTUP_TOOLCHAIN"},
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return (
        bool(sysroot)
        and (Path(sysroot) / "lib" / "rustlib" / TARGET / "lib").is_dir()
        and has_wasm_linker(sysroot)
    )


def has_wasm_linker(sysroot: str) -> bool:
    """rustc links wasm32 with `rust-lld`: rustup ships it in the sysroot; Debian's
    libstd-rust-dev-wasm32 puts a /usr/bin/rust-lld link to lld-NN, a package it only recommends
    (so without it the link dangles and every build fails at the link step)."""
    shipped = any(Path(sysroot).glob("lib/rustlib/*/bin/rust-lld"))
    return shipped or shutil.which("rust-lld") is not None


def _candidates() -> list[tuple[str | None, str | None, str]]:
    out: list[tuple[str | None, str | None, str]] = []
    if os.environ.get("ASPEN_CARGO") or os.environ.get("ASPEN_RUSTC"):
        out.append((os.environ.get("ASPEN_CARGO"), os.environ.get("ASPEN_RUSTC"), "ASPEN_CARGO/ASPEN_RUSTC"))
    invoking = os.environ.get("CARGO")
    if invoking:
        beside = Path(invoking).with_name("rustc")
        out.append(
            (invoking, str(beside) if beside.exists() else shutil.which("rustc"), "the invoking cargo")
        )
    out.append((shutil.which("cargo"), shutil.which("rustc"), "PATH"))
    out.append(("/usr/bin/cargo", "/usr/bin/rustc", "Debian packages"))
    return out


def find_toolchain() -> Toolchain:
    seen: set[tuple[str, str]] = set()
    for cargo, rustc, origin in _candidates():
        if not cargo or not rustc or not Path(cargo).exists() or not Path(rustc).exists():
            continue
        if (cargo, rustc) in seen:
            continue
        seen.add((cargo, rustc))
        if has_wasm_target(rustc):
            return Toolchain(cargo, rustc, origin)
    raise ToolchainError(INSTALL_HINT)


def lockfile_too_new(project_dir: Path, toolchain: Toolchain) -> bool:
    lock = project_dir / "Cargo.lock"
    if not lock.exists():
        return False
    return (
        bool(re.search(r"^version = 4$", lock.read_text(), re.M))
        and toolchain.cargo_version() < LOCKFILE_V4_CARGO
    )


def cargo_build(project_dir: Path, toolchain: Toolchain, release: bool) -> subprocess.CompletedProcess[str]:
    """Build for wasm32; cargo's own output goes to our stderr as it comes."""
    if lockfile_too_new(project_dir, toolchain):
        # The plugin has no registry dependencies, so its lock file is derived data: an older
        # cargo rewrites it in the format it reads. The newer one keeps reading that format.
        (project_dir / "Cargo.lock").rename(project_dir / "Cargo.lock.v4")
    args = [toolchain.cargo, "build", "--target", TARGET]
    if release:
        args.append("--release")
    return subprocess.run(args, cwd=project_dir, env=toolchain.env(), text=True, timeout=BUILD_TIMEOUT_S)
