"""The `plugins` meta table's typed view (aspen/plugins/plugin_table.py): rows round-trip, and
every change encodes to the bytes the registry handlers wrote before it existed (a row's bytes
are what the manager compares to decide on a reload, and what snapshots hold)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from aspen.manifest import Manifest
from aspen.plugins import plugin_table
from aspen.plugins.plugin_table import PluginRecord
from storage.state import StateMachine

MANIFEST = Manifest.from_json(
    {"name": "counter", "version": "1.2.0", "handles": ["Count"], "kv_prefixes": ["counter/"],
     "permissions": {"kv_read": True}, "wasm_hash": "ab" * 32}
)


def _old_pack(value: Any) -> bytes:  # registry_handlers._pack, as it was
    return msgpack.packb(value, use_bin_type=True)


def _old_decode(raw: bytes) -> dict[str, Any]:  # manager.decode_record, as it was
    rec = msgpack.unpackb(raw, raw=False)
    assert isinstance(rec, dict)
    return rec


def test_an_installed_row_is_the_map_install_always_wrote() -> None:
    rec = PluginRecord.new(MANIFEST, 3)
    assert rec.encode() == _old_pack({**MANIFEST.to_json(), "reload_seq": 3})
    assert PluginRecord.decode(rec.encode()) == rec
    assert rec.reload_seq == 3 and rec.enabled and rec.kv_prefixes == ["counter/"]
    assert Manifest.from_json(rec.manifest_json()) == MANIFEST


def test_enable_disable_and_reload_write_the_bytes_they_always_wrote() -> None:
    raw = PluginRecord.new(MANIFEST, 0).encode()
    rec = PluginRecord.decode(raw)
    assert rec.with_enabled(False).encode() == _old_pack({**_old_decode(raw), "enabled": False})
    assert rec.with_enabled(True).encode() == _old_pack({**_old_decode(raw), "enabled": True})
    assert rec.reloaded().encode() == _old_pack({**_old_decode(raw), "reload_seq": 1})
    # A row written by hand (fields in another order, no reload_seq, no enabled) keeps its order.
    odd = bytes.fromhex("82a776657273696f6ea3312e30a46e616d65a178")  # {"version": "1.0", "name": "x"}
    rec = PluginRecord.decode(odd)
    assert rec.encode() == odd and rec.enabled and rec.reload_seq == 0 and rec.kv_prefixes == ()
    assert rec.reloaded().encode() == _old_pack({**_old_decode(odd), "reload_seq": 1})
    assert rec.with_enabled(False).encode() == _old_pack({**_old_decode(odd), "enabled": False})
    assert rec.get("version") == "1.0" and rec.get("handles") is None


def test_a_row_that_is_not_a_map_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        PluginRecord.decode(msgpack.packb([1, 2]))
    with pytest.raises(ValueError):
        PluginRecord.decode(b"\xc1")


def test_ops_are_the_lists_the_handlers_always_committed() -> None:
    rec = PluginRecord.new(MANIFEST, 0)
    assert plugin_table.cas_op("counter", b"old", rec) == ["meta_cas", "plugins", "counter", b"old",
                                                          rec.encode()]
    assert plugin_table.cas_op("counter", b"old", None) == ["meta_cas", "plugins", "counter", b"old", None]
    assert plugin_table.install_op("counter", None, rec, None) == [
        "meta_cas_all",
        [["plugins", "counter", None, rec.encode()], ["plugin_registry", "version", None, b"1"]],
    ]
    assert plugin_table.install_op("counter", b"o", rec, b"41")[1][1] == ["plugin_registry", "version", b"41",
                                                                          b"42"]


def test_the_state_machine_reads_back_what_the_ops_wrote() -> None:
    state = StateMachine()
    first = PluginRecord.new(MANIFEST, 0)
    results, _ = state.apply_ops([plugin_table.install_op("counter", None, first, None)], 1, 1)
    assert results == [("ok", {})]
    assert plugin_table.raw_records(state) == {"counter": first.encode()}
    assert plugin_table.raw_record(state, "counter") == first.encode()
    assert plugin_table.version(state) == b"1"
    state.apply_ops([plugin_table.cas_op("counter", first.encode(), None)], 2, 1)
    assert plugin_table.raw_record(state, "counter") is None and plugin_table.raw_records(state) == {}
