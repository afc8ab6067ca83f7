"""Large-state benchmark (issue 11, item 5): a 3-node Aspen cluster holding many keys.

    python benchmarks/large_state_bench.py [--keys 1000000] [--in-flight 4] [--probe-ms 10]
                                           [--dir DIR] [--no-readme]

On a 3-node LocalCluster on loopback it measures:
- load: N keys of random 100-byte values (os.urandom) written by BatchWrite of 1,000 ops with
  several batches in flight (keys/s);
- RSS of each node process after the load (VmRSS from /proc/PID/status) and its peak (VmHWM);
- a snapshot (pysyncobj log compaction): no request forces one, and compaction starts only once
  a node's log holds more than RaftConfig.compaction_min_entries entries (or after
  compaction_min_time_s). A 1,000-op batch is one log entry (group commit may pack several), so
  a load by batches alone does not get there; after the load the bench writes one-op entries until every node
  has
  replaced its raft/snapshot.bin, and reports the file's size and how long the file took from
  appearing as snapshot.bin.child.tmp to its rename (a forked child dumps the state and writes
  the file while the node serves: the serving gap below shows what the node itself felt);
- the longest gap in serving: every --probe-ms, each node gets a stale and a linearizable
  ReadKey of its own (no leader discovery), during the load and during the snapshot; the
  slowest answer (or failure) of each kind in each phase is reported for each node;
- restart of one follower: SIGTERM, start, time until it has applied the leader's commit
  index and answers a linearizable read of a loaded key itself;
- an empty node added as `aspen-cluster add` does (LocalCluster.add_node): start to caught up.

Prints a table and writes it into benchmarks/README.md (--no-readme: print only). A program
that reports, never a timed test: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aspen.client import AsyncClient
from benchmarks.report import write_section
from cluster.config import RaftConfig
from deploy.launcher import LocalCluster, proc_status_kib
from storage.limits import BATCH_OPS_MAX
from wire.errors import AspenError

VALUE_BYTES = 100
KEY_FORMAT = "large/{:09d}"
MIB = 1024 * 1024
# Compaction is decided by pysyncobj from these defaults (cluster/config.py); the nodes run them.
_RAFT_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(RaftConfig)}
COMPACTION_MIN_ENTRIES = int(_RAFT_DEFAULTS["compaction_min_entries"])
COMPACTION_MIN_TIME_S = float(_RAFT_DEFAULTS["compaction_min_time_s"])
# The writers that fill the log: the proposer packs whatever queued while this many entries
# were in flight, so with no more writes outstanding than that, nearly every write is an entry
# of its own (two that complete in the same loop turn share one).
ENTRIES_IN_FLIGHT_MAX = int(_RAFT_DEFAULTS["entries_in_flight_max"])
FILL_KEYS = 1000  # the one-op writes overwrite these: the state does not grow while filling the log
BATCH_ATTEMPTS_MAX = 20  # a batch that fails (an election) is sent again: Sets are idempotent
WATCH_PERIOD_S = 0.005
CLIENT_TIMEOUT_S = 30.0
# The figures from main at 500K keys, shown beside this run's.
REFERENCE_500K = {
    "load keys/s": "~20,000",
    "RSS per node after load MiB": "~330",
    "restart s": "4.5",
    "added node catch-up s": "16.5",
}


def mib_of_nodes(cluster: LocalCluster, field_name: str, node_ids: list[int]) -> str:
    """'n1 / n2 / n3' in MiB, '-' for a node not running."""
    cells = []
    for node_id in node_ids:
        pid = cluster.nodes[node_id].pid
        kib = proc_status_kib(pid, field_name) if pid else None
        cells.append(f"{kib / 1024:,.0f}" if kib is not None else "-")
    return " / ".join(cells)


PROBE_KINDS = ("stale read", "linearizable read")


@dataclass
class Probes:
    """Two reads of one key at each node every period_s, each node answering itself: a stale
    ReadKey (the node's event loop and its state lock, which a snapshot's dump holds) and a
    linearizable one (also a round through the Raft log). Keeps the slowest answer (a failure
    counts with the time it took) per (phase, kind, node); set `phase` to attribute samples."""

    cluster: LocalCluster
    period_s: float
    probe_key: str
    phase: str = "idle"
    max_ms: dict[tuple[str, str, int], float] = field(default_factory=dict)
    failures: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _clients: list[AsyncClient] = field(default_factory=list)

    def start(self) -> None:
        for node_id, spec in self.cluster.nodes.items():
            client = AsyncClient([spec.client_addr], self.cluster.cookie, timeout_s=CLIENT_TIMEOUT_S,
                                 discover_leader=False, retries_max=1)
            self._clients.append(client)
            stale = lambda c=client: c.get(self.probe_key, stale=True)  # noqa: E731
            linearizable = lambda c=client: c.get(self.probe_key)  # noqa: E731
            self._tasks.append(asyncio.create_task(self._run(node_id, "stale read", stale)))
            self._tasks.append(asyncio.create_task(self._run(node_id, "linearizable read", linearizable)))

    def slowest(self, phase: str, kind: str, node_ids: list[int]) -> str:
        """'n1 / n2 / n3' ms."""
        return " / ".join(fmt_ms(self.max_ms.get((phase, kind, n))) for n in node_ids)

    async def _run(self, node_id: int, kind: str, request: Callable[[], Awaitable[Any]]) -> None:
        while not self._stop.is_set():
            phase = self.phase
            t0 = time.perf_counter()
            try:
                await request()
            except Exception:
                self.failures += 1
            elapsed_s = time.perf_counter() - t0
            key = (phase, kind, node_id)
            self.max_ms[key] = max(self.max_ms.get(key, 0.0), elapsed_s * 1e3)
            try:
                await asyncio.wait_for(self._stop.wait(), max(0.0, self.period_s - elapsed_s))
            except TimeoutError:
                pass

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients:
            await client.close()


@dataclass
class SnapshotEvent:
    node_id: int
    done_s: float  # perf_counter when the new snapshot.bin was seen
    write_s: float | None  # from snapshot.bin.tmp first seen to the rename; None if never seen
    size_bytes: int


@dataclass
class SnapshotWatcher:
    """Polls each node's raft/snapshot.bin every WATCH_PERIOD_S: a forked child writes the new
    one as snapshot.bin.child.tmp and renames it over the old (a new inode) when done."""

    cluster: LocalCluster
    node_ids: list[int]
    events: list[SnapshotEvent] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def _paths(self, node_id: int) -> tuple[Path, Path]:
        snap = self.cluster.data_dir(node_id) / "raft" / "snapshot.bin"
        return snap, snap.with_name("snapshot.bin.child.tmp")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        seen: dict[int, tuple[int, int] | None] = {n: self._identity(n) for n in self.node_ids}
        tmp_since: dict[int, float] = {}
        while True:
            now = time.perf_counter()
            for node_id in self.node_ids:
                snap, tmp = self._paths(node_id)
                if node_id not in tmp_since and tmp.exists():
                    tmp_since[node_id] = now
                ident = self._identity(node_id)
                if ident is not None and ident != seen[node_id]:
                    seen[node_id] = ident
                    started = tmp_since.pop(node_id, None)
                    size = snap.stat().st_size if snap.exists() else 0
                    self.events.append(SnapshotEvent(node_id, now, now - started if started else None, size))
            await asyncio.sleep(WATCH_PERIOD_S)

    def _identity(self, node_id: int) -> tuple[int, int] | None:
        try:
            st = self._paths(node_id)[0].stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def done_after(self, t_s: float) -> dict[int, SnapshotEvent]:
        """Each node's first snapshot completed after perf_counter time t_s."""
        out: dict[int, SnapshotEvent] = {}
        for ev in self.events:
            if ev.done_s > t_s and ev.node_id not in out:
                out[ev.node_id] = ev
        return out

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def load(client: AsyncClient, keys: int, batch_ops: int, in_flight: int) -> tuple[float, int]:
    """Write keys 0..keys-1 in batches, `in_flight` at a time; (seconds, batches sent again)."""
    batches = (keys + batch_ops - 1) // batch_ops
    next_batch = 0
    resent = 0

    async def send(b: int) -> None:
        nonlocal resent
        first = b * batch_ops
        count = min(batch_ops, keys - first)
        blob = os.urandom(count * VALUE_BYTES)  # one call: random values without a per-key cost
        ops = [
            {
                "op": "Set",
                "key": KEY_FORMAT.format(first + j),
                "value": blob[j * VALUE_BYTES : (j + 1) * VALUE_BYTES],
            }
            for j in range(count)
        ]
        for attempt in range(BATCH_ATTEMPTS_MAX):
            try:
                await client.batch(ops)
                return
            except Exception:
                if attempt == BATCH_ATTEMPTS_MAX - 1:
                    raise
                resent += 1
                await asyncio.sleep(0.1)

    async def worker() -> None:
        nonlocal next_batch
        while next_batch < batches:
            b = next_batch
            next_batch += 1
            await send(b)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - t0, resent


async def fill_log_until_snapshots(
    client: AsyncClient, watcher: SnapshotWatcher, since_s: float, timeout_s: float
) -> tuple[int, dict[int, SnapshotEvent]]:
    """One-op writes until every node has completed a snapshot after `since_s`; bounded by
    three times the compaction threshold in writes (two writers' writes sometimes share an
    entry) and by timeout_s. (writes, each node's event)."""
    writes_max = 3 * COMPACTION_MIN_ENTRIES + 10_000
    deadline = time.monotonic() + timeout_s
    value = os.urandom(VALUE_BYTES)
    written = 0

    def all_done() -> bool:
        return len(watcher.done_after(since_s)) == len(watcher.node_ids)

    async def worker() -> None:
        nonlocal written
        while not all_done() and written < writes_max and time.monotonic() < deadline:
            written += 1
            try:
                await client.put(f"fill/{written % FILL_KEYS}", value)
            except Exception:
                await asyncio.sleep(0.1)  # an election or a stall: the watcher and probes see it

    await asyncio.gather(*(worker() for _ in range(ENTRIES_IN_FLIGHT_MAX)))
    # The last nodes may finish writing their file just after the log crossed the threshold.
    for _ in range(int(timeout_s / 0.05)):
        if all_done() or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return written, watcher.done_after(since_s)


async def restart_seconds(
    cluster: LocalCluster, node_id: int, key: str, timeout_s: float
) -> tuple[float, float]:
    """SIGTERM `node_id`, start it; (stop s, start until caught up and serving s): it has
    applied the leader's commit index as of the restart and answers a linearizable read of
    `key` itself."""
    t0 = time.perf_counter()
    await asyncio.to_thread(cluster.stop, node_id)
    stop_s = time.perf_counter() - t0
    leader = await asyncio.to_thread(cluster.wait_leader)
    status = await asyncio.to_thread(cluster.status_of, leader)
    if status is None:
        raise RuntimeError(f"leader {leader} gave no status")
    target = int(status["commit_index"])
    t0 = time.perf_counter()
    cluster.start(node_id)
    deadline = time.monotonic() + timeout_s
    client = AsyncClient([cluster.nodes[node_id].client_addr], cluster.cookie, timeout_s=2.0,
                         discover_leader=False, retries_max=1)
    try:
        while time.monotonic() < deadline:
            mine = await asyncio.to_thread(cluster.status_of, node_id)
            if mine is not None and int(mine["applied_index"]) >= target:
                try:
                    if (await client.get(key))["was_found"]:
                        return stop_s, time.perf_counter() - t0
                except Exception:
                    pass
            if not cluster.alive(node_id):
                raise RuntimeError(f"node {node_id} exited: {cluster.log_tails().get(node_id, '')}")
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    raise TimeoutError(f"node {node_id} did not serve within {timeout_s}s of its restart")


async def leader_term(cluster: LocalCluster) -> int:
    return await asyncio.to_thread(cluster.leader_term)


class Rows(list[tuple[str, str]]):
    """The table's rows, each also printed as it is measured: a long run shows its progress,
    and what it measured survives a later step that fails."""

    def add(self, name: str, value: str) -> None:
        self.append((name, value))
        print(f"{name}: {value}", flush=True)


def table(rows: list[tuple[str, str]]) -> str:
    lines = ["| metric | this run | main at 500K keys (issue 11) |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {REFERENCE_500K.get(name, '-')} |" for name, value in rows]
    return "\n".join(lines)


def fmt_ms(value: float | None) -> str:
    return f"{value:,.1f}" if value is not None else "-"


async def main_async(args: argparse.Namespace) -> list[tuple[str, str]]:
    rows = Rows()
    rows.add("keys", f"{args.keys:,}")
    wait_s = max(120.0, args.keys / 5_000)  # bounds every wait; generous for a 1M-key state
    with tempfile.TemporaryDirectory(prefix="aspen-large-") as tmp:
        cluster = LocalCluster(args.dir or Path(tmp) / "cluster")
        cluster.up(3)
        node_ids = sorted(cluster.nodes)
        client = AsyncClient(cluster.endpoints, cluster.cookie, timeout_s=CLIENT_TIMEOUT_S)
        probes = Probes(cluster, args.probe_ms / 1e3, "probe/key")
        watcher = SnapshotWatcher(cluster, node_ids)
        try:
            await client.put(probes.probe_key, b"p")
            term_before = await leader_term(cluster)
            if args.probe_ms > 0:
                probes.start()
            watcher.start()

            probes.phase = "load"
            load_s, resent = await load(client, args.keys, args.batch_ops, args.in_flight)
            load_end = time.perf_counter()
            rows.add("load keys/s", f"{args.keys / load_s:,.0f}")
            rows.add("load s", f"{load_s:,.1f}")
            rows.add("batches sent again (failed)", f"{resent}")
            rows.add("RSS per node after load MiB", mib_of_nodes(cluster, "VmRSS", node_ids))

            probes.phase = "snapshot"
            fill_writes, snaps = await fill_log_until_snapshots(client, watcher, load_end, wait_s)
            fill_s = time.perf_counter() - load_end
            await asyncio.sleep(0.5)  # a last probe round after the snapshot
            await probes.stop()
            await watcher.stop()
            rows.add("one-op writes until every node compacted", f"{fill_writes:,} in {fill_s:,.1f} s")
            rows.add("snapshot size MiB", " / ".join(
                f"{snaps[n].size_bytes / MIB:,.1f}" if n in snaps else "none" for n in node_ids))
            rows.add(
                "snapshot file write s (child .tmp to rename)",
                " / ".join(
                    f"{snaps[n].write_s:.2f}" if n in snaps and snaps[n].write_s is not None else "-"
                    for n in node_ids
                ),
            )
            during_load = sum(1 for ev in watcher.events if ev.done_s <= load_end)
            rows.add("snapshots during the load", f"{during_load}")
            for kind in PROBE_KINDS:
                for phase in ("load", "snapshot"):
                    rows.add(f"slowest {kind} during {phase} ms", probes.slowest(phase, kind, node_ids))
            rows.add("probe requests failed", f"{probes.failures}")
            rows.add("peak RSS per node MiB (VmHWM)", mib_of_nodes(cluster, "VmHWM", node_ids))
            # 0 expected: neither a load nor a compaction should cost the leader its term.
            rows.add("elections during load and snapshot", f"{await leader_term(cluster) - term_before}")

            leader = await asyncio.to_thread(cluster.wait_leader)
            follower = next(n for n in node_ids if n != leader)
            # A restart or a join that does not finish in time is a result to report, not a
            # reason to lose the rows above.
            try:
                stop_s, restart_s = await restart_seconds(
                    cluster, follower, KEY_FORMAT.format(args.keys - 1), wait_s
                )
                rows.add("stop s (SIGTERM to exit)", f"{stop_s:.2f}")
                rows.add("restart s", f"{restart_s:.2f}")
            except (TimeoutError, RuntimeError) as exc:
                rows.add("restart s", f"failed: {exc}"[:200])
                await asyncio.to_thread(cluster.wait_leader)

            t0 = time.perf_counter()
            try:
                added = await asyncio.to_thread(cluster.add_node, wait_s)
                rows.add("added node catch-up s", f"{time.perf_counter() - t0:.2f}")
                rows.add("RSS of the added node MiB", mib_of_nodes(cluster, "VmRSS", [added]))
            except (TimeoutError, RuntimeError, AspenError) as exc:
                rows.add(
                    "added node catch-up s", f"failed after {time.perf_counter() - t0:.0f} s: {exc}"[:200]
                )
        finally:
            await probes.stop()
            await watcher.stop()
            await client.close()
            cluster.down()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000, help="keys to load (100-byte random values)")
    ap.add_argument("--batch-ops", type=int, default=BATCH_OPS_MAX, help="Set ops per BatchWrite")
    ap.add_argument("--in-flight", type=int, default=4, help="batches in flight while loading")
    ap.add_argument(
        "--probe-ms", type=float, default=10.0, help="probe period per node and kind (0: no probes)"
    )
    ap.add_argument("--dir", type=Path,
                    help="cluster directory, kept afterwards for its node logs (default: a temporary one)")
    ap.add_argument("--no-readme", action="store_true", help="print only; do not update benchmarks/README.md")
    args = ap.parse_args()
    if args.keys < 1 or not 1 <= args.batch_ops <= BATCH_OPS_MAX or args.in_flight < 1:
        ap.error(f"--keys and --in-flight must be positive, --batch-ops from 1 to {BATCH_OPS_MAX}")
    if args.dir is not None and args.dir.exists() and any(args.dir.iterdir()):
        ap.error(f"--dir {args.dir} is not empty")
    rows = uvloop.run(main_async(args))
    text = table(rows)
    print("\n" + text)
    if not args.no_readme:
        note = (
            f"3 nodes on 127.0.0.1, {args.keys:,} keys of random {VALUE_BYTES}-byte values loaded by "
            "BatchWrite of "
            f"{args.batch_ops:,} ops, {args.in_flight} batches in flight, Python client (asyncio + uvloop); "
            "Aspen "
            "fsync on (default). Probes: a stale and a linearizable read to each node every "
            f"{args.probe_ms:g} ms, "
            "each node answering itself, during the load (their cost is in the load rate) and the snapshot "
            "phase (from the end of the load "
            f"until every node has compacted). No "
            "request forces a snapshot: a node compacts once its log holds more than "
            f"{COMPACTION_MIN_ENTRIES:,} "
            f"entries (or {COMPACTION_MIN_TIME_S:g} s after its last), and a batch is one entry, so after "
            "the load "
            "the bench writes one-op entries until every node has replaced raft/snapshot.bin. A forked "
            "child dumps "
            "the state and writes the file (from snapshot.bin.child.tmp appearing to its rename) while the "
            "node "
            "serves; the slowest probe answers during the snapshot show what serving felt. Per-node cells "
            "are "
            "node 1 / 2 / 3. Restart: a follower, SIGTERM, then start until it has applied the leader's "
            "commit "
            "index and answers a linearizable read itself. Added node: LocalCluster.add_node "
            "(aspen-cluster add), "
            f"from start to caught up. Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores."
        )
        write_section("large_state_bench", "Large state: load, memory, snapshot, restart, new member",
                      note + "\n\n" + text)


if __name__ == "__main__":
    main()
