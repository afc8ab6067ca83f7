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
from wire.errors import AspenError, ErrorCode


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
    status, out, _ = aspen("--json", "kv", "get", "missing")  # the same status with --json
    assert status == 1 and json.loads(out)["was_found"] is False


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
    assert aspen("kv", "delete", "s/0") == (1, "", "error: NOT_FOUND: no key 's/0' (nothing deleted)\n")
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
    assert (
        status == 0
        and out.splitlines()[0] == "node 1 answered; leader: 1"
        and "leader" in out.splitlines()[2]
    )
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


def test_global_options_go_before_or_after_and_json_everywhere(aspen, server: ServerThread) -> None:  # type: ignore[no-untyped-def]
    server.handler.kv["k"] = b"v"
    assert aspen("kv", "get", "k", "--cluster", server.addr, "--timeout", "5") == (0, "v\n", "")
    # Every leaf command takes --json after its name (plugin list/info, plugin-keys list did not).
    ap = cli.build_parser()
    leaves = [(g, c) for g, sub in _subcommands(ap).items() for c in (_subcommands(sub) or {None: None})]
    assert ("plugin", "list") in leaves and ("plugin-keys", "list") in leaves and ("rpc", None) in leaves
    for group, command in leaves:
        argv = [group, *([command] if command else []), "--json", "--cookie", COOKIE, "--node", "2", "--help"]
        with pytest.raises(SystemExit) as e:
            ap.parse_args(argv)
        assert e.value.code == 0, argv  # --help parsed after the global options: they are known here


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_has_help_text() -> None:
    ap = cli.build_parser()
    for group, sub in _subcommands(ap).items():
        assert sub.description, group
        for name, leaf in _subcommands(sub).items():
            assert leaf.description, f"{group} {name}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--version"], ["kv", "get", "--version"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 0 and capsys.readouterr().out.startswith("aspen-cli ")


def test_kv_get_raw_writes_the_bytes(server: ServerThread, monkeypatch: pytest.MonkeyPatch,
                                     capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    blob = bytes(range(256))
    server.handler.kv["b"] = blob
    monkeypatch.setenv("ASPEN_CLUSTER", server.addr)
    monkeypatch.setenv("ASPEN_COOKIE", COOKIE)
    with pytest.raises(SystemExit) as e:
        cli.main(["kv", "get", "b", "--raw"])
    assert e.value.code == 0 and capsysbinary.readouterr().out == blob  # the bytes, not hex


def test_kv_binary_out_and_stdin_in(
    aspen, server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import io

    blob = bytes(range(256))
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(blob)))
    assert aspen("kv", "set", "b", "-")[0] == 0  # `-` reads stdin; it stored a literal "-"
    assert server.handler.kv["b"] == blob
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe")))
    assert aspen("kv", "set", "c", "--file", "-")[0] == 0
    assert server.handler.kv["c"] == b"\xff\xfe"
    out = tmp_path / "out.bin"
    assert aspen("kv", "get", "b", "-o", str(out))[0] == 0 and out.read_bytes() == blob
    newf = tmp_path / "new.bin"
    newf.write_bytes(b"\x00new")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe")))
    assert aspen("kv", "cas", "c", "--expected-file", "-", "--file", str(newf))[0] == 0
    assert server.handler.kv["c"] == b"\x00new"


def test_rpc_body_flags_and_json_output(
    aspen, server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import io

    status, out, _ = aspen("rpc", "WriteKey", "--data", '{"key": "r", "value": {"base64": "/wA="}}')
    assert status == 0 and server.handler.kv["r"] == b"\xff\x00"
    status, out, _ = aspen("rpc", "ReadKey", "--data", '{"key": "r"}')
    assert status == 0 and json.loads(out)["was_found"] is True and "True" not in out
    status, out, _ = aspen("rpc", "ReadKey", "--data", '{"key": "r"}', "--json")  # --json: output, one line
    assert status == 0 and json.loads(out)["value"] == {"base64": "/wA="} and out.count("\n") == 1
    body = tmp_path / "body.json"
    body.write_text('{"key": "r2", "value": {"utf8": "x"}}')
    assert aspen("rpc", "WriteKey", "--data-file", str(body))[0] == 0 and server.handler.kv["r2"] == b"x"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"key": "r3", "value": {"utf8": "y"}}')))
    assert aspen("rpc", "WriteKey", "--data", "-")[0] == 0 and server.handler.kv["r3"] == b"y"
    # Invalid base64 stored an empty value; a bad body was a traceback.
    for bad in ('{"key": "r", "value": {"base64": "!!!"}}', "{bad", "[1,2]"):
        status, _, err = aspen("rpc", "WriteKey", "--data", bad)
        assert status == 2 and err.startswith("error: INVALID_REQUEST: ") and err.count("\n") == 1, (bad, err)
    assert server.handler.kv["r"] == b"\xff\x00"


def test_exit_codes_agree_with_and_without_json(aspen, server: ServerThread) -> None:  # type: ignore[no-untyped-def]
    for extra in ((), ("--json",)):
        assert aspen("kv", "get", "missing", *extra)[0] == 1
        assert aspen("kv", "delete", "missing", *extra)[0] == 1
    server.handler.has_quorum = False
    status, out, _ = aspen("cluster", "status")
    assert "quorum: NO" in out and status == 3
    assert aspen("cluster", "status", "--json")[0] == 3


def test_nothing_listening_exits_3_with_one_line(aspen) -> None:  # type: ignore[no-untyped-def]
    from tests.wire.test_client import dead_addr

    status, out, err = aspen("--cluster", f"{dead_addr()},{dead_addr()}", "kv", "get", "k")
    assert (status, out) == (3, "") and err.startswith("error: UNAVAILABLE: ") and err.count("\n") == 1


def test_cookie_file(aspen, server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("ASPEN_COOKIE")
    f = tmp_path / "cookie"
    f.write_text(COOKIE + "\n")
    f.chmod(0o600)
    assert aspen("kv", "set", "k", "v", "--cookie-file", str(f))[0] == 0
    f.chmod(0o644)
    status, _, err = aspen("kv", "get", "k", "--cookie-file", str(f))
    assert status == 2 and "readable by others" in err


def _plugin_node(server: ServerThread, manifests: list[dict | None], nodes: dict) -> None:  # type: ignore[type-arg]
    """PluginInfo answers the next of `manifests` (None: not installed) with `nodes`."""
    async def plugin(req: dict) -> dict | None:  # type: ignore[type-arg]
        if req["type"] == "PluginInfo":
            manifest = manifests.pop(0) if len(manifests) > 1 else manifests[0]
            if manifest is None:
                raise AspenError(ErrorCode.NOT_FOUND, "no plugin p")
            return {"type": "PluginInfoResult", "name": "p", "manifest": manifest, "nodes": nodes}
        if req["type"] == "PluginInstall":
            return {"type": "PluginInstallResult", "name": "p", "version": "0.1.0", "upgraded": True,
                    "wasm_hash": "ab" * 32}
        return None

    server.handler.intercept = plugin


def test_plugin_reinstall_unchanged_and_wait_with_a_node_down(
    aspen, server: ServerThread, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    wasm, manifest = tmp_path / "p.wasm", tmp_path / "plugin.json"
    wasm.write_bytes(b"\x00asm\x01\x00\x00\x00")
    manifest.write_text('{"name": "p", "version": "0.1.0", "handles": ["Ping"]}')
    installed = {"name": "p", "version": "0.1.0", "wasm_hash": "ab" * 32}
    ready = {"state": "Ready", "version": "0.1.0"}
    _plugin_node(server, [installed], {"1": ready, "2": ready})
    status, out, _ = aspen("plugin", "install", str(wasm), "--manifest", str(manifest))
    assert status == 0 and out.startswith("unchanged p 0.1.0"), out  # it said "upgraded"
    _plugin_node(server, [{**installed, "wasm_hash": "cd" * 32}, installed], {"1": ready, "2": ready})
    assert aspen("plugin", "install", str(wasm), "--manifest", str(manifest))[1].startswith("upgraded p")
    # Node 2 is down: --wait returns once node 1 runs it, and says node 2 did not confirm.
    _plugin_node(
        server, [None, installed], {"1": ready, "2": {"state": "Unreachable", "reason": "connection refused"}}
    )
    status, out, _ = aspen("plugin", "install", str(wasm), "--manifest", str(manifest), "--wait")
    assert status == 0 and out.startswith("upgraded p") and "node(s) 2 unreachable" in out, out


def test_batch_ops_json_takes_base64_and_refuses_bad_base64(aspen, server: ServerThread) -> None:  # type: ignore[no-untyped-def]
    ops = json.dumps([{"op": "Set", "key": "b64", "value": {"base64": "/wA="}}])
    assert aspen("kv", "batch", "--ops-json", ops)[0] == 0 and server.handler.kv["b64"] == b"\xff\x00"
    bad = json.dumps([{"op": "Set", "key": "b64", "value": {"base64": "!!!"}}])
    status, _, err = aspen("kv", "batch", "--ops-json", bad)
    assert status == 2 and err.startswith("error: INVALID_REQUEST: not base64")
    assert server.handler.kv["b64"] == b"\xff\x00"


def test_scan_keys_only_and_count(aspen, server: ServerThread) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        server.handler.kv[f"kc/{i}"] = b"\xff" * 10
    assert aspen("kv", "scan", "kc/", "--keys-only") == (0, "".join(f"kc/{i}\n" for i in range(5)), "")
    status, out, _ = aspen("kv", "scan", "kc/", "--keys-only", "--limit", "2", "--json")
    assert status == 0 and json.loads(out) == {"keys": ["kc/0", "kc/1"], "continuation_token": "kc/1"}
    assert aspen("kv", "scan", "kc/", "--count", "--limit", "2") == (0, "5\n", "")
    assert json.loads(aspen("kv", "scan", "kc/", "--count", "--json")[1]) == {"count": 5}


def test_plugin_logs_follow_json_is_one_object_per_line() -> None:
    from aspen.cli._plugin_logs import merged

    nodes = {"2": {"lines": [{"time_ms": 2, "seq": 1, "level": "info", "message": "b"}]},
             "1": {"lines": [{"time_ms": 1, "seq": 1, "level": "warn", "message": "a"}]}}
    assert [json.loads(line) for line in merged(nodes, as_json=True)] == [
        {"node": 1, "time_ms": 1, "seq": 1, "level": "warn", "message": "a"},
        {"node": 2, "time_ms": 2, "seq": 1, "level": "info", "message": "b"}]
    assert merged(nodes)[0].endswith("node1 warn  a")
