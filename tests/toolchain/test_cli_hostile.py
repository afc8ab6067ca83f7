"""cargo aspen-plugin on hostile input: one `error:` line and a status, never a traceback
(issue 16: verify/sign with a missing --wasm, check/build with a non-UTF-8 plugin.json), and
the wasm found where cargo put it (CARGO_TARGET_DIR, a workspace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aspen.toolchain.cli import run
from aspen.toolchain.project import Project
from aspen.toolchain.rust import TARGET


def _init(tmp_path: Path) -> Path:
    assert run(["init", "p", "--template", "kv", "--dir", str(tmp_path)]) == 0
    return tmp_path / "p"


def test_missing_wasm_and_non_utf8_manifest_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _init(tmp_path)
    capsys.readouterr()
    key = tmp_path / "key"
    assert run(["keygen", "--output", str(key)]) == 0
    for argv in (["verify", "--wasm", "/nonexistent.wasm", "--path", str(project)],
                 ["sign", "--key", str(key), "--wasm", "/nonexistent.wasm", "--path", str(project)]):
        capsys.readouterr()
        assert run(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    (project / "plugin.json").write_bytes(b'{"name": "p\xe9"}')
    for command in ("check", "build", "verify"):
        assert run([command, "--path", str(project)]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and "not UTF-8" in err, (command, err)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        run(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("cargo-aspen-plugin ")


def test_the_wasm_is_looked_for_where_cargo_puts_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = Project(_init(tmp_path / "ws"))
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    assert project.wasm_path(True) == project.root / "target" / TARGET / "release" / "aspen_p.wasm"
    # In a workspace, cargo builds into the workspace's target/.
    (tmp_path / "ws" / "Cargo.toml").write_text('[workspace]\nmembers = ["p"]\n')
    assert project.wasm_path(True) == tmp_path / "ws" / "target" / TARGET / "release" / "aspen_p.wasm"
    monkeypatch.setenv("CARGO_TARGET_DIR", str(tmp_path / "elsewhere"))
    assert project.wasm_path(False) == tmp_path / "elsewhere" / TARGET / "debug" / "aspen_p.wasm"
