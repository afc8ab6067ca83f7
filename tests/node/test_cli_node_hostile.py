"""aspen-node with hostile arguments (issue 16, item 1: "no traceback from any CLI"): every
option given each value of tests/wire/test_cli_hostile.py's HOSTILE (bytes that are not UTF-8,
empty, huge, missing files, `-`, numbers where text goes and text where numbers go), as a real
process. Each either refuses with status 2 (usage) or one `error: CODE: message` line, or
starts (it prints `ready`) and stops cleanly on SIGTERM; never a traceback, never INTERNAL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aspen import node
from deploy.launcher import free_ports
from tests.wire.test_cli_hostile import HOSTILE

START_WAIT_S = 15.0  # a node that has not exited by then is serving (or must be)
PARALLEL = 3  # the machine is shared: a few nodes at a time
SKIP_DESTS = frozenset({"help", "version", "test_synced_shadow"})


def hostile_argvs() -> list[list[str]]:
    valued = [a for a in node.build_parser()._actions
              if a.option_strings and a.nargs != 0 and a.dest not in SKIP_DESTS]
    return [[a.option_strings[-1], value] for a in valued for value in HOSTILE]


def run_one(base: Path, i: int, argv: list[str]) -> tuple[list[str], int, str, str]:
    client_port, raft_port = free_ports(2)
    cmd = [sys.executable, "-m", "aspen.node", "--data-dir", str(base / f"d{i}"),
           "--listen", f"127.0.0.1:{client_port}", "--raft", f"127.0.0.1:{raft_port}", *argv]
    err_path = base / f"d{i}.stderr"
    with open(err_path, "wb") as err_file:  # a file, not a pipe: a huge usage error must not block it
        proc = subprocess.Popen([os.fsencode(a) for a in cmd], stdout=subprocess.PIPE, stderr=err_file,
                                cwd=base, start_new_session=True)
    # Never wait for ever: a node neither ready nor gone by the deadline is killed (and fails).
    killer = threading.Timer(START_WAIT_S, proc.kill)
    killer.start()
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "ready ..." once serving; b"" when it exited
        if first.startswith(b"ready node="):
            proc.send_signal(signal.SIGTERM)  # a node that started must stop cleanly
        out, _ = proc.communicate()
    finally:
        killer.cancel()
    return (
        argv,
        proc.returncode,
        (first + out).decode(errors="replace"),
        err_path.read_bytes().decode(errors="replace"),
    )


def test_aspen_node_prints_no_traceback(tmp_path: Path) -> None:
    argvs = hostile_argvs()
    assert len(argvs) > 100
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda ia: run_one(tmp_path, *ia), enumerate(argvs)))
    bad = [
        f"{repr(argv)[:100]}: {why[:1500]}"
        for argv, status, out, err in results
        if (why := judge(status, out, err)) is not None
    ]
    assert not bad, "\n".join(bad)


def judge(status: int, out: str, err: str) -> str | None:
    """Why this outcome breaks the rule, or None."""
    if "Traceback" in err or "error: INTERNAL" in err:
        return f"traceback or INTERNAL:\n{err[-1500:]}"
    if "ready node=" in out:
        return None if status == 0 else f"started, then status {status} on SIGTERM:\n{err[-1000:]}"
    lines = err.strip().splitlines()
    if status == 2:  # argparse's usage line, then its one error line
        return (
            None
            if lines and lines[-1].startswith("aspen-node: error: ")
            else f"usage without a reason: {err[-500:]!r}"
        )
    errors = [line for line in lines if line.startswith("error: ")]
    if status in (1, 3) and len(errors) == 1 and lines[-1] == errors[0]:
        return None
    return f"status {status}, stderr {err[-500:]!r}"
