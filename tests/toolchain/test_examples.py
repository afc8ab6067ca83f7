"""The example plugins of examples/plugins, built by the toolchain: first in the test kit
(aspen.testing: real sandbox, in-memory host), then on a 3-node cluster."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

from aspen.client import Client
from aspen.testing import PluginHarness
from aspen.toolchain.cli import run
from deploy.launcher import LocalCluster
from tests.plugins.test_plugin_cli import cli
from tests.plugins.test_plugins_cluster import eventually
from tests.toolchain.conftest import EXAMPLES
from wire.errors import AspenError

CLIENTS, INCREMENTS = 8, 100


def harness(examples: dict[str, Path], name: str, **kwargs: object) -> PluginHarness:
    return PluginHarness.load(examples[name], EXAMPLES / name / "plugin.json", **kwargs)  # type: ignore[arg-type]


# -- in the test kit ---------------------------------------------------------------------------

def test_echo_in_the_kit(examples: dict[str, Path]) -> None:
    with harness(examples, "echo-plugin", node_id=3) as h:
        assert h.request("Echo", message="hi") == {"type": "EchoResult", "message": "hi", "node_id": 3}
        h.kv["echo:k"] = b"v"
        assert h.request("Echo", message="hi", key="echo:k")["value"] == b"v"
        assert h.request("Echo")["code"] == "INVALID_REQUEST"
        r = h.request("Echo", message="hi", key="elsewhere:k")
        assert r["code"] == "READ_FAILED" and "KV_PREFIX_DENIED" in r["message"]


def test_counter_in_the_kit(examples: dict[str, Path]) -> None:
    with harness(examples, "kv-counter") as h:
        assert h.request("WriteKey", key="counter:a", value=b"increment")["value"] == b"1"
        assert h.request("WriteKey", key="counter:a", value=b"+41")["value"] == b"42"
        assert h.request("ReadKey", key="counter:a")["value"] == b"42"
        assert h.request("WriteKey", key="counter:a", value=b"lots")["code"] == "INVALID_REQUEST"
        h.kv["counter:bad"] = b"not a number"
        assert h.request("WriteKey", key="counter:bad", value=b"increment")["code"] == "CORRUPT_COUNTER"
        assert h.kv["counter:bad"] == b"not a number"


def test_audit_logger_stays_bounded_and_records_each_revision_once(examples: dict[str, Path]) -> None:
    with harness(examples, "audit-logger") as h:
        assert h.subscriptions == ("hooks.kv.*",)
        for i in range(1, 1101):
            assert h.write(f"app:{i}", b"x")
        # A second node delivering an old event neither duplicates nor overwrites.
        h.fire_event("hooks.kv.write_committed", "app:5", revision=5)
        records = {k: v for k, v in h.kv.items() if k.startswith("audit:log:")}
        assert len(records) == 1024
        revisions = sorted(int(v.split()[0]) for v in records.values())
        assert revisions == list(range(1100 - 1024 + 1, 1101))
        stats = h.request("AuditStats")
        assert (stats["records"], stats["newest_revision"]) == (1024, 1100)


def test_cleanup_works_only_on_the_leader(examples: dict[str, Path]) -> None:
    with harness(examples, "scheduled-cleanup", node_id=1, leader_id=2) as h:
        assert h.timers == {"cleanup": (1000, True)}
        assert h.request("PutWithTtl", key="s1", value=b"v", ttl_ms=1)["type"] == "PutWithTtlResult"
        assert h.request("PutWithTtl", key="s2", value="v", ttl_ms=3_600_000)["type"] == "PutWithTtlResult"
        assert h.request("PutWithTtl", key="s3", value=b"v", ttl_ms=0)["code"] == "INVALID_REQUEST"
        time.sleep(0.01)  # past s1's expiry
        h.fire_timer("cleanup")  # a follower: nothing happens
        assert "ttl:data:s1" in h.kv and not any(k.startswith("ttl:stats:") for k in h.kv)
        h.set_leader(1)
        h.fire_timer("cleanup")
        assert "ttl:data:s1" not in h.kv and "ttl:expiry:s1" not in h.kv
        assert h.kv["ttl:data:s2"] == b"v"
        assert h.kv["ttl:stats:1"] == b"runs=1 deleted=1"
        assert any("deleted 1 expired keys" in m for _, m in h.logs)


# -- on a 3-node cluster -------------------------------------------------------------------------

def install(cluster: LocalCluster, name: str, wasm: Path, *extra: str) -> None:
    r = cli(
        cluster, "plugin", "install", str(wasm), "--manifest", str(EXAMPLES / name / "plugin.json"), *extra
    )
    assert r.returncode == 0, r.stderr
    eventually(lambda: cli(cluster, "plugin", "info", name).stdout.count("Ready") == 3, what=f"{name} Ready")


def test_counter_never_loses_an_increment(shared_cluster: LocalCluster, examples: dict[str, Path]) -> None:
    install(shared_cluster, "kv-counter", examples["kv-counter"])
    addrs = shared_cluster.endpoints.split(",")
    failures: list[BaseException] = []

    def clientele(i: int) -> None:
        # Pinned to one node: the increment runs in that node's copy of the plugin.
        with Client(addrs[i % len(addrs)], shared_cluster.cookie, 30.0, discover_leader=False) as c:
            try:
                for _ in range(INCREMENTS):
                    for _attempt in range(20):
                        try:
                            c.put("counter:hits", b"increment")
                            break
                        except AspenError as exc:
                            if exc.code != "CONFLICT":  # CONFLICT: nothing written, safe to retry
                                raise
                    else:
                        raise AssertionError("20 CONFLICTs in a row")
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=clientele, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures
    assert cli(shared_cluster, "kv", "get", "counter:hits").stdout == f"{CLIENTS * INCREMENTS}\n"
    info = json.loads(cli(shared_cluster, "--json", "plugin", "info", "kv-counter").stdout)
    assert all(st["calls"] >= INCREMENTS for st in info["nodes"].values()), info["nodes"]


def test_audit_logger_records_every_write_once(
    shared_cluster: LocalCluster, examples: dict[str, Path]
) -> None:
    install(shared_cluster, "audit-logger", examples["audit-logger"])
    with shared_cluster.client() as c:
        revisions = {c.put(f"audited:{i}", b"v")["revision"] for i in range(20)}
        revisions.add(c.delete("audited:0")["revision"])

        def recorded() -> list[int]:
            return [int(e["value"].split()[0]) for e in c.scan("audit:log:", 2000)["entries"]]

        eventually(lambda: set(recorded()) >= revisions, what="every write recorded")
        got = recorded()
        assert sorted(r for r in got if r in revisions) == sorted(revisions)  # each exactly once
        assert len(got) == len(set(got))
    assert cli(shared_cluster, "plugin", "remove", "audit-logger").returncode == 0


def test_cleanup_deletes_expired_keys_on_the_leader_only(
    shared_cluster: LocalCluster, examples: dict[str, Path]
) -> None:
    install(shared_cluster, "scheduled-cleanup", examples["scheduled-cleanup"])
    for key, ttl in (("a", 1500), ("b", 1500), ("keep", 600_000)):
        r = cli(
            shared_cluster,
            "rpc",
            "PutWithTtl",
            "--data",
            json.dumps({"key": key, "value": "v", "ttl_ms": ttl}),
        )
        assert r.returncode == 0, r.stderr
    assert cli(shared_cluster, "kv", "get", "ttl:data:a").stdout == "v\n"
    leaders = {shared_cluster.leader_id()}

    def expired_gone() -> bool:
        leaders.add(shared_cluster.leader_id())  # an election on a loaded machine moves the work
        return (cli(shared_cluster, "kv", "get", "ttl:data:a").returncode == 1
                and cli(shared_cluster, "kv", "get", "ttl:data:b").returncode == 1)

    eventually(expired_gone, what="expired keys deleted")
    assert cli(shared_cluster, "kv", "get", "ttl:data:keep").stdout == "v\n"
    stats = json.loads(cli(shared_cluster, "--json", "rpc", "CleanupStats").stdout)["nodes"]
    leaders.add(shared_cluster.leader_id())
    workers = {int(s["node"]) for s in stats}
    assert workers and workers <= leaders, (workers, leaders)  # followers never did the work
    assert len(workers) < 3
    assert cli(shared_cluster, "plugin", "remove", "scheduled-cleanup").returncode == 0


def test_install_with_verify_signature_refuses_what_it_must(
    shared_cluster: LocalCluster, examples: dict[str, Path], tmp_path: Path
) -> None:
    project = tmp_path / "echo"
    shutil.copytree(EXAMPLES / "echo-plugin", project, ignore=shutil.ignore_patterns("target"))
    wasm = tmp_path / "echo.wasm"
    shutil.copy(examples["echo-plugin"], wasm)
    manifest = project / "plugin.json"

    def install_verified() -> str:
        r = cli(
            shared_cluster, "plugin", "install", str(wasm), "--manifest", str(manifest), "--verify-signature"
        )
        return "ok" if r.returncode == 0 else r.stderr

    assert "SIGNATURE_MISSING" in install_verified()
    key = tmp_path / "signing"
    assert run(["keygen", "--output", str(key)]) == 0
    assert run(["sign", "--key", str(key), "--path", str(project), "--wasm", str(wasm)]) == 0
    assert "SIGNATURE_UNTRUSTED" in install_verified()
    public = key.with_name("signing.pub").read_text().strip()
    assert cli(shared_cluster, "plugin-keys", "add", public, "--name", "examples").returncode == 0
    wasm.write_bytes(wasm.read_bytes() + b"\x00")  # tampered after signing
    assert "SIGNATURE_INVALID" in install_verified()
    shutil.copy(examples["echo-plugin"], wasm)
    assert install_verified() == "ok"
    eventually(
        lambda: (
            json.loads(
                cli(shared_cluster, "--json", "rpc", "Echo", "--data", '{"message": "hi"}').stdout
            ).get("message")
            == "hi"
        ),
        what="the verified plugin answering",
    )
