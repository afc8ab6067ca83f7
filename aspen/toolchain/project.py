"""A plugin project on disk: Cargo.toml, plugin.json, src/lib.rs, and where its wasm lands."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aspen.toolchain.rust import TARGET

SDK_CRATE = "aspen-wasm-guest-sdk"
SDK_DIR = Path(__file__).resolve().parent.parent / "guest_sdk"


class ProjectError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Project:
    root: Path

    @classmethod
    def find(cls, start: Path) -> Project:
        """The nearest directory at or above `start` with both Cargo.toml and plugin.json."""
        here = start.resolve()
        for d in (here, *here.parents):
            if (d / "Cargo.toml").is_file() and (d / "plugin.json").is_file():
                return cls(d)
        raise ProjectError(f"no plugin project (Cargo.toml and plugin.json) at or above {here}")

    @property
    def cargo_toml(self) -> Path:
        return self.root / "Cargo.toml"

    @property
    def manifest_path(self) -> Path:
        return self.root / "plugin.json"

    @property
    def lib_rs(self) -> Path:
        return self.root / "src" / "lib.rs"

    def cargo(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.cargo_toml.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ProjectError(f"Cargo.toml: {exc}") from None

    def manifest_raw(self, path: Path | None = None) -> Any:
        """plugin.json, or another copy of the manifest at `path`."""
        path = path or self.manifest_path
        try:
            return json.loads(path.read_bytes().decode())
        except FileNotFoundError:
            raise ProjectError(f"{path}: no such file") from None
        except UnicodeDecodeError as exc:
            raise ProjectError(f"{path.name}: not UTF-8: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ProjectError(f"{path.name}: not JSON: {exc}") from None

    def write_manifest(self, raw: dict[str, Any], path: Path | None = None) -> None:
        path = path or self.manifest_path
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(raw, indent=2) + "\n")
        tmp.replace(path)

    @property
    def lib_name(self) -> str:
        cargo = self.cargo()
        name = (cargo.get("lib") or {}).get("name") or (cargo.get("package") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise ProjectError("Cargo.toml: no [package] name")
        return name.replace("-", "_")

    def target_dir(self) -> Path:
        """Where cargo puts the build, as cargo decides it: CARGO_TARGET_DIR (relative to the
        project, where the build runs), else the enclosing workspace's target/, else ours."""
        env = os.environ.get("CARGO_TARGET_DIR")
        if env:
            return self.root / env
        for d in self.root.parents:
            toml = d / "Cargo.toml"
            if toml.is_file():
                try:
                    if "workspace" in tomllib.loads(toml.read_bytes().decode()):
                        return d / "target"
                except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                    continue
        return self.root / "target"

    def wasm_path(self, release: bool) -> Path:
        return self.target_dir() / TARGET / ("release" if release else "debug") / f"{self.lib_name}.wasm"

    def built_wasm(self) -> Path:
        """The newest of the release and debug builds."""
        built = [p for p in (self.wasm_path(True), self.wasm_path(False)) if p.exists()]
        if not built:
            raise ProjectError("no built wasm: run `cargo aspen-plugin build --release` first")
        return max(built, key=lambda p: p.stat().st_mtime)
