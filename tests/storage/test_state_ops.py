"""Every op's success and error path, revision/version semantics, and commit events."""

from __future__ import annotations

from storage.kv import Entry
from storage.limits import BLOB_MAX_BYTES
from storage.state import BlobRecord, CommitEvent, StateMachine
from tests.storage.conftest import Applier

H1 = "a" * 64
H2 = "b" * 64


# -- put / del ---------------------------------------------------------------------------------


def test_put_creates_and_overwrites_with_revisions_and_versions(app: Applier) -> None:
    assert app.ok(["put", "k", b"v1"]) == {
        "revision": 1,
        "version": 1,
        "create_revision": 1,
        "mod_revision": 1,
    }
    assert app.ok(["put", "other", b"x"])["revision"] == 2
    assert app.ok(["put", "k", b"v2"]) == {
        "revision": 3,
        "version": 2,
        "create_revision": 1,
        "mod_revision": 3,
    }
    assert app.state.get("k") == Entry(b"v2", 2, 1, 3)
    assert app.state.revision == 3


def test_put_of_an_empty_value_is_allowed(app: Applier) -> None:
    app.ok(["put", "k", b""])
    assert app.state.get("k") == Entry(b"", 1, 1, 1)


def test_del_existing_bumps_revision_and_reports_deleted(app: Applier) -> None:
    app.ok(["put", "k", b"v"])
    assert app.ok(["del", "k"]) == {"deleted": True, "revision": 2}
    assert app.state.get("k") is None
    assert app.state.revision == 2


def test_del_missing_does_not_bump_revision_or_emit_events(app: Applier) -> None:
    app.ok(["put", "k", b"v"])
    app.events.clear()
    assert app.ok(["del", "nope"]) == {"deleted": False, "revision": 1}
    assert app.state.revision == 1
    assert app.events == []


def test_version_restarts_after_delete_and_recreate(app: Applier) -> None:
    app.ok(["put", "k", b"1"])
    app.ok(["put", "k", b"2"])
    app.ok(["del", "k"])
    assert app.ok(["put", "k", b"3"]) == {
        "revision": 4,
        "version": 1,
        "create_revision": 4,
        "mod_revision": 4,
    }


def test_put_and_del_commit_events_carry_index_term_and_revision(app: Applier) -> None:
    app.apply(["put", "a", b"1"], ["put", "b", b"2"], term=3)
    app.apply(["del", "a"], term=4)
    app.apply(["put", "b", b"3"], ["batch", [["put", "b", b"4"], ["put", "c", b"5"], ["del", "b"]]], term=4)
    assert app.events == [
        CommitEvent("kv.write_committed", "a", 1, 3, 1, value=b"1", version=1, create_revision=1),
        CommitEvent("kv.write_committed", "b", 1, 3, 2, value=b"2", version=1, create_revision=2),
        CommitEvent("kv.delete_committed", "a", 2, 4, 3),
        # Puts carry the value written and the key's version after it (watches stream them),
        # each put of a batch its own, at the batch's one revision.
        CommitEvent("kv.write_committed", "b", 3, 4, 4, value=b"3", version=2, create_revision=2),
        CommitEvent("kv.write_committed", "b", 3, 4, 5, value=b"4", version=3, create_revision=2),
        CommitEvent("kv.write_committed", "c", 3, 4, 5, value=b"5", version=1, create_revision=5),
        CommitEvent("kv.delete_committed", "b", 3, 4, 5),
    ]


# -- cas / cad ---------------------------------------------------------------------------------


def test_cas_create_when_absent(app: Applier) -> None:
    assert app.ok(["cas", "k", None, b"v"]) == {
        "revision": 1,
        "version": 1,
        "create_revision": 1,
        "mod_revision": 1,
    }


def test_cas_create_fails_when_present(app: Applier) -> None:
    app.ok(["put", "k", b"v"])
    code, _, details = app.err(["cas", "k", None, b"w"])
    assert code == "CAS_FAILED"
    assert details == {"actual_found": True, "actual_value": b"v"}
    assert app.state.revision == 1


def test_cas_swap_on_match_and_fail_on_mismatch(app: Applier) -> None:
    app.ok(["put", "k", b"v"])
    assert app.ok(["cas", "k", b"v", b"w"])["version"] == 2
    code, _, details = app.err(["cas", "k", b"v", b"x"])
    assert (code, details) == ("CAS_FAILED", {"actual_found": True, "actual_value": b"w"})
    assert app.state.get("k") == Entry(b"w", 2, 1, 2)
    assert app.state.revision == 2


def test_cas_with_expected_value_on_a_missing_key_fails(app: Applier) -> None:
    app.events.clear()
    code, _, details = app.err(["cas", "k", b"v", b"w"])
    assert (code, details) == ("CAS_FAILED", {"actual_found": False, "actual_value": None})
    assert app.state.revision == 0
    assert app.events == []


def test_cad_deletes_on_match(app: Applier) -> None:
    app.ok(["put", "k", b"v"])
    assert app.ok(["cad", "k", b"v"]) == {"deleted": True, "revision": 2}
    assert app.state.get("k") is None
    assert app.events[-1] == CommitEvent("kv.delete_committed", "k", app.index, 1, 2)


def test_cad_fails_on_mismatch_or_missing(app: Applier) -> None:
    app.ok(["put", "k", b"v"])
    code, _, details = app.err(["cad", "k", b"other"])
    assert (code, details) == ("CAS_FAILED", {"actual_found": True, "actual_value": b"v"})
    code, _, details = app.err(["cad", "missing", b"v"])
    assert (code, details) == ("CAS_FAILED", {"actual_found": False, "actual_value": None})
    assert app.state.revision == 1


# -- batch -------------------------------------------------------------------------------------


def test_batch_is_one_revision_for_all_its_writes(app: Applier) -> None:
    app.ok(["put", "gone", b"x"])
    app.events.clear()
    body = app.ok(["batch", [["put", "a", b"1"], ["put", "b", b"2"], ["del", "gone"], ["del", "never"]]])
    assert body == {"revision": 2, "count": 4}
    assert app.state.get("a") == Entry(b"1", 1, 2, 2)
    assert app.state.get("b") == Entry(b"2", 1, 2, 2)
    assert app.state.get("gone") is None
    assert [(e.kind, e.key, e.revision) for e in app.events] == [
        ("kv.write_committed", "a", 2),
        ("kv.write_committed", "b", 2),
        ("kv.delete_committed", "gone", 2),
    ]


def test_batch_applies_sub_ops_in_order(app: Applier) -> None:
    app.ok(["batch", [["put", "k", b"1"], ["put", "k", b"2"], ["del", "j"], ["put", "j", b"3"]]])
    assert app.state.get("k") == Entry(b"2", 2, 1, 1)
    assert app.state.get("j") == Entry(b"3", 1, 1, 1)
    app.ok(["batch", [["put", "x", b"1"], ["del", "x"]]])
    assert app.state.get("x") is None
    assert app.state.revision == 2


def test_empty_batch_and_batch_of_missing_deletes_do_not_bump_revision(app: Applier) -> None:
    app.ok(["put", "k", b"v"])
    assert app.ok(["batch", []]) == {"revision": 1, "count": 0}
    assert app.ok(["batch", [["del", "nope"], ["del", "nada"]]]) == {"revision": 1, "count": 2}
    assert app.state.revision == 1


def test_batch_with_one_bad_op_writes_nothing(app: Applier) -> None:
    app.ok(["put", "keep", b"v"])
    before = app.state.state_hash()
    app.events.clear()
    bad_ops = [
        ["put", "ok", b"1"],
        ["put", "ok2", "not bytes"],
    ]
    code, message, _ = app.err(["batch", bad_ops])
    assert code == "INVALID_REQUEST" and "ops[1]" in message
    code, _, _ = app.err(["batch", [["put", "a", b"1"], ["del", "__aspen/x"]]])
    assert code == "RESERVED_KEY"
    code, _, _ = app.err(["batch", [["del", "keep"], ["put", "a", b"x" * (1024 * 1024 + 1)]]])
    assert code == "VALUE_TOO_LARGE"
    code, _, _ = app.err(["batch", [["del", "keep"], ["put", "k" * 1025, b""]]])
    assert code == "KEY_TOO_LARGE"
    code, _, _ = app.err(["batch", [["del", "keep"], ["get", "keep"]]])
    assert code == "INVALID_REQUEST"
    assert app.state.state_hash() == before
    assert app.state.get("keep") == Entry(b"v", 1, 1, 1)
    assert app.events == []


def test_batch_over_the_op_limit_is_refused(app: Applier) -> None:
    code, _, _ = app.err(["batch", [["put", f"k{i}", b""] for i in range(1001)]])
    assert code == "INVALID_REQUEST"
    assert app.ok(["batch", [["put", f"k{i}", b""] for i in range(1000)]]) == {"revision": 1, "count": 1000}
    assert len(app.state.kv) == 1000


# -- cbatch ------------------------------------------------------------------------------------


def test_cbatch_writes_when_every_condition_holds(app: Applier) -> None:
    app.ok(["put", "a", b"1"])
    body = app.ok(
        ["cbatch", [["eq", "a", b"1"], ["exists", "a"], ["absent", "b"]], [["put", "b", b"2"], ["del", "a"]]]
    )
    assert body == {"success": True, "failed_condition_index": None, "revision": 2}
    assert app.state.get("a") is None
    assert app.state.get("b") == Entry(b"2", 1, 2, 2)


def test_cbatch_reports_the_first_failed_condition_and_writes_nothing(app: Applier) -> None:
    app.ok(["put", "a", b"1"])
    app.events.clear()
    ops = [["put", "b", b"2"]]
    cases = [
        ([["eq", "a", b"2"]], 0),
        ([["eq", "a", b"1"], ["eq", "missing", b"1"]], 1),
        ([["exists", "a"], ["absent", "b"], ["exists", "b"]], 2),
        ([["absent", "a"], ["exists", "nope"]], 0),
    ]
    for conditions, index in cases:
        body = app.ok(["cbatch", conditions, ops])
        assert body == {"success": False, "failed_condition_index": index, "revision": 1}
    assert app.state.get("b") is None
    assert app.state.revision == 1
    assert app.events == []


def test_cbatch_without_conditions_or_ops(app: Applier) -> None:
    assert app.ok(["cbatch", [], [["put", "a", b"1"]]]) == {
        "success": True,
        "failed_condition_index": None,
        "revision": 1,
    }
    assert app.ok(["cbatch", [["exists", "a"]], []]) == {
        "success": True,
        "failed_condition_index": None,
        "revision": 1,
    }
    assert app.state.revision == 1


def test_cbatch_with_a_bad_condition_or_op_is_invalid_even_if_conditions_fail(app: Applier) -> None:
    before = app.state.state_hash()
    assert app.err(["cbatch", [["eq", "a", "str"]], [["put", "b", b"1"]]])[0] == "INVALID_REQUEST"
    assert app.err(["cbatch", [["absent", "a"]], [["put", "b", 1]]])[0] == "INVALID_REQUEST"
    assert app.err(["cbatch", [["exists", "a"]], [["put", "__aspen/b", b""]]])[0] == "RESERVED_KEY"
    assert app.err(["cbatch", [["gt", "a", b"1"]], []])[0] == "INVALID_REQUEST"
    assert app.err(["cbatch", [["absent", "k"]] * 101, []])[0] == "INVALID_REQUEST"
    assert app.err(["cbatch", [], [["put", "k", b""]] * 1001])[0] == "INVALID_REQUEST"
    assert app.ok(["cbatch", [["absent", "k"]] * 100, []])["success"] is True
    assert app.state.state_hash() == before


# -- noop --------------------------------------------------------------------------------------


def test_noop_changes_nothing_but_the_applied_index(app: Applier) -> None:
    before = app.state.state_hash()
    assert app.ok(["noop"]) == {}
    assert app.state.applied_index == 1
    assert app.state.state_hash() == before
    assert app.err(["noop", 1])[0] == "INVALID_REQUEST"


# -- meta tables -------------------------------------------------------------------------------


def test_meta_put_get_items_and_del(app: Applier) -> None:
    assert app.ok(["meta_put", "nodes", "2", b"b"]) == {}
    assert app.ok(["meta_put", "nodes", "1", b"a"]) == {}
    assert app.ok(["meta_put", "settings", "x", b"y"]) == {}
    assert app.state.meta_get("nodes", "1") == b"a"
    assert app.state.meta_get("nodes", "3") is None
    assert app.state.meta_get("plugins", "x") is None
    assert app.state.meta_items("nodes") == [("1", b"a"), ("2", b"b")]
    assert app.state.meta_items("plugins") == []
    assert app.ok(["meta_del", "nodes", "1"]) == {"existed": True}
    assert app.ok(["meta_del", "nodes", "1"]) == {"existed": False}
    assert app.ok(["meta_del", "nowhere", "1"]) == {"existed": False}
    assert app.state.meta_items("nodes") == [("2", b"b")]
    # meta writes are not KV writes: the KV revision does not move
    assert app.state.revision == 0
    assert [(e.kind, e.key) for e in app.events] == [
        ("meta.put", "nodes/2"),
        ("meta.put", "nodes/1"),
        ("meta.put", "settings/x"),
        ("meta.delete", "nodes/1"),
    ]


def test_meta_tables_are_apart_from_user_keys(app: Applier) -> None:
    app.ok(["meta_put", "settings", "k", b"meta"])
    app.ok(["put", "k", b"user"])
    assert app.state.get("k") == Entry(b"user", 1, 1, 1)
    assert app.state.meta_get("settings", "k") == b"meta"
    assert app.state.scan("", 10).entries == [("k", Entry(b"user", 1, 1, 1))]


def test_meta_cas_put_replace_delete_and_fail(app: Applier) -> None:
    assert app.ok(["meta_cas", "plugins", "p", None, b"v1"]) == {}
    assert app.ok(["meta_cas", "plugins", "p", b"v1", b"v2"]) == {}
    code, _, details = app.err(["meta_cas", "plugins", "p", b"v1", b"v3"])
    assert (code, details) == ("CAS_FAILED", {"actual_found": True, "actual_value": b"v2"})
    code, _, details = app.err(["meta_cas", "plugins", "p", None, b"v3"])
    assert (code, details) == ("CAS_FAILED", {"actual_found": True, "actual_value": b"v2"})
    code, _, details = app.err(["meta_cas", "plugins", "q", b"v", None])
    assert (code, details) == ("CAS_FAILED", {"actual_found": False, "actual_value": None})
    assert app.ok(["meta_cas", "plugins", "p", b"v2", None]) == {}
    assert app.state.meta_get("plugins", "p") is None
    assert app.ok(["meta_cas", "plugins", "p", None, None]) == {}  # absent stays absent
    assert [e.kind for e in app.events] == ["meta.put", "meta.put", "meta.delete"]
    assert app.state.meta_tables() == []


def test_meta_op_validation(app: Applier) -> None:
    before = app.state.state_hash()
    bad = [
        ["meta_put", "", "k", b"v"],
        ["meta_put", "t" * 65, "k", b"v"],
        ["meta_put", "a/b", "k", b"v"],
        ["meta_put", 1, "k", b"v"],
        ["meta_put", "t", "", b"v"],
        ["meta_put", "t", 5, b"v"],
        ["meta_put", "t", "k", "v"],
        ["meta_put", "t", "k", None],
        ["meta_put", "t", "k"],
        ["meta_del", "t"],
        ["meta_del", "t", b"k"],
        ["meta_cas", "t", "k", "v", None],
        ["meta_cas", "t", "k", None, "v"],
        ["meta_cas", "t", "k", None],
    ]
    for op in bad:
        assert app.err(op)[0] == "INVALID_REQUEST", op
    assert app.err(["meta_put", "t", "k" * 1025, b""])[0] == "KEY_TOO_LARGE"
    assert app.err(["meta_put", "t", "k", b"v" * (1024 * 1024 + 1)])[0] == "VALUE_TOO_LARGE"
    # the reserved prefix guards user keys only; the cluster's own records may use it
    assert app.ok(["meta_put", "settings", "__aspen/x", b""]) == {}
    assert app.state.meta_items("settings") == [("__aspen/x", b"")]
    assert app.ok(["meta_del", "settings", "__aspen/x"]) == {"existed": True}
    assert app.state.state_hash() == before


# -- blob index --------------------------------------------------------------------------------


def test_blob_add_records_size_and_accumulates_holders(app: Applier) -> None:
    assert app.ok(["blob_add", H1, 10, 1]) == {}
    assert app.ok(["blob_add", H1, 10, 3]) == {}
    assert app.ok(["blob_add", H1, 10, 3]) == {}
    assert app.ok(["blob_add", H2, 0, 2]) == {}
    assert app.state.blob_record(H1) == BlobRecord(10, frozenset({1, 3}))
    assert app.state.blob_record("c" * 64) is None
    assert app.state.blob_records() == [
        (H1, BlobRecord(10, frozenset({1, 3}))),
        (H2, BlobRecord(0, frozenset({2}))),
    ]
    assert app.state.revision == 0
    assert app.events == []


def test_blob_add_with_another_size_for_a_known_hash_is_refused(app: Applier) -> None:
    app.ok(["blob_add", H1, 10, 1])
    assert app.err(["blob_add", H1, 11, 2])[0] == "BLOB_CORRUPT"
    assert app.state.blob_record(H1) == BlobRecord(10, frozenset({1}))


def test_blob_add_validation(app: Applier) -> None:
    bad = [
        ["blob_add", "A" * 64, 1, 1],
        ["blob_add", "a" * 63, 1, 1],
        ["blob_add", "g" * 64, 1, 1],
        ["blob_add", b"a" * 64, 1, 1],
        ["blob_add", H1, -1, 1],
        ["blob_add", H1, BLOB_MAX_BYTES + 1, 1],
        ["blob_add", H1, 1.0, 1],
        ["blob_add", H1, True, 1],
        ["blob_add", H1, 1, 0],
        ["blob_add", H1, 1, -2],
        ["blob_add", H1, 1, "1"],
        ["blob_add", H1, 1],
        ["blob_add", H1, 1, 1, 1],
    ]
    for op in bad:
        assert app.err(op)[0] == "INVALID_REQUEST", op
    assert app.state.blob_records() == []
    assert app.ok(["blob_add", H1, BLOB_MAX_BYTES, 1]) == {}


# -- keys and values at the edges ------------------------------------------------------------


def test_key_bounds_count_utf8_bytes(app: Applier) -> None:
    assert app.ok(["put", "k" * 1024, b""])["revision"] == 1
    assert app.err(["put", "k" * 1025, b""])[0] == "KEY_TOO_LARGE"
    assert app.ok(["put", "é" * 512, b""])["revision"] == 2  # 1,024 bytes
    assert app.err(["put", "é" * 513, b""])[0] == "KEY_TOO_LARGE"  # 513 chars, 1,026 bytes
    assert app.err(["put", "😀" * 257, b""])[0] == "KEY_TOO_LARGE"  # 257 chars, 1,028 bytes
    assert app.err(["put", "", b""])[0] == "INVALID_REQUEST"
    assert app.err(["put", "\ud800", b""])[0] == "INVALID_REQUEST"  # not encodable as UTF-8


def test_reserved_prefix(app: Applier) -> None:
    for op in (
        ["put", "__aspen/k", b""],
        ["del", "__aspen/"],
        ["cas", "__aspen/x", None, b""],
        ["cad", "__aspen/x", b""],
    ):
        assert app.err(op)[0] == "RESERVED_KEY", op
    assert app.ok(["put", "__aspen", b""])["revision"] == 1  # only the prefix with its slash is reserved
    assert app.ok(["put", "_aspen/k", b""])["revision"] == 2


def test_value_bound(app: Applier) -> None:
    assert app.ok(["put", "k", b"x" * (1024 * 1024)])["revision"] == 1
    assert app.err(["put", "k", b"x" * (1024 * 1024 + 1)])[0] == "VALUE_TOO_LARGE"
    assert app.err(["cas", "k", b"x" * (1024 * 1024 + 1), b""])[0] == "VALUE_TOO_LARGE"
    assert app.err(["cad", "k", b"x" * (1024 * 1024 + 1)])[0] == "VALUE_TOO_LARGE"


# -- applying entries --------------------------------------------------------------------------


def test_one_result_per_op_in_order_and_bad_ops_do_not_stop_the_rest(app: Applier) -> None:
    results = app.apply(["put", "a", b"1"], ["nope"], ["put", "b", 2], ["put", "c", b"3"], ["del", "a"])
    assert [r[0] for r in results] == ["ok", "err", "err", "ok", "ok"]
    assert results[4][1] == {"deleted": True, "revision": 3}
    assert app.state.applied_index == 1


def test_applied_index_is_the_last_index_given() -> None:
    state = StateMachine()
    assert state.applied_index == 0
    state.apply_ops([], 7, 2)
    assert state.applied_index == 7
    state.apply_ops([["put", "k", b""]], 9, 2)
    assert state.applied_index == 9


def test_tuples_are_accepted_where_lists_are_expected(app: Applier) -> None:
    assert app.ok(("put", "k", b"v"))["revision"] == 1
    assert app.ok(("batch", (("put", "a", b""), ("del", "k"))))["revision"] == 2
    assert app.ok(("cbatch", (("absent", "k"),), (("put", "b", b""),)))["success"] is True
    results, _ = app.state.apply_ops((("put", "z", b""),), 99, 1)
    assert results[0][0] == "ok"


def test_reads_delegate_to_the_kv_store(app: Applier) -> None:
    app.apply(*[["put", f"p/{i}", b"v"] for i in range(5)])
    page = app.state.scan("p/", 2)
    assert [k for k, _ in page.entries] == ["p/0", "p/1"]
    assert page.next_after == "p/1"
    assert app.state.scan("p/", 10, "p/3").entries == [("p/4", Entry(b"v", 1, 5, 5))]
    assert app.state.get("p/4") == Entry(b"v", 1, 5, 5)


def test_meta_cas_all_writes_all_or_none(app: Applier) -> None:
    assert app.ok(["meta_cas_all", [["plugins", "a", None, b"1"], ["registry", "gen", None, b"1"]]]) == {}
    # One stale expectation: nothing is written, and the failed row is named.
    code, _, details = app.err(
        ["meta_cas_all", [["plugins", "b", None, b"2"], ["registry", "gen", None, b"2"]]]
    )
    assert code == "CAS_FAILED" and details["failed_index"] == 1
    assert app.state.meta_get("plugins", "b") is None and app.state.meta_get("registry", "gen") == b"1"
    assert app.ok(["meta_cas_all", [["plugins", "a", b"1", None], ["registry", "gen", b"1", b"2"]]]) == {}
    assert app.state.meta_items("plugins") == [] and app.state.meta_get("registry", "gen") == b"2"
    for bad in (
        ["meta_cas_all", []],
        ["meta_cas_all", [["t", "k", None]]],
        ["meta_cas_all", "x"],
        ["meta_cas_all", [["t", "k", None, b"1"], ["t", "k", None, b"2"]]],
        ["meta_cas_all", [["t", "k", None, b"1"]] * 17],
        ["meta_cas_all", [["t/x", "k", None, b"1"]]],
    ):
        assert app.err(bad)[0] == "INVALID_REQUEST", bad
