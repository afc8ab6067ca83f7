"""aspen-cli: argument parsing, output formats and exit codes, run in-process via main()."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from aspen import cli
from aspen.cli.kv import parse_batch_op
from aspen.cli.registry import Commands, UsageError
from tests.wire.fakes import COOKIE, ServerThread


@pytest.fixture
def aspen(server: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run aspen-cli against the test server through the environment; returns (status, out, err)."""
    monkeypatch.setenv("ASPEN_CLUSTER", server.addr)
    monkeypatch.setenv("ASPEN_COOKIE", COOKIE)

    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as e:
            cli.main(list(argv))
        out, err = capsys.readouterr()
        return int(e.value.code or 0), out, err

    return run


def test_kv_set_get_human_and_json(aspen, server: ServerThread) -> None:  # type: ignore[no-untyped-def]
    assert aspen("kv", "set", "greeting", "héllo") == (0, "OK revision=1\n", "")
    assert aspen("kv", "get", "greeting") == (0, "héllo\n", "")
    status, out, _ = aspen("--json", "kv", "get", "greeting")
    assert status == 0 and json.loads(out)["value"] == "héllo" and json.loads(out)["was_found"] is True
    status, out, _ = aspen("kv", "get", "greeting", "--json")  # --json after the command works too
    assert json.loads(out)["value"] == "héllo"
    assert server.handler.kv["greeting"] == "héllo".encode()


def test_binary_values(aspen, server: ServerThread, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "v.bin"
    f.write_bytes(b"\xff\x00\xfe")
    assert aspen("kv", "set", "bin", "--file", str(f))[0] == 0
    assert server.handler.kv["bin"] == b"\xff\x00\xfe"
    status, out, _ = aspen("kv", "get", "bin")
    assert status == 0 and out.startswith("ff00fe") and "not UTF-8" in out
    status, out, _ = aspen("--json", "kv", "get", "bin")
    assert json.loads(out)["value"] == {"base64": "/wD+"}


def test_missing_key_is_one_error_line(aspen) -> None:  # type: ignore[no-untyped-def]
    status, out, err = aspen("kv", "get", "missing")
    assert (status, out) == (1, "") and err == "error: NOT_FOUND: no key 'missing'\n"
    status, out, _ = aspen("--json", "kv", "get", "missing")
    assert status == 0 and json.loads(out)["was_found"] is False


def test_request_errors_exit_1_with_the_code(aspen) -> None:  # type: ignore[no-untyped-def]
    status, _, err = aspen("kv", "set", "__aspen/x", "v")
    assert status == 1 and err.startswith("error: RESERVED_KEY: ")
    aspen("kv", "set", "c", "old")
    status, _, err = aspen("kv", "cas", "c", "--expected", "other", "--new", "x")
    assert status == 1 and err.startswith("error: CAS_FAILED: ") and err.count("\n") == 1
    assert aspen("kv", "cas", "c", "--expected", "old", "--new", "new")[0] == 0
    assert aspen("kv", "cas", "fresh", "--expect-absent", "--new", "1")[0] == 0


def test_usage_errors_exit_2(aspen, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert aspen("kv")[0] == 2  # argparse: missing command
    assert aspen("kv", "cas", "k", "--new", "x")[0] == 2  # neither --expected nor --expect-absent
    assert aspen("kv", "cas", "k", "--expected", "a", "--expect-absent", "--new", "x")[0] == 2
    assert aspen("kv", "set", "k")[0:1] == (2,)  # no VALUE and no --file
    status, _, err = aspen("kv", "batch", "put:k=v")
    assert status == 2 and err == "error: INVALID_REQUEST: batch op 'put:k=v': use set:KEY=VALUE or del:KEY\n"
    assert aspen("kv", "scan", "p", "--limit", "0")[0] == 2
    assert aspen("--cluster", "no-port", "cluster", "status")[0] == 2
    assert aspen("--cookie", "short", "cluster", "status")[0] == 2
    assert aspen("--timeout", "0", "cluster", "status")[0] == 2


def test_delete_scan_and_pages(aspen) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        aspen("kv", "set", f"s/{i}", f"v{i}")
    status, out, _ = aspen("kv", "scan", "s/", "--limit", "2")
    assert status == 0 and out.splitlines() == ["s/0\tv0", "s/1\tv1", "(more: --token s/1, or --all)"]
    status, out, _ = aspen("kv", "scan", "s/", "--limit", "2", "--token", "s/1")
    assert out.splitlines()[:2] == ["s/2\tv2", "s/3\tv3"]
    status, out, _ = aspen("kv", "scan", "s/", "--all")
    assert len(out.splitlines()) == 5
    status, out, _ = aspen("--json", "kv", "scan", "s/", "--limit", "10")
    assert [e["key"] for e in json.loads(out)["entries"]] == [f"s/{i}" for i in range(5)]
    assert aspen("kv", "delete", "s/0") == (0, "deleted\n", "")
    assert aspen("kv", "delete", "s/0") == (0, "not found\n", "")
    assert aspen("kv", "scan", "nothing/") == (0, "(no keys)\n", "")


def test_batch_args_and_json(aspen, server: ServerThread) -> None:  # type: ignore[no-untyped-def]
    server.handler.kv["gone"] = b"x"
    assert aspen("kv", "batch", "set:a=1", "set:b=x=y", "del:gone")[0] == 0
    assert server.handler.kv == {"a": b"1", "b": b"x=y"}
    ops = json.dumps([{"op": "Set", "key": "j", "value": "v"}, {"op": "Delete", "key": "a"}])
    status, out, _ = aspen("--json", "kv", "batch", "--ops-json", ops)
    assert status == 0 and json.loads(out)["count"] == 2 and server.handler.kv == {"b": b"x=y", "j": b"v"}


def test_parse_batch_op() -> None:
    assert parse_batch_op("set:k=v") == {"op": "Set", "key": "k", "value": b"v"}
    assert parse_batch_op("set:k=") == {"op": "Set", "key": "k", "value": b""}
    assert parse_batch_op("del:k") == {"op": "Delete", "key": "k"}
    for bad in ("set:k", "set:=v", "del:", "k=v", "nope:k"):
        with pytest.raises(UsageError):
            parse_batch_op(bad)


def test_blob_commands(aspen, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "data.bin"
    f.write_bytes(bytes(range(256)) * 10)
    status, out, _ = aspen("blob", "put", str(f))
    digest = out.split()[0]
    assert status == 0 and len(digest) == 64 and out.strip().endswith("(2560 bytes)")
    assert aspen("blob", "has", digest) == (0, "yes\n", "")
    assert aspen("blob", "has", "0" * 64) == (0, "no\n", "")
    back = tmp_path / "back.bin"
    assert aspen("blob", "get", digest, "-o", str(back))[0] == 0
    assert back.read_bytes() == f.read_bytes()
    text = tmp_path / "text"
    text.write_bytes(b"raw blob bytes")
    digest2 = aspen("blob", "put", str(text))[1].split()[0]
    assert aspen("blob", "get", digest2) == (0, "raw blob bytes", "")  # raw to stdout, no newline
    status, _, err = aspen("blob", "get", "0" * 64)
    assert status == 1 and err.startswith("error: BLOB_NOT_FOUND: ")
    status, _, err = aspen("blob", "get", "not-a-hash")
    assert status == 1 and err.startswith("error: INVALID_REQUEST: hash")
    status, _, err = aspen("blob", "put", str(tmp_path / "absent"))
    assert status == 1 and err.startswith("error: IO_ERROR: ")


def test_cluster_status(aspen) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = aspen("cluster", "status")
    assert status == 0 and out.splitlines()[0] == "node 1 answered; leader: 1" and "leader" in out.splitlines()[2]
    status, out, _ = aspen("--json", "cluster", "status")
    assert json.loads(out)["nodes"][0]["node_id"] == 1


def test_flags_beat_the_environment(aspen, monkeypatch: pytest.MonkeyPatch, server: ServerThread) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ASPEN_COOKIE", "wrong-cookie-0123456789")
    status, _, err = aspen("kv", "get", "k")
    assert status == 1 and err == "error: AUTH_FAILED: wrong or missing cluster cookie\n"
    assert aspen("--cookie", COOKIE, "kv", "set", "k", "v")[0] == 0
    monkeypatch.setenv("ASPEN_CLUSTER", "127.0.0.1:1")
    assert aspen("--cluster", server.addr, "--cookie", COOKIE, "kv", "get", "k") == (0, "v\n", "")


def test_groups_are_modules_and_can_share_a_group() -> None:
    # Another module may add a command to an existing group without editing this package.
    class Extra:
        ORDER = 99

        @staticmethod
        def register(commands: Commands) -> None:
            commands.group("cluster", "cluster state")
            commands.command("cluster", "add-node", lambda a, c: "added", "add a node")

    from aspen.cli import cluster, kv

    ap = cli.build_parser([kv, cluster, Extra])  # type: ignore[list-item]
    args = ap.parse_args(["cluster", "add-node"])
    assert args.handler(args, None) == "added"
    assert ap.parse_args(["cluster", "status"]).cmd == "status"
    names = {a.dest for a in ap._actions if isinstance(a, argparse._SubParsersAction)}
    assert names == {"group"}
    groups = [m.__name__ for m in __import__("aspen.cli.registry", fromlist=["discover"]).discover(cli)]
    assert groups[:3] == ["aspen.cli.kv", "aspen.cli.blob", "aspen.cli.cluster"]
