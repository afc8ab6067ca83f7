"""cargo-aspen-plugin: the plugin author's toolchain (init, check, build, keygen, sign, verify).

Cargo runs `cargo-aspen-plugin aspen-plugin ARGS...` for `cargo aspen-plugin ARGS...`; the
program also runs on its own as `cargo-aspen-plugin ARGS...`. Exit status: 0 ok, 1 a failed
check/build/verification, 2 a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from aspen import keys, signing
from aspen.exits import guarded
from aspen.manifest import Manifest, ManifestError
from aspen.toolchain import rust
from aspen.toolchain.check import ERROR, check_project
from aspen.toolchain.module_check import inspect_wasm
from aspen.toolchain.project import SDK_DIR, Project, ProjectError
from aspen.toolchain.templates import TEMPLATES, render
from aspen.version import aspen_version
from wire.errors import AspenError

DEFAULT_KEY = Path("~/.config/aspen/plugin-signing-key")
EXIT_FAILED, EXIT_USAGE = 1, 2


class Failed(Exception):
    pass


def _project(args: argparse.Namespace) -> Project:
    try:
        return Project.find(Path(args.path))
    except ProjectError as exc:
        raise Failed(str(exc)) from None


def cmd_init(args: argparse.Namespace) -> None:
    target = Path(args.dir) / args.name
    if target.exists() and any(target.iterdir()):
        raise Failed(f"{target} exists and is not empty")
    try:
        files = render(args.template, args.name, args.priority, Path(args.sdk), target)
    except ValueError as exc:
        raise Failed(str(exc)) from None
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"✓ Created {args.name} from the {args.template} template ({TEMPLATES[args.template].description})")
    print(f"  {target}/: Cargo.toml, plugin.json, src/lib.rs, README.md, .cargo/config.toml, .gitignore")
    print(f"  next: cd {target} && cargo aspen-plugin check && cargo aspen-plugin build --release")


def cmd_check(args: argparse.Namespace) -> None:
    project = _project(args)
    findings, _ = check_project(project)
    for f in findings:
        print(f, file=sys.stderr if f.level == ERROR else sys.stdout)
    errors = sum(f.level == ERROR for f in findings)
    if errors:
        raise Failed(f"{errors} error(s) in {project.root}")
    print(f"✓ {project.root.name}: plugin.json and the crate are valid ({len(findings)} warning(s))")


def cmd_build(args: argparse.Namespace) -> None:
    project = _project(args)
    findings, manifest = check_project(project)
    layout_errors = [f for f in findings if f.level == ERROR and ".wasm" not in f.message]
    if layout_errors or manifest is None:
        for f in layout_errors:
            print(f, file=sys.stderr)
        raise Failed("fix these before building (cargo aspen-plugin check)")
    try:
        toolchain = rust.find_toolchain()
    except rust.ToolchainError as exc:
        raise Failed(str(exc)) from None
    print(f"building with {toolchain.cargo} and {toolchain.rustc} ({toolchain.origin})", file=sys.stderr)
    result = rust.cargo_build(project.root, toolchain, args.release)
    if result.returncode != 0:
        raise Failed(f"cargo build failed (exit {result.returncode})")
    wasm_path = project.wasm_path(args.release)
    wasm = wasm_path.read_bytes()
    try:
        info = inspect_wasm(wasm, manifest)
    except ValueError as exc:
        raise Failed(f"{wasm_path}: a node would refuse this module: {exc}") from None
    if mismatches := manifest.info_mismatches(info):
        field = mismatches[0]
        raise Failed(f"{wasm_path}: plugin_info {field} is {info.get(field)!r}, plugin.json says "
                     f"{getattr(manifest, field)!r}")
    print(f"✓ Built {wasm_path}")
    print(f"  {len(wasm):,} bytes, blake3 {signing.wasm_digest(wasm)}")


def cmd_keygen(args: argparse.Namespace) -> None:
    path = Path(args.output).expanduser()
    try:
        key = keys.create(path, overwrite=args.force)
    except keys.KeyFileError as exc:
        raise Failed(str(exc)) from None
    public = bytes(key.verify_key).hex()
    path.with_name(path.name + ".pub").write_text(public + "\n")
    print("✓ Generated Ed25519 keypair")
    print(f"  Secret key: {path}")
    print(f"  Public key: {public}")


def _wasm(args: argparse.Namespace, project: Project) -> Path:
    if args.wasm:
        return Path(args.wasm)
    try:
        return project.built_wasm()
    except ProjectError as exc:
        raise Failed(str(exc)) from None


def cmd_sign(args: argparse.Namespace) -> None:
    project = _project(args)
    manifest_path = Path(args.manifest) if args.manifest else project.manifest_path
    try:
        key = keys.load(Path(args.key).expanduser())
        raw = project.manifest_raw(manifest_path)
        manifest = Manifest.from_json(raw)
    except (keys.KeyFileError, ProjectError) as exc:
        raise Failed(str(exc)) from None
    except ManifestError as exc:
        raise Failed(f"plugin.json: {exc}") from None
    wasm_path = _wasm(args, project)
    signature = signing.sign(manifest, wasm_path.read_bytes(), key)
    wasm_hash = signature["signed"]["wasm_hash"]
    project.write_manifest({**raw, "wasm_hash": wasm_hash, "signature": signature}, manifest_path)
    print(
        f"✓ Signed {manifest.name} {manifest.version}: the manifest and {wasm_path.name} (blake3 {wasm_hash})"
    )
    print(f"  Public key: {signature['public_key']}")
    print(f"  {manifest_path} updated (signature, wasm_hash)")


def cmd_verify(args: argparse.Namespace) -> None:
    project = _project(args)
    try:
        manifest = Manifest.from_json(project.manifest_raw(Path(args.manifest) if args.manifest else None))
    except ProjectError as exc:
        raise Failed(str(exc)) from None
    except ManifestError as exc:
        raise Failed(f"plugin.json: {exc}") from None
    wasm_path = _wasm(args, project)
    trusted = None
    if args.key:
        key_hex = args.key.strip().lower()
        if len(key_hex) != 64 or any(c not in "0123456789abcdef" for c in key_hex):
            raise Failed("--key: an Ed25519 public key is 64 hex characters")
        trusted = {key_hex: "--key"}
    try:
        signer = signing.verify(manifest, signing.wasm_digest(wasm_path.read_bytes()), trusted)
    except AspenError as exc:
        raise Failed(f"{exc.code}: {exc.message}") from None
    print(
        f"✓ Signature valid: {manifest.name} {manifest.version} (manifest and {wasm_path.name}) signed by "
        f"{signer}"
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="cargo aspen-plugin", description="Build, check and sign Aspen WASM plugins."
    )
    ap.add_argument("--version", action="version", version=f"cargo-aspen-plugin {aspen_version()}")
    sub = ap.add_subparsers(dest="command", required=True)

    def command(name: str, handler: object, help_text: str, project: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        if project:
            p.add_argument("--path", default=".", help="the plugin project (default: here or above)")
        return p

    p = command("init", cmd_init, "create a plugin project from a template", project=False)
    p.add_argument("name")
    p.add_argument("--template", default="basic", choices=sorted(TEMPLATES))
    p.add_argument("--priority", type=int, default=950, help="900 to 999, lower runs first (default 950)")
    p.add_argument("--dir", default=".", help="where to create the project directory")
    p.add_argument(
        "--sdk", default=str(SDK_DIR), help="path of aspen-wasm-guest-sdk (default: the bundled one)"
    )
    command("check", cmd_check, "validate plugin.json and the crate layout")
    p = command("build", cmd_build, "build for wasm32-unknown-unknown and check the module")
    p.add_argument("--release", action="store_true", help="optimized and stripped")
    p = command("keygen", cmd_keygen, "generate an Ed25519 signing key", project=False)
    p.add_argument("--output", default=str(DEFAULT_KEY), help=f"secret key file (default {DEFAULT_KEY})")
    p.add_argument("--force", action="store_true", help="replace an existing key")
    p = command(
        "sign", cmd_sign, "sign plugin.json and the built wasm; writes the signature into plugin.json"
    )
    p.add_argument("--key", default=str(DEFAULT_KEY), help="secret key file")
    p.add_argument("--wasm", help="the module (default: the newest build)")
    p.add_argument("--manifest", help="sign into this copy of the manifest (default: plugin.json)")
    p = command("verify", cmd_verify, "check plugin.json's signature against plugin.json and the built wasm")
    p.add_argument("--key", help="also require this signer (public key hex)")
    p.add_argument("--wasm", help="the module (default: the newest build)")
    p.add_argument("--manifest", help="the manifest to check (default: plugin.json)")
    return ap


def _run(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["aspen-plugin"]:  # invoked by cargo as a subcommand
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    """The exit status; a missing file or Ctrl-C is one line or 130, never a traceback."""
    return guarded(lambda: _run(argv))


def main() -> None:
    sys.exit(run())
