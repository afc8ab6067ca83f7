"""The plugin's own Rust tests (base64 against RFC 4648, paths, pruning, ciphertext syntax,
plugin_info against plugin.json), run natively by cargo as CI runs everything else. Its allocator
is the guest SDK's, tested with the SDK (tests/toolchain/test_sdk.py)."""

from __future__ import annotations

from pathlib import Path

from aspen import secrets
from tests.toolchain.conftest import cargo


def test_cargo_test_passes(tmp_path: Path) -> None:
    r = cargo("test", "--target-dir", str(tmp_path / "target"), cwd=secrets.PLUGIN_DIR)
    assert "test result: ok. 9 passed" in r.stdout, r.stdout + r.stderr


def test_no_crates_only_the_guest_sdk() -> None:
    text = (secrets.PLUGIN_DIR / "Cargo.toml").read_text()
    deps = text.split("[dependencies]", 1)[1].split("\n[", 1)[0]
    assert [line.split("=")[0].strip() for line in deps.strip().splitlines()] == ["aspen-wasm-guest-sdk"]
    assert 'path = "../../aspen/guest_sdk"' in deps
    lock = (secrets.PLUGIN_DIR / "Cargo.lock").read_text()
    assert lock.count("[[package]]") == 2 and "source =" not in lock  # nothing from a registry
