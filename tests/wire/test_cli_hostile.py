"""Every aspen-cli command, run with hostile arguments (bytes that are not UTF-8, empty, huge,
files that do not exist, `-` with nothing on stdin): each ends with a status of aspen/exits.py
and at most one `error: CODE: message` line; never a traceback, never INTERNAL (a bug)."""

from __future__ import annotations

import argparse
import io
import os
from collections.abc import Iterator

import pytest

from aspen import cli
from tests.wire.fakes import COOKIE, ServerThread

HOSTILE = (os.fsdecode(b"k\xff"), "", "x" * 100_000, "/nonexistent/aspen/file", "-", "-1", "0", "[]", "{bad")
# Global options are covered once per value below, not per command.
GLOBAL_DESTS = frozenset(
    {
        "cluster",
        "endpoint",
        "node",
        "cookie",
        "cookie_file",
        "tls_cacert",
        "tls_cert",
        "tls_key",
        "timeout",
        "help",
        "version",
        "json",
    }
)


def _sub(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaves() -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    for group, parser in _sub(cli.build_parser()).items():
        commands = _sub(parser)
        if not commands:
            yield [group], parser
        for name, leaf in commands.items():
            yield [group, name], leaf


def hostile_argvs() -> Iterator[list[str]]:
    for words, leaf in leaves():
        positionals = [a for a in leaf._actions if not a.option_strings]
        valued = [
            a for a in leaf._actions if a.option_strings and a.nargs != 0 and a.dest not in GLOBAL_DESTS
        ]
        for value in HOSTILE:
            args = [value for a in positionals if a.nargs != "*" or value]
            yield [*words, *args]
            for option in valued:
                yield [*words, *args, option.option_strings[-1], value]
    for value in HOSTILE:
        for option in (
            "--cluster",
            "--endpoint",
            "--node",
            "--cookie",
            "--cookie-file",
            "--cacert",
            "--timeout",
        ):
            yield ["kv", "get", "k", option, value]


def test_no_command_prints_a_traceback(server: ServerThread, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    monkeypatch.setenv("ASPEN_CLUSTER", server.addr)
    monkeypatch.setenv("ASPEN_COOKIE", COOKIE)
    monkeypatch.chdir(str(tmp_path))  # -o FILE and friends write here
    ran = 0
    for argv in hostile_argvs():
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        status = e.value.code
        _, err = capsys.readouterr()
        shown = repr(argv)[:200]
        assert "Traceback" not in err and "error: INTERNAL" not in err, f"{shown}:\n{err[-2000:]}"
        assert status in (0, 1, 2, 3), f"{shown}: status {status}"
        if status in (1, 3):
            assert err.startswith("error: ") and err.count("\n") == 1, f"{shown}: {err[:500]!r}"
        ran += 1
    assert ran > 300


def test_plugin_install_with_bad_manifests_and_limits(
    server: ServerThread,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    from pathlib import Path

    monkeypatch.setenv("ASPEN_CLUSTER", server.addr)
    monkeypatch.setenv("ASPEN_COOKIE", COOKIE)
    d = Path(str(tmp_path))
    wasm = d / "p.wasm"
    wasm.write_bytes(b"\x00asm\x01\x00\x00\x00")
    good = '{"name": "p", "version": "0.1.0", "handles": ["Ping"]}'
    manifests = {"invalid.json": b"{bad", "list.json": b"[]", "fields.json": b'{"name": 5, "priority": "x"}',
                 "latin1.json": b'{"name": "p\xe9"}', "good.json": good.encode()}
    for name, body in manifests.items():
        (d / name).write_bytes(body)
    cases = [[str(d / n)] for n in manifests if n != "good.json"]
    cases += [
        [str(d / "good.json"), flag, value]
        for flag, value in (
            ("--priority", "5"),
            ("--execution-timeout-secs", "0"),
            ("--memory-limit", "5"),
            ("--fuel-limit", "-1"),
        )
    ]
    for manifest, *extra in cases:
        with pytest.raises(SystemExit) as e:
            cli.main(["plugin", "install", str(wasm), "--manifest", manifest, *extra])
        _, err = capsys.readouterr()
        assert e.value.code == 2 and err.startswith("error: INVALID_REQUEST: ") and err.count("\n") == 1, (
            manifest,
            extra,
            err,
        )
    assert "PluginInstall" not in server.handler.calls  # refused before sending


@pytest.mark.parametrize("argv", [["kv", "get", "k"], ["cluster", "status", "--watch", "--interval", "0.05"],
                                  ["plugin", "logs", "p", "--follow"]])
def test_ctrl_c_exits_130_quietly(argv: list[str]) -> None:
    """A request waiting on a node that never answers, interrupted: status 130, nothing on
    stderr (it was a KeyboardInterrupt traceback, then "Task was destroyed but it is pending!")."""
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        env = {
            **os.environ,
            "ASPEN_CLUSTER": f"127.0.0.1:{listener.getsockname()[1]}",
            "ASPEN_COOKIE": COOKIE,
        }
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "aspen-cli"), "--timeout", "60", *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        listener.settimeout(30)
        conn, _ = listener.accept()  # the client is now waiting for the node's greeting
        with conn:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err == b"", err.decode(errors="replace")


def _tool_argvs(parser: argparse.ArgumentParser, skip: frozenset[str]) -> Iterator[list[str]]:
    for name, leaf in _sub(parser).items():
        if name in skip:
            continue
        positionals = [a for a in leaf._actions if not a.option_strings]
        valued = [a for a in leaf._actions if a.option_strings and a.nargs != 0 and a.dest != "help"]
        for value in HOSTILE:
            args = [value for _ in positionals]
            for option in valued:
                yield [name, *args, option.option_strings[-1], value]


def _run_tool(main: object, argv: list[str]) -> int:
    try:
        status = main(argv)  # type: ignore[operator]
    except SystemExit as e:
        status = e.code
    return int(status or 0)


@pytest.mark.parametrize("tool", ["aspen-cluster", "cargo aspen-plugin"])
def test_the_other_tools_print_no_traceback(tool: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    from aspen.toolchain import cli as toolchain
    from deploy import launcher

    monkeypatch.chdir(str(tmp_path))  # init, keygen -o and friends write here
    monkeypatch.setenv("HOME", str(tmp_path))
    if tool == "aspen-cluster":
        # up and add with a usable --dir would start real nodes: their bounds are tested elsewhere.
        argvs, main = list(_tool_argvs(launcher.build_parser(), frozenset({"up", "add"}))), launcher.main
    else:
        argvs, main = list(_tool_argvs(toolchain.build_parser(), frozenset({"build"}))), toolchain.run
    for argv in argvs:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
        status = _run_tool(main, argv)
        _, err = capsys.readouterr()
        shown = repr(argv)[:200]
        assert "Traceback" not in err and "error: INTERNAL" not in err, f"{shown}:\n{err[-2000:]}"
        assert status in (0, 1, 2, 3), f"{shown}: status {status}"
    assert len(argvs) > 50
