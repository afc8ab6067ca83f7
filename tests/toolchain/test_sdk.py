"""The Rust guest SDK's own tests (msgpack, JSON, request parsing), natively."""

from __future__ import annotations

from pathlib import Path

from aspen.toolchain.project import SDK_DIR
from tests.toolchain.conftest import cargo


def test_sdk_unit_tests_pass(tmp_path: Path) -> None:
    r = cargo("test", "--target-dir", str(tmp_path / "target"), cwd=SDK_DIR)
    assert "test result: ok" in r.stdout


def test_sdk_has_no_dependencies() -> None:
    text = (SDK_DIR / "Cargo.toml").read_text()
    deps = text.split("[dependencies]", 1)[1].split("[", 1)[0] if "[dependencies]" in text else ""
    assert not deps.strip(), "the SDK must build without the crates registry"
