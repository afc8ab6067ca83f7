"""The `settings` meta table's typed view (aspen/settings_table.py): rows round-trip, and a row
is the bytes ClusterSetting wrote before the view existed (b"true" or b"false")."""

from __future__ import annotations

from aspen import settings_table
from aspen.settings_table import REQUIRE_SIGNATURES, Flag
from storage.state import StateMachine


def test_a_row_is_what_cluster_setting_always_wrote() -> None:
    for value in (True, False):
        flag = Flag(REQUIRE_SIGNATURES, value)
        assert flag.encode() == (b"true" if value else b"false")
        assert Flag.decode(REQUIRE_SIGNATURES, flag.encode()) == flag


def test_anything_but_true_reads_as_off() -> None:
    for raw in (None, b"", b"TRUE", b"1", b"false"):
        assert Flag.decode(REQUIRE_SIGNATURES, raw) == Flag(REQUIRE_SIGNATURES, False)


def test_the_state_machine_reads_back_what_the_op_wrote() -> None:
    state = StateMachine()
    assert settings_table.flag(state, REQUIRE_SIGNATURES).value is False
    op = settings_table.put_op(Flag(REQUIRE_SIGNATURES, True))
    assert op == ["meta_put", "settings", "require_signatures", b"true"]
    state.apply_ops([op], 1, 1)
    assert settings_table.flag(state, REQUIRE_SIGNATURES) == Flag(REQUIRE_SIGNATURES, True)
    assert settings_table.KNOWN == ("require_signatures",)
