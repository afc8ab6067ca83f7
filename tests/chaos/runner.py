"""The chaos run: a real cluster, client threads, a nemesis, then every check and a report.

    python -m tests.chaos.runner --seed 1 --duration-s 60 --nodes 3 [--clients 4]
                                 [--no-partitions] [--out DIR]

Exit status 0 when every check passed, 1 otherwise. With --out, DIR receives report.json,
report.txt, history.jsonl (one op a line) and the cluster's node logs (DIR/cluster/).
docs/CHAOS.md explains the faults, the checks and how to read the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy.launcher import LocalCluster
from deploy.netns import HostNetwork, NetnsUnavailable
from tests.chaos import checks, counter_plugin, watcher
from tests.chaos.history import History
from tests.chaos.linearizability import Verdict, check
from tests.chaos.nemesis import Nemesis, NemesisConfig
from tests.chaos.workload import COUNTER_KEY, Worker, WorkloadConfig, final_reads
from wire.errors import AspenError

JOIN_WAIT_S = 30.0
PLUGIN_READY_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class RunConfig:
    seed: int = 1
    duration_s: float = 30.0
    nodes: int = 3
    clients: int = 4
    partitions: bool = True
    checker_deadline_s: float = 60.0
    nemesis: NemesisConfig = field(default_factory=NemesisConfig)


@dataclass
class Report:
    config: dict[str, Any]
    partitions_note: str = ""
    ops: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    skipped_faults: list[str] = field(default_factory=list)
    verdict: str = ""
    checker: list[dict[str, Any]] = field(default_factory=list)
    lost_writes: list[str] = field(default_factory=list)
    counter: dict[str, Any] = field(default_factory=dict)
    states_equal: bool = False
    states: list[dict[str, Any]] = field(default_factory=list)
    registries_equal: bool = False
    registries: dict[str, Any] = field(default_factory=dict)
    unavailability: list[dict[str, Any]] = field(default_factory=list)
    worst_unavailability_s: float | None = None
    worst_leader_kill_unavailability_s: float | None = None
    raft_warnings: list[dict[str, Any]] = field(default_factory=list)
    watch: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def text(self) -> str:
        c = self.config
        lines = [
            f"chaos run: seed {c['seed']}, {c['nodes']} nodes, {c['clients']} clients, {c['duration_s']} s"
            f" ({self.wall_s:.1f} s wall)"
        ]
        if self.partitions_note:
            lines.append(f"partitions: {self.partitions_note}")
        lines.append("operations (ok / fail / info):")
        for kind, n in sorted(self.ops.items(), key=lambda kv: kv[0] == "total"):
            lines.append(f"  {kind:<8} {n['ok']:>6} / {n['fail']:>5} / {n['info']:>5}")
        lines.append(f"faults injected: {len(self.faults)}")
        for f in self.faults:
            leader = " (leader)" if f["hit_leader"] else ""
            back = (
                "never" if f["recovered_s"] is None else f"{f['recovered_s'] - f['end_s']:.2f}s after healing"
            )
            lines.append(f"  {f['start_s']:8.2f}s {f['kind']:<13} nodes {f['nodes']}{leader}, held "
                         f"{f['end_s'] - f['in_force_s']:.2f}s, recovered {back}")
        for s in self.skipped_faults:
            lines.append(f"  skipped: {s}")
        lines.append(f"linearizability: {self.verdict}")
        for comp in self.checker:
            lines.append(
                f"  {','.join(comp['keys'])}: {comp['verdict']} ({comp['ops']} ops, {comp['steps']} steps)"
            )
            if comp["detail"]:
                lines.extend("    " + d for d in comp["detail"].splitlines())
        lines.append(f"lost acknowledged writes: {len(self.lost_writes)}")
        lines.extend(f"  {w}" for w in self.lost_writes[:20])
        ctr = self.counter
        lines.append(f"counter: final {ctr.get('final')}, acknowledged {ctr.get('acknowledged')}, "
                     f"indeterminate {ctr.get('indeterminate')} -> {'ok' if ctr.get('ok') else 'WRONG'}")
        lines.append(
            f"state hashes equal: {self.states_equal} "
            + ", ".join(f"n{s['node_id']}@{s['applied_index']}={s['state_hash'][:12]}" for s in self.states)
        )
        lines.append(f"plugin registries equal: {self.registries_equal}")
        lines.append("unavailability after faults that hit the leader (fault -> next acknowledged write):")
        for u in self.unavailability:
            w = "never" if u["window_s"] is None else f"{u['window_s']:.3f}s"
            lines.append(f"  {u['in_force_s']:8.2f}s {u['kind']:<13} {w}")
        lines.append(f"worst unavailability: {_secs(self.worst_unavailability_s)}; "
                     f"worst after a leader SIGKILL: {_secs(self.worst_leader_kill_unavailability_s)}")
        w = self.watch
        if w:
            lines.append(
                f"watcher: {w['events']} events on {w['keys']} keys up to revision {w['end_revision']}, "
                f"{w['resumes']} resumes; equals the committed history: {'no' if w['problems'] else 'yes'}"
            )
            lines.extend(f"  {p}" for p in w["problems"])
        if self.raft_warnings:
            lines.append(
                "pysyncobj CRITICAL log lines (see docs/CHAOS.md): "
                + ", ".join(f"n{w['node_id']}: {w['count']}" for w in self.raft_warnings)
            )
            lines.append(f"  e.g. {self.raft_warnings[0]['first']}")
        lines.append("PASSED" if self.passed else "FAILED: " + "; ".join(self.failures))
        return "\n".join(lines)


def _secs(v: float | None) -> str:
    return "n/a" if v is None else "never recovered" if v == math.inf else f"{v:.3f}s"


def _start_cluster(root: Path, config: RunConfig) -> tuple[LocalCluster, HostNetwork | None, str]:
    net: HostNetwork | None = None
    note = "off (--no-partitions)"
    if config.partitions:
        net = HostNetwork(count=config.nodes)
        try:
            net.create()
            note = "on: nodes on network-namespace hosts"
        except NetnsUnavailable as exc:
            net, note = None, f"skipped: {exc}"
    cluster = LocalCluster(root, tls=True)  # clients over TLS, as on a real network
    try:
        cluster.up(config.nodes, hosts=net.hosts() if net is not None else None)
    except BaseException:
        if net is not None:
            net.destroy()
        raise
    return cluster, net, note


def _install_counter(cluster: LocalCluster) -> None:
    with cluster.client(timeout_s=15.0) as c:
        counter_plugin.install(c)
    ok, lists = checks.registries(cluster, PLUGIN_READY_WAIT_S)
    if not ok:
        raise RuntimeError(f"the counter plugin is not Ready on every node: {lists}")


def pinned_node(client_id: int, nodes: int) -> int | None:
    """Every second client talks to one node only, whatever its role, so follower paths (forwarded
    writes, read barriers through the leader, plugin calls on followers) and a woken-up old
    leader answering its own clients are exercised; the others follow the leader."""
    return None if client_id % 2 == 0 else (client_id // 2) % nodes + 1


def run(config: RunConfig, root: Path) -> tuple[Report, History]:
    """One chaos run with the cluster under `root`; the caller writes the report out."""
    wall0 = time.monotonic()
    report = Report(config={k: v for k, v in asdict(config).items() if k != "nemesis"})
    rng = random.Random(config.seed)
    cluster, net, report.partitions_note = _start_cluster(root, config)
    history = History()
    nemesis = Nemesis(cluster, history.now, random.Random(rng.random()), config.nemesis, net)
    clients = []
    watch = watcher.Watcher(cluster)
    try:
        _install_counter(cluster)
        watch.start()
        workload = WorkloadConfig(clients=config.clients)
        stop = threading.Event()
        threads = []
        workers = []
        for cid in range(config.clients):
            pinned = pinned_node(cid, config.nodes)
            if pinned is None:
                client = cluster.client(timeout_s=workload.request_timeout_s)
            else:
                client = cluster.client([pinned], timeout_s=workload.request_timeout_s, discover_leader=False)
            clients.append(client)
            worker = Worker(cid, client, history, random.Random(rng.random()), workload)
            workers.append(worker)
            threads.append(threading.Thread(target=worker.run, args=(stop,), name=f"chaos-client-{cid}"))
        threads.append(threading.Thread(target=nemesis.run, args=(stop,), name="chaos-nemesis"))
        for t in threads:
            t.start()
        stop.wait(config.duration_s)
        stop.set()
        for t in threads:
            t.join(JOIN_WAIT_S)
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            report.failures.append(f"threads did not stop within {JOIN_WAIT_S}s: {stuck}")
        report.failures += [f"client {w.client_id} crashed: {w.crash}" for w in workers if w.crash]
        if nemesis.crash:
            report.failures.append(f"nemesis crashed: {nemesis.crash}")
        nemesis.heal_all()
        cluster.wait_leader()
        with cluster.client(timeout_s=10.0) as c:
            finals = final_reads(c, history, client_id=config.clients)
            end_revision = c.put(watcher.END_KEY, b"end")["revision"]
        watch.finish(end_revision)
        _check(report, config, cluster, history, nemesis, finals)
        _check_watch(report, cluster, watch, end_revision, history, finals)
    finally:
        watch.abandon()  # a no-op after finish(); else it must not outlive the cluster
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        with contextlib.suppress(Exception):
            nemesis.heal_all()
        cluster.down()
        if net is not None:
            net.destroy()
    report.wall_s = time.monotonic() - wall0
    return report, history


def _check(
    report: Report,
    config: RunConfig,
    cluster: LocalCluster,
    history: History,
    nemesis: Nemesis,
    finals: dict[str, bytes | None],
) -> None:
    records = history.records()
    report.ops = history.counts()
    if history.truncated:
        report.failures.append(f"history truncated at {history.ops_max} ops")
    report.faults = [{**asdict(f), "hit_leader": f.hit_leader} for f in nemesis.faults]
    report.skipped_faults = list(nemesis.skipped)
    for f in nemesis.faults:
        if f.recovered_s is None:
            report.failures.append(f"no recovery after {f.kind} at {f.start_s:.2f}s")

    result = check(history.ops(), deadline_s=config.checker_deadline_s)
    report.verdict = str(result.verdict)
    report.checker = [
        {"keys": list(c.keys), "ops": c.ops, "verdict": str(c.verdict), "steps": c.steps, "detail": c.detail}
        for c in result.components
    ]
    if result.verdict is not Verdict.OK:
        report.failures.append(f"linearizability: {result.verdict}")

    lost = checks.lost_writes(records, finals)
    report.lost_writes = [
        f"{w.key}: final {w.final!r} contradicts acknowledged {w.write.to_json()}" for w in lost
    ]
    if lost:
        report.failures.append(f"{len(lost)} acknowledged writes lost")

    ctr = checks.counter_check(records, finals[COUNTER_KEY])
    report.counter = {**asdict(ctr), "ok": ctr.ok}
    if not ctr.ok:
        report.failures.append(
            f"counter {ctr.final} outside [{ctr.acknowledged}, {ctr.acknowledged + ctr.indeterminate}]"
        )

    report.states_equal, states = checks.converged_state(cluster)
    report.states = [asdict(s) for s in states]
    if not report.states_equal:
        # What each node says of itself (and the leader of everyone's replication), to tell a
        # lagging follower from a leader that stopped sending to it.
        views = {
            n: {
                k: v
                for k, v in (cluster.status_of(n) or {}).items()
                if k in ("role", "term", "leader_id", "commit_index", "applied_index", "nodes")
            }
            for n in cluster.nodes
        }
        report.failures.append(
            f"nodes ended with different states (or never reached one index); views: {views}"
        )

    report.registries_equal, regs = checks.registries(cluster)
    report.registries = {str(k): v for k, v in regs.items()}
    if not report.registries_equal:
        report.failures.append("plugin registries differ between nodes")

    windows = checks.unavailability(records, nemesis.faults)
    report.unavailability = [
        {
            "kind": u.fault.kind,
            "in_force_s": u.fault.in_force_s,
            "nodes": list(u.fault.nodes),
            "window_s": u.window_s,
        }
        for u in windows
    ]
    report.worst_unavailability_s = checks.worst(windows)
    report.worst_leader_kill_unavailability_s = checks.worst(windows, "kill_leader")
    report.raft_warnings = [asdict(w) for w in checks.raft_warnings(cluster)]
    if report.raft_warnings:
        report.failures.append("a follower truncated log entries it had already applied (pysyncobj CRITICAL)")


def _check_watch(
    report: Report,
    cluster: LocalCluster,
    watch: watcher.Watcher,
    end_revision: int,
    history: History,
    finals: dict[str, bytes | None],
) -> None:
    replays = {n: watcher.replay(cluster, n, end_revision) for n in cluster.nodes}
    problems = watcher.check(watch, replays, history.records(), finals)
    report.watch = {
        "events": len(watch.events),
        "resumes": watch.resumes,
        "end_revision": end_revision,
        "keys": len(watcher.per_key(watch.events)),
        "problems": problems,
    }
    report.failures += problems


def write_out(out: Path, report: Report, history: History) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps({**asdict(report), "passed": report.passed}, indent=2, default=str)
    )
    (out / "report.txt").write_text(report.text() + "\n")
    history.dump(out / "history.jsonl")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos.runner", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration-s", type=float, default=30.0)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument(
        "--no-partitions", action="store_true", help="no network-namespace hosts, no partition faults"
    )
    ap.add_argument("--checker-deadline-s", type=float, default=120.0)
    ap.add_argument(
        "--out", type=Path, help="write report.json, report.txt, history.jsonl and node logs here"
    )
    args = ap.parse_args(argv)
    if not 3 <= args.nodes <= 7 or not 1 <= args.clients <= 32 or not 1 <= args.duration_s <= 3600:
        ap.error("--nodes 3..7, --clients 1..32, --duration-s 1..3600")
    config = RunConfig(
        seed=args.seed,
        duration_s=args.duration_s,
        nodes=args.nodes,
        clients=args.clients,
        partitions=not args.no_partitions,
        checker_deadline_s=args.checker_deadline_s,
    )
    with contextlib.ExitStack() as stack:
        if args.out is not None:
            root = args.out / "cluster"
            if (root / "cluster.json").exists():
                ap.error(f"{root} holds an earlier run's cluster; choose another --out")
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aspen-chaos-"))) / "cluster"
        try:
            report, history = run(config, root)
        except (AspenError, RuntimeError, TimeoutError) as exc:
            print(f"chaos run could not complete: {exc}", file=sys.stderr)
            return 2
        print(report.text())
        if args.out is not None:
            write_out(args.out, report, history)
            print(f"report written to {args.out}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
