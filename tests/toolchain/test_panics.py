"""A real Rust plugin that panics (issue 13 item 7): the caller gets the panic's message and
place, `PLUGIN_TRAP: panicked at src/lib.rs:LINE:COL: index out of bounds: ...`, not wasmtime's
"wasm 'unreachable' instruction executed", and the plugin's log has it too."""

from __future__ import annotations

import re
from pathlib import Path

from aspen.testing import PluginHarness, build
from tests.toolchain.conftest import cargo

BOOM = """            ClientRpcRequest::Other(r) if r.type_name == "PanickyBoom" => {
                let numbers = vec![1u8, 2, 3];
                let index = numbers.len() + 4;
                ClientRpcResponse::Custom(Response::new("Never").with("n", numbers[index] as u64))
            }
"""


def test_a_rust_panic_reaches_the_caller_with_its_message(tmp_path: Path, wasm_toolchain: None) -> None:
    cargo("aspen-plugin", "init", "panicky", "--template", "basic", "--dir", str(tmp_path), cwd=tmp_path)
    project = tmp_path / "panicky"
    lib = project / "src" / "lib.rs"
    source = lib.read_text()
    anchor = "            other => ClientRpcResponse::unhandled(NAME, &other),\n"
    assert anchor in source
    source = source.replace(anchor, BOOM + anchor)
    lib.write_text(source)
    line = source.splitlines().index("                ClientRpcResponse::Custom(Response::new(\"Never\")"
                                     ".with(\"n\", numbers[index] as u64))") + 1
    wasm = build(project)
    with PluginHarness.load(wasm, project / "plugin.json") as h:
        out = h.request("PanickyBoom")
        assert out["type"] == "Error" and out["code"] == "PLUGIN_TRAP", out
        assert re.fullmatch(
            rf"panicked at src/lib\.rs:{line}:\d+: index out of bounds: the len is 3 but the index is 7",
            out["message"],
        ), out["message"]
        assert ("trap", f"PLUGIN_TRAP: {out['message']}") in h.logs
        # The next call runs on a fresh instance, which answers.
        assert h.request("PanickyPing")["message"] == "pong"
