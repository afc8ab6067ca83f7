"""The `plugin_keys` meta table's typed view (aspen/plugins/key_table.py): rows round-trip, and
a row is the bytes PluginKeysAdd wrote before the view existed (the label's UTF-8)."""

from __future__ import annotations

from aspen.plugins import key_table
from aspen.plugins.key_table import TrustedKey
from storage.state import StateMachine

KEY = "ab" * 32


def test_a_row_is_the_label_keys_add_always_wrote() -> None:
    key = TrustedKey(KEY, "release signer é")
    assert key.encode() == "release signer é".encode()  # registry_handlers wrote label.encode()
    assert TrustedKey.decode(KEY, key.encode()) == key
    assert TrustedKey.decode(KEY, b"") == TrustedKey(KEY, "")


def test_ops_are_the_lists_the_handlers_always_committed() -> None:
    assert key_table.put_op(TrustedKey(KEY, "ci")) == ["meta_put", "plugin_keys", KEY, b"ci"]
    assert key_table.delete_op(KEY) == ["meta_del", "plugin_keys", KEY]


def test_the_state_machine_reads_back_what_the_ops_wrote() -> None:
    state = StateMachine()
    other = "cd" * 32
    state.apply_ops([key_table.put_op(TrustedKey(KEY, "ci")), key_table.put_op(TrustedKey(other, ""))], 1, 1)
    assert key_table.records(state) == [TrustedKey(KEY, "ci"), TrustedKey(other, "")]
    assert key_table.trusted(state) == {KEY: "ci", other: ""}
    state.apply_ops([key_table.delete_op(KEY)], 2, 1)
    assert key_table.trusted(state) == {other: ""}
