"""What the toolchain refuses, and that it says why."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from aspen.toolchain import rust
from aspen.toolchain.cli import run
from aspen.toolchain.project import Project
from tests.toolchain.conftest import EXAMPLES


def _init(tmp_path: Path, name: str = "p", template: str = "kv") -> Path:
    assert run(["init", name, "--template", template, "--dir", str(tmp_path)]) == 0
    return tmp_path / name


def test_init_refuses_bad_names_priorities_and_existing_dirs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["init", "9lives", "--dir", str(tmp_path)]) == 1
    assert "a letter, then letters" in capsys.readouterr().err
    assert run(["init", "ok", "--priority", "12", "--dir", str(tmp_path)]) == 1
    assert "900 to 999" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert run(["init", "taken", "--dir", str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run(["init", "ok", "--template", "fancy", "--dir", str(tmp_path)])
    assert exc.value.code == 2


def test_check_lists_every_manifest_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = _init(tmp_path)
    raw = json.loads((project / "plugin.json").read_text())
    (project / "plugin.json").write_text(
        json.dumps({**raw, "priority": 5, "handles": [], "kv_prefixes": [""]})
    )
    assert run(["check", "--path", str(project)]) == 1
    err = capsys.readouterr().err
    assert "priority: 5 is outside 900 to 999" in err
    assert "handles: list at least one request type" in err
    assert "kv_prefixes: a prefix must be a non-empty string" in err
    # A claim no node would accept, whatever else is installed.
    (project / "plugin.json").write_text(json.dumps({**raw, "kv_prefixes": ["__plugin:"]}))
    assert run(["check", "--path", str(project)]) == 1
    assert "PREFIX_CONFLICT" in capsys.readouterr().err


def test_check_finds_layout_errors_and_permission_mismatches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _init(tmp_path)
    lib = project / "src" / "lib.rs"
    source = lib.read_text()
    lib.write_text(
        source.replace("register_plugin!(Plugin);", "") + '\nfn later() { let _ = blob_put_data(b"x"); }\n'
    )
    cargo_toml = project / "Cargo.toml"
    cargo_toml.write_text(
        cargo_toml.read_text().replace('crate-type = ["cdylib", "rlib"]', 'crate-type = ["rlib"]')
    )
    raw = json.loads((project / "plugin.json").read_text())
    raw["permissions"]["signing"] = True
    raw["handles"].append("Ping")
    (project / "plugin.json").write_text(json.dumps(raw))
    assert run(["check", "--path", str(project)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "register_plugin! must appear exactly once (found 0)" in text
    assert 'crate-type must include "cdylib"' in text
    assert "calls blob_put_data, which needs the blob_write permission" in text
    assert "grants signing but src/lib.rs calls no function that needs it" in text
    assert "the node answers Ping itself" in text


def test_build_refuses_a_module_a_node_would_refuse(tmp_path: Path, wasm_toolchain: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    project = _init(tmp_path, "wasi-ish")
    lib = project / "src" / "lib.rs"
    lib.write_text(lib.read_text() + '''
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" { fn fd_write(a: i32, b: i32, c: i32, d: i32) -> i32; }
#[no_mangle]
pub extern "C" fn uses_wasi() -> i32 { unsafe { fd_write(1, 0, 0, 0) } }
''')
    assert run(["build", "--release", "--path", str(project)]) == 1
    assert "a node would refuse this module: UNKNOWN_IMPORT" in capsys.readouterr().err


def test_build_refuses_info_that_disagrees_with_the_manifest(tmp_path: Path, wasm_toolchain: None,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    project = _init(tmp_path, "named")
    lib = project / "src" / "lib.rs"
    lib.write_text(
        lib.read_text().replace('pub const NAME: &str = "named";', 'pub const NAME: &str = "other";')
    )
    assert run(["build", "--release", "--path", str(project)]) == 1
    assert "plugin_info name is 'other', plugin.json says 'named'" in capsys.readouterr().err


def test_no_toolchain_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "rustc"
    fake.write_text(f"#!/bin/sh\necho {tmp_path}\n")  # a sysroot without the wasm32 std
    fake.chmod(0o755)
    assert not rust.has_wasm_target(str(fake))
    monkeypatch.setattr(rust, "_candidates", lambda: [(str(fake), str(fake), "test")])
    with pytest.raises(rust.ToolchainError) as exc:
        rust.find_toolchain()
    assert "apt-get install rustc cargo libstd-rust-dev-wasm32 lld" in str(exc.value)
    assert "rustup target add wasm32-unknown-unknown" in str(exc.value)


def test_a_toolchain_without_its_wasm_linker_does_not_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Debian's libstd-rust-dev-wasm32 without lld-NN (only recommended): the std is there, but
    # /usr/bin/rust-lld dangles and every build would fail at the link step.
    (tmp_path / "lib" / "rustlib" / rust.TARGET / "lib").mkdir(parents=True)
    fake = tmp_path / "rustc"
    fake.write_text(f"#!/bin/sh\necho {tmp_path}\n")
    fake.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rust-lld").symlink_to(tmp_path / "lld-14")  # dangling, as Debian leaves it
    monkeypatch.setenv("PATH", str(bin_dir))
    assert not rust.has_wasm_target(str(fake))
    (tmp_path / "lld-14").write_text("#!/bin/sh\n")
    (tmp_path / "lld-14").chmod(0o755)
    assert rust.has_wasm_target(str(fake))  # the link resolves: on PATH
    (bin_dir / "rust-lld").unlink()
    shipped = tmp_path / "lib" / "rustlib" / "x86_64-unknown-linux-gnu" / "bin"
    shipped.mkdir(parents=True)
    (shipped / "rust-lld").write_text("")
    assert rust.has_wasm_target(str(fake))  # rustup's, in the sysroot


def test_keys_and_signatures_refusals(tmp_path: Path, examples: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "echo"
    shutil.copytree(EXAMPLES / "echo-plugin", project, ignore=shutil.ignore_patterns("target"))
    wasm = tmp_path / "echo.wasm"
    shutil.copy(examples["echo-plugin"], wasm)
    key = tmp_path / "k" / "signing"
    assert run(["keygen", "--output", str(key)]) == 0
    assert run(["keygen", "--output", str(key)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert run(["keygen", "--output", str(key), "--force"]) == 0
    public = key.with_name("signing.pub").read_text().strip()

    # Unsigned.
    assert run(["verify", "--path", str(project), "--wasm", str(wasm)]) == 1
    assert "SIGNATURE_MISSING" in capsys.readouterr().err
    # A key others can read is refused, as ssh does.
    os.chmod(key, 0o644)
    assert run(["sign", "--key", str(key), "--path", str(project), "--wasm", str(wasm)]) == 1
    assert "readable by others" in capsys.readouterr().err
    os.chmod(key, 0o600)
    assert run(["sign", "--key", str(key), "--path", str(project), "--wasm", str(wasm)]) == 0
    assert run(["verify", "--path", str(project), "--wasm", str(wasm), "--key", public]) == 0
    # Signed by someone else than the key asked for.
    assert run(["verify", "--path", str(project), "--wasm", str(wasm), "--key", "ab" * 32]) == 1
    assert "SIGNATURE_UNTRUSTED" in capsys.readouterr().err
    # The manifest edited after signing: every signed field is covered, and the one edited is named.
    manifest = project / "plugin.json"
    signed = manifest.read_text()
    for edit, field in (
        ({"kv_prefixes": ["__plugin:"]}, "kv_prefixes"),
        ({"priority": 900}, "priority"),
        ({"permissions": {"signing": True}}, "permissions"),
        ({"fuel_limit": 7}, "fuel_limit"),
    ):
        manifest.write_text(json.dumps({**json.loads(signed), **edit}))
        assert run(["verify", "--path", str(project), "--wasm", str(wasm)]) == 1
        err = capsys.readouterr().err
        assert "SIGNATURE_INVALID" in err and f"{field} changed after signing" in err, err
        # `check` says so too, about the newest build (a warning: the project is still valid).
        built = Project(project).wasm_path(True)
        built.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wasm, built)
        run(["check", "--path", str(project)])
        assert (
            f"warning: the signature no longer covers plugin.json and {built.name}: {field} changed after "
            "signing"
            in capsys.readouterr().out
        )
    manifest.write_text(signed)
    # Tampered after signing.
    wasm.write_bytes(wasm.read_bytes() + b"\x00")
    assert run(["verify", "--path", str(project), "--wasm", str(wasm)]) == 1
    assert "SIGNATURE_INVALID" in capsys.readouterr().err
