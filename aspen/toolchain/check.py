"""`cargo aspen-plugin check`: plugin.json and the crate layout, with errors and warnings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aspen.manifest import Manifest, ManifestError
from aspen.plugins.namespaces import KV_TYPES, PREFIX_CONFLICT, find_conflict
from aspen.signing import verify, wasm_digest
from aspen.toolchain.module_check import inspect_wasm
from aspen.toolchain.project import SDK_CRATE, Project, ProjectError
from sandbox import abi
from wire.errors import AspenError

ERROR, WARNING = "error", "warning"
# Answered by the node before any plugin is asked (native handlers come first).
NATIVE_FIRST = frozenset({"Ping", "ClusterStatus", "PutBlob", "GetBlob", "HasBlob"})


@dataclass(frozen=True, slots=True)
class Finding:
    level: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


def _calls(source: str) -> set[str]:
    return {name for name in abi.IMPORTS if re.search(rf"\b{name}\s*\(", source)}


def check_project(project: Project) -> tuple[list[Finding], Manifest | None]:
    out: list[Finding] = []
    manifest: Manifest | None = None
    try:
        manifest = Manifest.from_json(project.manifest_raw())
    except ProjectError as exc:
        out.append(Finding(ERROR, str(exc)))
    except ManifestError as exc:
        out.extend(Finding(ERROR, f"plugin.json: {p}") for p in exc.problems)

    try:
        cargo = project.cargo()
    except ProjectError as exc:
        return [*out, Finding(ERROR, str(exc))], manifest
    package = cargo.get("package") or {}
    if "cdylib" not in ((cargo.get("lib") or {}).get("crate-type") or []):
        out.append(
            Finding(ERROR, 'Cargo.toml: [lib] crate-type must include "cdylib" (a wasm module is one)')
        )
    dep = (cargo.get("dependencies") or {}).get(SDK_CRATE)
    if dep is None:
        out.append(Finding(ERROR, f"Cargo.toml: no dependency on {SDK_CRATE}"))
    elif (
        isinstance(dep, dict) and "path" in dep and not (project.root / dep["path"] / "Cargo.toml").is_file()
    ):
        out.append(Finding(ERROR, f"Cargo.toml: {SDK_CRATE} path {dep['path']!r} has no Cargo.toml"))
    if manifest is not None and package.get("version") not in (None, manifest.version):
        out.append(Finding(WARNING, f"Cargo.toml version {package.get('version')} differs from plugin.json's "
                                    f"{manifest.version} (plugin_info usually reports the crate's)"))

    if not project.lib_rs.is_file():
        return [*out, Finding(ERROR, "src/lib.rs is missing")], manifest
    try:
        source = project.lib_rs.read_bytes().decode()
    except UnicodeDecodeError as exc:
        return [*out, Finding(ERROR, f"src/lib.rs: not UTF-8: {exc}")], manifest
    registrations = len(re.findall(r"^\s*register_plugin!\s*\(", source, re.M))
    if registrations != 1:
        out.append(
            Finding(ERROR, f"src/lib.rs: register_plugin! must appear exactly once (found {registrations})")
        )
    if "plugin_info_matches_manifest" not in source:
        out.append(Finding(WARNING, "src/lib.rs: no plugin_info_matches_manifest test"))
    if manifest is not None:
        out.extend(_manifest_findings(manifest, source))
        out.extend(_built_findings(project, manifest))
    return out, manifest


def _manifest_findings(manifest: Manifest, source: str) -> list[Finding]:
    out: list[Finding] = []
    granted = {p for p, v in manifest.permissions.items() if v}
    called = _calls(source)
    needed = {abi.IMPORT_PERMISSIONS[f] for f in called} - {None}
    for fn in sorted(called):
        perm = abi.IMPORT_PERMISSIONS[fn]
        if perm is not None and perm not in granted:
            out.append(Finding(WARNING, f"src/lib.rs calls {fn}, which needs the {perm} permission "
                                        "plugin.json does not grant: it will answer PERMISSION_DENIED"))
    for perm in sorted(granted - needed):
        out.append(
            Finding(WARNING, f"plugin.json grants {perm} but src/lib.rs calls no function that needs it")
        )
    for rtype in manifest.handles:
        if rtype in NATIVE_FIRST:
            out.append(
                Finding(WARNING, f"handles {rtype}: the node answers {rtype} itself before any plugin")
            )
        elif rtype in KV_TYPES and not manifest.kv_prefixes:
            out.append(
                Finding(
                    WARNING,
                    f"handles {rtype}: KV requests reach a plugin only for keys under its "
                    "kv_prefixes, and it declares none",
                )
            )
    # Without a cluster the other plugins are unknown: the rules that hold whatever is installed.
    conflict = find_conflict(manifest.name, manifest.kv_prefixes, {})
    if conflict is not None:
        out.append(Finding(ERROR, f"plugin.json: {conflict.message} (a node refuses it: {PREFIX_CONFLICT})"))
    if not manifest.description:
        out.append(Finding(WARNING, "plugin.json: no description"))
    if not manifest.author:
        out.append(Finding(WARNING, "plugin.json: no author"))
    return out


def _built_findings(project: Project, manifest: Manifest) -> list[Finding]:
    try:
        wasm_path = project.built_wasm()
    except ProjectError:
        return []
    wasm = wasm_path.read_bytes()
    out: list[Finding] = []
    if manifest.signature:
        try:
            verify(manifest, wasm_digest(wasm))
        except AspenError as exc:
            out.append(Finding(WARNING, f"the signature no longer covers plugin.json and {wasm_path.name}: "
                                        f"{exc.message}; sign again"))
    try:
        info = inspect_wasm(wasm, manifest)
    except ValueError as exc:
        return [*out, Finding(ERROR, f"{wasm_path.relative_to(project.root)}: {exc}")]
    for field in manifest.info_mismatches(info):
        out.append(
            Finding(
                ERROR,
                f"{wasm_path.name}: plugin_info {field} is {info.get(field)!r} but "
                f"plugin.json says {getattr(manifest, field)!r} (the node refuses that install)",
            )
        )
    return out


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
