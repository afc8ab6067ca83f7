"""The ABI is frozen: docs/HOST_ABI.md, sandbox/abi.py and the linker agree; version 2 only adds."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest
import wasmtime

from sandbox import InMemoryHost, PluginConfig, Runtime, abi
from tests.sandbox.guests import module

DOC = Path(__file__).resolve().parents[2] / "docs" / "HOST_ABI.md"
ROW = re.compile(r"^\| `(\w+)` \| `\(([^)]*)\) -> (\w+|\(\))` \|", re.M)


def documented_imports() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    text = DOC.read_text()
    table = text[text.index("## Host imports") : text.index("### Error codes")]
    out = {}
    for name, params, result in ROW.findall(table):
        out[name] = (
            tuple(p.strip() for p in params.split(",") if p.strip()),
            () if result == "()" else (result,),
        )
    return out


def test_doc_lists_exactly_the_abi() -> None:
    assert documented_imports() == abi.IMPORTS
    assert f"version {abi.ABI_VERSION}" in DOC.read_text().splitlines()[0]


def test_doc_permissions_match_the_table() -> None:
    text = DOC.read_text()
    table = text[text.index("## Host imports") : text.index("### Error codes")]
    documented = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`") and cells[0] != "`Import`":
            documented[cells[0].strip("`")] = None if cells[3] == "none" else cells[3]
    assert documented == abi.IMPORT_PERMISSIONS


def test_guide_functions_all_present() -> None:
    guide = {
        "kv_get_value",
        "kv_put_value",
        "kv_delete_key",
        "kv_scan_prefix",
        "kv_compare_and_swap",
        "kv_batch_write",
        "blob_exists",
        "blob_get_data",
        "blob_put_data",
        "is_current_leader",
        "get_leader_id",
        "get_node_id",
        "sign_data",
        "verify_signature",
        "public_key",
        "get_random_bytes",
        "schedule_timer_on_host",
        "cancel_timer_on_host",
        "subscribe_hook_events",
        "unsubscribe_hook_events",
        "log_info_msg",
        "log_debug_msg",
        "log_warn_msg",
        "current_time_ms",
        "hlc_now_ms",
    }
    v3 = {
        "crypto_aead_seal",
        "crypto_aead_open",
        "crypto_hmac_sha256",
        "crypto_hkdf_sha256",
        "crypto_ed25519_public_key",
        "crypto_ed25519_sign",
        "crypto_ed25519_verify",
        "crypto_random_bytes",
        "barrier_seal",
        "barrier_open",
        "barrier_status",
    }
    assert set(abi.IMPORTS) == guide | {"sha256_digest"} | v3  # the guide's, plus version 2's one and 3's


def test_a_module_importing_every_function_links(runtime: Runtime, host: InMemoryHost) -> None:
    body = '(func (export "handle_request") (param i32 i32) (result i64) (i64.const 0))'
    plugin = runtime.load(module(body, imports=tuple(abi.IMPORTS)), PluginConfig("all"), host)
    imported = {(i.module, i.name) for i in plugin.module.imports}
    assert imported == {("aspen", n) for n in abi.IMPORTS}
    assert isinstance(plugin.module, wasmtime.Module)


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65_535, 65_536, 1 << 20])
def test_ok_of_bytes_is_the_msgpack_encoding(size: int) -> None:
    # abi.ok builds [TAG_OK, bin] by hand for bytes: it must stay byte-identical to msgpack's,
    # at every bin header width.
    value = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert abi.ok(value) == msgpack.packb([abi.TAG_OK, value], use_bin_type=True)
    assert abi.unpack(abi.ok(value)) == [abi.TAG_OK, value]
