"""`cargo aspen-plugin init`: the four templates of the guide and the files of a new project."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from aspen.manifest import PRIORITY_MAX, PRIORITY_MIN

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
PROJECT_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    description: str
    permissions: tuple[str, ...]
    handles: tuple[str, ...]  # "{Camel}" is replaced by the plugin's CamelCase name


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("basic", "Ping -> Pong handler", ("kv_read",), ("{Camel}Ping",)),
        Template("kv", "KV read/write/delete with namespaced keys", ("kv_read", "kv_write"),
                 ("ReadKey", "WriteKey", "DeleteKey")),
        Template("timer", "Periodic scheduled task", ("kv_read", "kv_write", "timers"), ("{Camel}Status",)),
        Template("hook", "Event-driven audit logger", ("kv_read", "kv_write", "hooks"), ("{Camel}Stats",)),
    )
}


def camel(name: str) -> str:
    """my-plugin -> MyPlugin: the prefix of the template's own request types."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", name) if part)


def _subst(text: str, name: str, priority: int, sdk: str) -> str:
    return (text.replace("__NAME__", name).replace("__CAMEL__", camel(name))
            .replace("__PRIORITY__", str(priority)).replace("__SDK__", sdk))


CARGO_TOML = """\
[package]
name = "aspen-__NAME__"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
aspen-wasm-guest-sdk = { path = "__SDK__" }

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
"""

CARGO_CONFIG = """\
# `cargo wasm` builds the plugin with plain cargo; `cargo aspen-plugin build --release` does the
# same, finds a toolchain that has the wasm32 target, and checks the module against the ABI.
# No default build target here: `cargo test` must build for the machine it runs on.
[alias]
wasm = "build --release --target wasm32-unknown-unknown"
"""

GITIGNORE = "/target\n"

README = """\
# __NAME__

An Aspen plugin (template: {template}, {description}).

    cargo aspen-plugin check            # plugin.json and the crate layout
    cargo test                          # logic, natively
    cargo aspen-plugin build --release  # target/wasm32-unknown-unknown/release/aspen___LIB__.wasm
    cargo aspen-plugin sign --key ~/.config/aspen/plugin-signing-key
    aspen-cli plugin install target/wasm32-unknown-unknown/release/aspen___LIB__.wasm --manifest plugin.json

Handles: {handles}. Permissions: {permissions}. Keys: `__NAME__:`.
"""


def manifest(template: Template, name: str, priority: int) -> dict[str, object]:
    return {
        "name": name,
        "version": "0.1.0",
        "description": template.description,
        "author": "",
        "handles": [h.replace("{Camel}", camel(name)) for h in template.handles],
        "priority": priority,
        "permissions": {p: p in template.permissions for p in
                        ("kv_read", "kv_write", "blob_read", "blob_write", "cluster_info", "randomness",
                         "signing", "timers", "hooks")},
        "kv_prefixes": [f"{name}:"],
        "fuel_limit": 500_000_000,
        "memory_limit": 134_217_728,
        "execution_timeout_secs": 30,
        "min_api_version": 1,
    }


def render(template_name: str, name: str, priority: int, sdk: Path, project_dir: Path) -> dict[str, str]:
    """The new project's files, path relative to the project -> text."""
    if template_name not in TEMPLATES:
        raise ValueError(f"unknown template {template_name!r}: choose from {', '.join(TEMPLATES)}")
    if not PROJECT_NAME_RE.match(name):
        raise ValueError("name: a letter, then letters, digits, '-' or '_', at most 64 characters")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"--priority must be from {PRIORITY_MIN} to {PRIORITY_MAX}")
    template = TEMPLATES[template_name]
    # Inside the tree that holds the SDK (this repository's examples), a relative path keeps the
    # project working wherever the tree is cloned; anywhere else, the absolute path.
    tree = sdk.resolve().parents[1]
    inside = project_dir.resolve().is_relative_to(tree)
    sdk_ref = os.path.relpath(sdk.resolve(), project_dir.resolve()) if inside else str(sdk.resolve())
    m = manifest(template, name, priority)
    readme = README.format(template=template.name, description=template.description,
                           handles=", ".join(m["handles"]), permissions=", ".join(template.permissions))  # type: ignore[arg-type]
    files = {
        "Cargo.toml": CARGO_TOML,
        "src/lib.rs": (TEMPLATE_DIR / f"{template.name}.rs").read_text(),
        ".cargo/config.toml": CARGO_CONFIG,
        ".gitignore": GITIGNORE,
        "README.md": readme.replace("__LIB__", name.replace("-", "_")),
    }
    out = {path: _subst(text, name, priority, sdk_ref) for path, text in files.items()}
    out["plugin.json"] = json.dumps(m, indent=2) + "\n"
    return out
