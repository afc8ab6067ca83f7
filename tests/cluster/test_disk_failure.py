"""Fail-stop on a failed disk: a node whose journal fdatasync fails (EIO), or whose journal
write fails (ENOSPC, a full disk), stops (exit status 4) rather than acknowledge, vote or lead
on a log it cannot promise is on disk; the rest of the cluster elects a leader and goes on,
losing nothing acknowledged; the node, restarted on a healthy disk, catches up. Real node
processes; the failure is injected at libc's fdatasync and pwrite by an LD_PRELOAD shim compiled
here, once a trigger file exists (as a disk that went bad under a running node). That the node
acknowledges nothing it did not write and sync is tests/cluster/test_journal.py's part (`dirty`
holds): here the other two nodes hold every acknowledged write anyway."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from aspen.client import Client
from aspen.exits import EXIT_STORAGE_FAILED
from deploy.launcher import LocalCluster
from wire.errors import AspenError, ErrorCode

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Failing from the moment the trigger file exists: "fdatasync" (EIO) or "write" (ENOSPC on
   pwrite, a full disk). Only the Raft journal uses fdatasync and pwrite. */
static int failing(const char *kind) {
    const char *trigger = getenv("ASPEN_TEST_DISK_FAILS_WHEN");
    const char *what = getenv("ASPEN_TEST_DISK_FAILURE");
    return trigger != NULL && what != NULL && strcmp(what, kind) == 0 && access(trigger, F_OK) == 0;
}

int fdatasync(int fd) {
    static int (*real)(int) = NULL;
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (failing("fdatasync")) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t offset) {
    static ssize_t (*real)(int, const void *, size_t, off_t) = NULL;
    if (real == NULL)
        real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    if (failing("write")) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, buf, n, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t offset) {
    return pwrite(fd, buf, n, offset);
}
"""
EXIT_WAIT_S = 20.0
MESSAGES = {"fdatasync": "fdatasync failed: Input/output error", "write": "write failed: No space"}


@pytest.fixture(scope="module")
def failing_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shim")
    (root / "shim.c").write_text(SHIM)
    command = ["gcc", "-shared", "-fPIC", "-O2", "-o", str(root / "shim.so"), str(root / "shim.c"), "-ldl"]
    subprocess.run(command, check=True, capture_output=True)
    return root / "shim.so"


def put_until_acknowledged(c: Client, key: str, value: bytes, attempts_max: int = 20) -> None:
    """A write in flight when the node stops is answered "may or may not have executed" (the
    client does not resend a write it cannot know the fate of); writing the same value again
    is safe, and is what a user does."""
    for _ in range(attempts_max):
        try:
            c.put(key, value)
            return
        except AspenError as exc:
            assert exc.code in (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT), exc
            time.sleep(0.1)
    raise AssertionError(f"{key} was never acknowledged")


def wait_exit(cluster: LocalCluster, node_id: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while (status := cluster.exit_status(node_id)) is None:
        assert time.monotonic() < deadline, f"node {node_id} still runs; log: {cluster.log_tails()[node_id]}"
        time.sleep(0.05)
    return status


@pytest.mark.parametrize(("role", "failure"), [("leader", "fdatasync"), ("follower", "fdatasync"),
                                               ("leader", "write"), ("follower", "write")])
def test_a_node_whose_disk_fails_stops_and_the_cluster_goes_on(
    tmp_path: Path, failing_disk: Path, role: str, failure: str
) -> None:
    trigger = tmp_path / "disk-failed"
    with LocalCluster(tmp_path / "c") as cluster:
        cluster.up(3)
        bad = cluster.wait_leader()
        # The same node again, on the "disk" that will fail, in the role under test.
        cluster.stop(bad)
        log_from = cluster.log_path(bad).stat().st_size
        env = {"LD_PRELOAD": str(failing_disk), "ASPEN_TEST_DISK_FAILURE": failure,
               "ASPEN_TEST_DISK_FAILS_WHEN": str(trigger)}
        cluster.start(bad, extra_env=env)
        with cluster.client(timeout_s=20) as c:
            deadline = time.monotonic() + 30
            while (cluster.leader_id() == bad) != (role == "leader") or not cluster.leader_id():
                assert time.monotonic() < deadline, f"the node under test did not become {role}"
                try:
                    c.move_leader(bad if role == "leader" else next(n for n in cluster.nodes if n != bad))
                except Exception:  # not caught up yet, or an election in progress: try again
                    pass
                time.sleep(0.2)
            before = {f"disk/{i}": os.urandom(200) for i in range(30)}
            for key, value in before.items():
                c.put(key, value)

            trigger.touch()  # its disk fails now
            after = {f"disk/after/{i}": os.urandom(200) for i in range(10)}
            for key, value in after.items():  # acknowledged by whichever leader the client finds
                put_until_acknowledged(c, key, value)
            assert wait_exit(cluster, bad, EXIT_WAIT_S) == EXIT_STORAGE_FAILED
            with open(cluster.log_path(bad), "rb") as f:
                f.seek(log_from)
                log = f.read().decode(errors="replace")  # this run's lines only
            what = MESSAGES[failure]
            assert f"journal {what}" in log and "this node stops" in log, log[-3000:]
            assert "failed _onTick" not in log  # stopped, not retried every tick
            assert "Traceback" not in log, log[-3000:]  # a clean stop

            assert cluster.wait_leader(30) != bad
            for key, value in {**before, **after}.items():
                assert c.get(key)["value"] == value, key

        # A healthy disk again (the trigger gone, no shim): the node comes back and catches up.
        trigger.unlink()
        cluster.start(bad)
        with cluster.client([bad], timeout_s=20, discover_leader=False) as c:
            deadline = time.monotonic() + 30
            while True:
                assert cluster.alive(bad), cluster.log_tails()[bad]
                try:
                    if c.get("disk/after/9", stale=True).get("value") == after["disk/after/9"]:
                        break
                except AspenError:  # catching up
                    pass
                assert time.monotonic() < deadline, "the restarted node did not catch up"
                time.sleep(0.2)
            for key, value in {**before, **after}.items():
                assert c.get(key, stale=True)["value"] == value, key
