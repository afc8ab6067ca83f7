"""KV v2 in the test kit: Vault's semantics, every operation and its errors, nothing in clear."""

from __future__ import annotations

import pytest

from tests.secrets.conftest import Kit

SECRET = "s3cr3t-Pa55word-e5b1"


def test_put_get_versions_and_cas(kit: Kit) -> None:
    r = kit.ok("SecretsKvPut", path="app/db", data={"user": "u", "pass": SECRET})
    assert (r["type"], r["version"], r["destroyed"], r["deletion_ms"]) == ("SecretsKvWritten", 1, False, 0)
    assert kit.ok("SecretsKvGet", path="app/db")["data"] == {"user": "u", "pass": SECRET}
    assert kit.ok("SecretsKvPut", path="app/db", data={"user": "u", "pass": "two"}, cas=1)["version"] == 2
    msg = kit.err("SecretsKvPut", "CAS_MISMATCH", path="app/db", data={"x": "y"}, cas=1)
    assert "current version 2" in msg
    kit.err("SecretsKvPut", "CAS_MISMATCH", path="app/db", data={"x": "y"}, cas=0)  # 0: must not exist
    assert kit.ok("SecretsKvPut", path="app/new", data={"a": "1"}, cas=0)["version"] == 1
    assert kit.ok("SecretsKvGet", path="app/db", version=1)["data"]["pass"] == SECRET
    assert kit.ok("SecretsKvGet", path="app/db")["version"] == 2
    assert "no version 9" in kit.err("SecretsKvGet", "NOT_FOUND", path="app/db", version=9)
    kit.err("SecretsKvGet", "NOT_FOUND", path="app/missing")
    # Nothing in clear in the namespace: keys hold paths, values are sealed.
    for key, value in kit.h.kv.items():
        assert SECRET.encode() not in value and b"pass" not in value, key


def test_patch_merges_and_needs_a_live_latest(kit: Kit) -> None:
    kit.err("SecretsKvPatch", "NOT_FOUND", path="p", data={"a": "1"})
    kit.ok("SecretsKvPut", path="p", data={"a": "1", "b": "2"})
    r = kit.ok("SecretsKvPatch", path="p", data={"b": None, "c": "3"})
    assert r["version"] == 2 and kit.ok("SecretsKvGet", path="p")["data"] == {"a": "1", "c": "3"}
    kit.ok("SecretsKvDelete", path="p")
    kit.err("SecretsKvPatch", "NOT_FOUND", path="p", data={"a": "9"})


def test_delete_undelete_destroy(kit: Kit) -> None:
    for i in range(3):
        kit.ok("SecretsKvPut", path="d", data={"v": str(i)})
    r = kit.ok("SecretsKvDelete", path="d")  # the latest
    assert r["versions"] == [3]
    got = kit.ok("SecretsKvGet", path="d")
    assert got["data"] is None and got["deletion_ms"] > 0 and not got["destroyed"]
    kit.ok("SecretsKvDelete", path="d", versions=[1])
    kit.ok("SecretsKvUndelete", path="d", versions=[1, 3])
    assert kit.ok("SecretsKvGet", path="d")["data"] == {"v": "2"}
    before = len(kit.h.kv)
    kit.ok("SecretsKvDestroy", path="d", versions=[2])
    assert len(kit.h.kv) == before - 1  # the data record is gone for good
    got = kit.ok("SecretsKvGet", path="d", version=2)
    assert got["data"] is None and got["destroyed"] is True
    kit.ok("SecretsKvUndelete", path="d", versions=[2])  # a destroyed version stays destroyed
    assert kit.ok("SecretsKvGet", path="d", version=2)["destroyed"] is True
    kit.err("SecretsKvDestroy", "INVALID_REQUEST", path="d")  # versions required
    kit.err("SecretsKvUndelete", "INVALID_REQUEST", path="d", versions=[0])
    kit.err("SecretsKvDestroy", "NOT_FOUND", path="d", versions=[7])
    meta = kit.ok("SecretsKvMetadataGet", path="d")["metadata"]
    assert [(v["version"], v["destroyed"], v["deletion_ms"] > 0) for v in meta["versions"]] == [
        (1, False, False), (2, True, False), (3, False, False)]


def test_metadata_max_versions_cas_required_custom(kit: Kit) -> None:
    for i in range(12):
        kit.ok("SecretsKvPut", path="m", data={"v": str(i)})
    meta = kit.ok("SecretsKvMetadataGet", path="m")["metadata"]
    assert (meta["current_version"], meta["oldest_version"], len(meta["versions"])) == (
        12,
        3,
        10,
    )  # default 10
    r = kit.ok(
        "SecretsKvMetadataPut",
        path="m",
        max_versions=2,
        cas_required=True,
        custom_metadata={"owner": "team-a"},
    )
    assert r["metadata"]["oldest_version"] == 11 and r["metadata"]["custom_metadata"] == {"owner": "team-a"}
    assert "no version 5" in kit.err("SecretsKvGet", "NOT_FOUND", path="m", version=5)  # pruned
    assert sum(k.startswith("secrets:kv/d/") for k in kit.h.kv) == 2  # pruned data is gone
    kit.err("SecretsKvPut", "CAS_REQUIRED", path="m", data={"v": "x"})
    assert kit.ok("SecretsKvPut", path="m", data={"v": "x"}, cas=12)["custom_metadata"] == {"owner": "team-a"}
    kit.err("SecretsKvMetadataPut", "INVALID_REQUEST", path="m", max_versions=1001)
    kit.err("SecretsKvMetadataPut", "INVALID_REQUEST", path="m", custom_metadata={"k": 1})
    r = kit.ok("SecretsKvMetadataDelete", path="m")
    assert r["existed"] is True and not any(k.startswith("secrets:kv/") for k in kit.h.kv)
    kit.err("SecretsKvGet", "NOT_FOUND", path="m")


def test_delete_version_after(kit: Kit) -> None:
    kit.ok("SecretsKvMetadataPut", path="t", delete_version_after_ms=1)
    r = kit.ok("SecretsKvPut", path="t", data={"a": "1"})
    assert r["deletion_ms"] == r["created_ms"] + 1
    import time

    time.sleep(0.01)
    assert kit.ok("SecretsKvGet", path="t")["data"] is None  # deleted once its time passed


def test_list(kit: Kit) -> None:
    for p in ["app/db", "app/api/key", "app/api/cert", "other/x", "top"]:
        kit.ok("SecretsKvPut", path=p, data={"a": "1"})
    assert kit.ok("SecretsKvList", path="app/")["keys"] == ["api/", "db"]
    kit.ok("SecretsKvPut", path="apple", data={"a": "1"})
    assert kit.ok("SecretsKvList", path="app")["keys"] == ["api/", "db"]  # a directory, not a prefix
    assert kit.ok("SecretsKvList", path="")["keys"] == ["app/", "apple", "other/", "top"]
    assert kit.ok("SecretsKvList", path="none/")["keys"] == []


@pytest.mark.parametrize("path", ["", "/abs", "a//b", "dir/", "a/../b", "a\x00b", "x" * 513, 7, b"\xff\xfe"])
def test_bad_paths(kit: Kit, path: object) -> None:
    kit.err("SecretsKvPut", "INVALID_REQUEST", path=path, data={"a": "1"})


def test_bad_data_and_oversize(kit: Kit) -> None:
    kit.err("SecretsKvPut", "INVALID_REQUEST", path="a", data="not a map")
    kit.err("SecretsKvPut", "INVALID_REQUEST", path="a", data={1: "x"})
    kit.err("SecretsKvPut", "VALUE_TOO_LARGE", path="a", data={"big": "x" * (512 * 1024)})
    kit.ok("SecretsKvPut", path="a", data={"big": "x" * (500 * 1024)})  # under the documented limit
    kit.err("SecretsKvPut", "INVALID_REQUEST", path="a", data={"a": "1"}, cas=-1)


def test_sealed_and_no_caller(kit: Kit) -> None:
    kit.ok("SecretsKvPut", path="a", data={"a": "1"})
    r = kit.h.request("SecretsKvGet", path="a")  # no caller: the node always sets one
    assert r["code"] == "PERMISSION_DENIED"
    key = kit.h.host.data_key
    kit.h.host.data_key = None
    assert kit("SecretsKvGet", path="a")["code"] == "SEALED"
    assert kit("SecretsKvPut", path="b", data={"a": "1"})["code"] == "SEALED"
    kit.h.host.data_key = b"\x00" * 32  # another cluster's data key opens nothing
    assert kit("SecretsKvGet", path="a")["code"] == "DECRYPT_FAILED"
    kit.h.host.data_key = key
    assert kit.ok("SecretsKvGet", path="a")["data"] == {"a": "1"}


def test_a_value_moved_to_another_key_does_not_open(kit: Kit) -> None:
    kit.ok("SecretsKvPut", path="a", data={"v": "A"})
    kit.ok("SecretsKvPut", path="b", data={"v": "B"})
    kv = kit.h.host.kv
    kv["secrets:kv/m/b"] = kv["secrets:kv/m/a"]  # an attacker with write access swaps records
    assert kit("SecretsKvGet", path="b")["code"] == "DECRYPT_FAILED"
