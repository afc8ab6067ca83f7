"""The allowed import graph, asserted: the layers (docs/DESIGN.md) and the two light entry
points, the client (with `aspen-cli`'s non-admin commands) and `cargo aspen-plugin`.

The layers are read from the source (every import statement, in functions and TYPE_CHECKING
blocks too); the entry points are run in a fresh interpreter and its sys.modules inspected, so
whatever an import drags in counts.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("aspen", "cluster", "sandbox", "storage", "wire", "deploy", "benchmarks", "tests")
# What each package may import of ours (itself included). aspen -> cluster -> storage -> wire;
# sandbox -> wire.
ALLOWED = {
    "wire": {"wire"},
    "storage": {"storage", "wire"},
    "cluster": {"cluster", "storage", "wire"},
    "sandbox": {"sandbox", "wire"},
    "aspen": {"aspen", "cluster", "storage", "sandbox", "wire"},
    "deploy": {"deploy", "aspen", "cluster", "storage", "sandbox", "wire"},
}
SERVER_STACK = ("storage", "cluster", "sandbox", "pysyncobj", "wasmtime")
NODE_CODE = (
    "storage",
    "cluster",
    "pysyncobj",
    "aspen.node",
    "aspen.server",
    "aspen.native_handlers",
    "aspen.membership",
    "aspen.metrics",
    "aspen.credential_handlers",
    "aspen.plugins.manager",
    "aspen.plugins.nodehost",
    "aspen.plugins.registry_handlers",
    "aspen.plugins.worker",
    "aspen.client",
)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layers_import_only_what_is_below_them(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in FIRST_PARTY and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def loaded_by(code: str) -> list[str]:
    """The modules of ours and of the server's dependencies a fresh interpreter holds after `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return json.loads(out.splitlines()[-1])


def within(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden)]


def test_the_client_loads_no_server_code() -> None:
    modules = loaded_by("from aspen import AspenError, AsyncClient, Client\nimport aspen.client")
    assert "aspen.client" in modules and "wire.errors" in modules
    assert within(modules, SERVER_STACK) == []


def test_the_client_raises_the_light_modules_aspen_error() -> None:
    import aspen
    from aspen import client
    from wire import errors

    assert aspen.AspenError is errors.AspenError is client.AspenError


def test_aspen_cli_runs_a_kv_command_without_server_code() -> None:
    # Every command group is registered (the parser is built whole); port 1 refuses at once.
    modules = loaded_by("from aspen.cli import run\n"
                        "assert run(['--cluster', '127.0.0.1:1', 'kv', 'get', 'x']) == 3")
    assert "aspen.cli.kv" in modules and "aspen.cli.plugin" in modules
    assert within(modules, SERVER_STACK) == []


def test_cargo_aspen_plugin_loads_no_node_code() -> None:
    modules = loaded_by("from aspen.toolchain.cli import run\n"
                        "import contextlib, io\n"
                        "with contextlib.redirect_stdout(io.StringIO()):\n"
                        "    run(['check', '--path', 'examples/plugins/kv-counter'])")
    assert "aspen.toolchain.check" in modules
    assert within(modules, NODE_CODE) == []


@pytest.mark.parametrize("package", ["aspen", "aspen.plugins", "cluster", "sandbox", "storage"])
def test_each_package_states_its_public_names_and_they_resolve(package: str) -> None:
    import importlib

    module = importlib.import_module(package)
    assert module.__doc__ and module.__all__
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


def module_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports, anywhere in it (TYPE_CHECKING blocks too). A
    package's __init__ naming its own submodules (to re-export them) is not counted."""
    modules = {}
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if (
                    target
                    and target != name
                    and not (path.name == "__init__.py" and target.startswith(name + "."))
                ):
                    edges.add(target)
        graph[name] = edges
    return graph


def test_no_import_circles() -> None:
    graph = module_graph()
    circles = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(graph.get(name, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(circles)
