"""KV benchmark: a 3-node Aspen cluster on loopback, random 100-byte and 32 KiB values.

    python benchmarks/kv_bench.py [--vs-etcd] [--seconds 5] [--failover-rounds 5]
                                  [--aspen-unsafe-no-fsync] [--no-readme] [--tls]

Measures sequential write and read latency (p50/p99) and throughput at 1, 16 and 64
requests in flight with 100-byte values, the same for 32 KiB values (sequential, and writes at
64 in flight), and failover (SIGKILL the leader, time until the next acknowledged write); prints
a table and writes it into benchmarks/README.md. With --vs-etcd it also starts a 3-node etcd
(Debian's etcd-server) on loopback and runs the same workload and the same failover rounds
through the aetcd asyncio client in the same run, printing each Aspen figure as a ratio to
etcd's and against the issue's targets. Values are random bytes (os.urandom), so neither
side gains from compressible data. Both sides fsync their log unless --aspen-unsafe-no-fsync.
With --tls it then compares two fresh Aspen clusters back to back, plaintext and TLS (made by
`aspen-cluster up --tls`: client certificates too): writes/s and reads/s at 64 in flight, and
the cost of a new connection (TCP + TLS + cookie handshake + one Ping).
A program that reports, never a timed test: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aspen.client import AsyncClient
from benchmarks.report import write_section
from deploy.launcher import LocalCluster, free_ports

VALUE_BYTES = 100
LARGE_VALUE_BYTES = 32 * 1024
# Distinct random values cycled through: drawn once so os.urandom's cost is not in the timings;
# 4096 x 100 B and 256 x 32 KiB (8 MiB) are far more than any cache of repeated values.
VALUE_POOL = 4096
LARGE_VALUE_POOL = 256
CONCURRENCY = (1, 16, 64)
SEQUENTIAL_OPS = 2000
SEQUENTIAL_OPS_LARGE = 500  # 32 KiB each: fewer, the p50 settles long before
LARGE_KEYS = 2000  # keyspace of the 32 KiB throughput run: bounds etcd's history and Aspen's state
FAILOVER_ATTEMPT_TIMEOUT_S = 1.0
FAILOVER_ATTEMPTS_MAX = 600  # each at most FAILOVER_ATTEMPT_TIMEOUT_S: bounds a round at ~10 min
ETCD_READY_S = 30.0
UNSAFE_NO_FSYNC = "--unsafe-no-fsync"
COUNT_METRICS = ("failed requests", "elections during workload")
# Issue 11's targets, as bounds on aspen / etcd: (metric, "<=" or ">=", bound, how the issue says it).
TARGETS = (
    ("write p50 ms", "<=", 1.0, "write p50 <= 1.0x etcd"),
    ("read p50 ms", "<=", 0.8, "linearizable read p50 <= 0.8x etcd"),
    ("writes/s @64", ">=", 2.0, "writes/s @64 >= 2x etcd"),
    ("reads/s @64", ">=", 2.0, "reads/s @64 >= 2x etcd"),
    ("failover median s", "<=", 1.0, "failover <= etcd's"),
)


@dataclass
class Target:
    name: str
    put: Callable[[str, bytes], Awaitable[Any]]
    get: Callable[[str], Awaitable[Any]]
    close: Callable[[], Awaitable[None]]
    term: Callable[[], Awaitable[int]]  # the Raft term now: its growth counts elections


class Errors:
    """Failed requests of a run. They are counted, not raised: a run that hits errors (an
    election under load, a stalled log) still reports, and says how many requests failed."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    async def call(self, op: Callable[[int], Awaitable[Any]], i: int) -> bool:
        try:
            await op(i)
            return True
        except Exception as exc:
            self.count += 1
            if self.first is None:
                self.first = f"{type(exc).__name__}: {exc}"
            return False


def random_values(count: int, size_bytes: int) -> list[bytes]:
    return [os.urandom(size_bytes) for _ in range(count)]


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


async def sequential(op: Callable[[int], Awaitable[Any]], count: int, errors: Errors) -> tuple[float, float]:
    """p50 and p99 ms of the requests that succeeded (failures are counted in `errors`)."""
    samples = []
    for i in range(count):
        t0 = time.perf_counter()
        if await errors.call(op, i):
            samples.append(time.perf_counter() - t0)
    if not samples:
        return float("nan"), float("nan")
    samples.sort()
    return percentile(samples, 0.5) * 1e3, percentile(samples, 0.99) * 1e3


async def throughput(
    op: Callable[[int], Awaitable[Any]], in_flight: int, seconds: float, errors: Errors
) -> float:
    """Acknowledged requests per second with `in_flight` outstanding."""
    done = 0
    end = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = w * 10_000_000
        while time.perf_counter() < end:
            # Awaited first: `done += await ...` would read `done` before the await and lose
            # the other workers' increments made meanwhile.
            ok = await errors.call(op, i)
            done += ok
            i += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(in_flight)))
    return done / (time.perf_counter() - t0)


async def run_small(target: Target, seconds: float, errors: Errors) -> dict[str, float]:
    """The 100-byte rows: sequential latency, then throughput at each concurrency."""
    values = random_values(VALUE_POOL, VALUE_BYTES)

    def value(i: int) -> bytes:
        return values[i % VALUE_POOL]

    out: dict[str, float] = {}
    await target.put("warmup", value(0))
    out["write p50 ms"], out["write p99 ms"] = await sequential(
        lambda i: target.put(f"seq/{i}", value(i)), SEQUENTIAL_OPS, errors
    )
    out["read p50 ms"], out["read p99 ms"] = await sequential(
        lambda i: target.get(f"seq/{i}"), SEQUENTIAL_OPS, errors
    )
    for n in CONCURRENCY:
        out[f"writes/s @{n}"] = await throughput(
            lambda i: target.put(f"tp/{i % 100_000}", value(i)), n, seconds, errors
        )
    for n in CONCURRENCY:
        out[f"reads/s @{n}"] = await throughput(
            lambda i: target.get(f"seq/{i % SEQUENTIAL_OPS}"), n, seconds, errors
        )
    return out


async def run_large(target: Target, seconds: float, errors: Errors) -> dict[str, float]:
    """The 32 KiB rows: sequential write and read latency, writes at 64 in flight."""
    values = random_values(LARGE_VALUE_POOL, LARGE_VALUE_BYTES)

    def value(i: int) -> bytes:
        return values[i % LARGE_VALUE_POOL]

    out: dict[str, float] = {}
    out["write32k p50 ms"], out["write32k p99 ms"] = await sequential(
        lambda i: target.put(f"big/{i}", value(i)), SEQUENTIAL_OPS_LARGE, errors
    )
    out["read32k p50 ms"], out["read32k p99 ms"] = await sequential(
        lambda i: target.get(f"big/{i}"), SEQUENTIAL_OPS_LARGE, errors
    )
    out["writes32k/s @64"] = await throughput(
        lambda i: target.put(f"bigtp/{i % LARGE_KEYS}", value(i)), 64, seconds, errors
    )
    return out


Workload = Callable[[Target, float, Errors], Awaitable[dict[str, float]]]


async def run_phase(
    make_target: Callable[[], Awaitable[Target]], workload: Workload, seconds: float, errors: Errors,
    counts: dict[str, float],
) -> dict[str, float]:
    """One workload through a fresh client, adding the elections it saw to `counts`."""
    target = await make_target()
    try:
        term_before = await target.term()
        out = await workload(target, seconds, errors)
        counts["elections during workload"] += await target.term() - term_before
    finally:
        await target.close()
    return out


async def run_system(
    name: str, make_target: Callable[[], Awaitable[Target]], seconds: float,
    failover: Callable[[], Awaitable[list[float]]] | None,
) -> dict[str, float]:
    """The 100-byte rows, then failover, then the 32 KiB rows (a fresh client for each part:
    the failover restarts members under the first one's feet). Failover comes before the
    large values so that whatever they do to the cluster cannot skew it."""
    errors = Errors()
    # Both should stay 0: load alone must not fail a request or cause an election.
    counts: dict[str, float] = {"failed requests": 0, "elections during workload": 0}
    out = await run_phase(make_target, run_small, seconds, errors, counts)
    failover_rows = summarize_failover(await failover()) if failover is not None else {}
    out.update(await run_phase(make_target, run_large, seconds, errors, counts))
    out.update(failover_rows)
    counts["failed requests"] = errors.count
    out.update(counts)
    if errors.first is not None:
        print(f"{name}: {errors.count} requests failed; the first: {errors.first}", file=sys.stderr)
    return out


def summarize_failover(times_s: list[float]) -> dict[str, float]:
    times_s = sorted(times_s)
    return {"failover median s": times_s[len(times_s) // 2], "failover max s": times_s[-1]}


async def put_until_acknowledged(
    put: Callable[[str, bytes], Awaitable[Any]], key: str, value: bytes = b"x"
) -> None:
    """Retry a put (each attempt bounded by its client's timeout) until one is acknowledged,
    10 ms apart, as a client that must get its write in would; at most FAILOVER_ATTEMPTS_MAX."""
    last: Exception | None = None
    for _ in range(FAILOVER_ATTEMPTS_MAX):
        try:
            await put(key, value)
            return
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.01)
    raise TimeoutError(f"no write acknowledged in {FAILOVER_ATTEMPTS_MAX} attempts; the last error: {last}")


async def failover_seconds(cluster: LocalCluster, rounds: int) -> list[float]:
    """SIGKILL the leader; time until a write succeeds again (election + client rediscovery)."""
    value = os.urandom(VALUE_BYTES)
    out = []
    for i in range(rounds):
        leader = cluster.wait_leader()
        client = AsyncClient(
            cluster.endpoints, cluster.cookie, timeout_s=FAILOVER_ATTEMPT_TIMEOUT_S, retries_max=3
        )
        await put_until_acknowledged(client.put, "failover/warm")  # connected to the leader before the kill
        cluster.kill(leader)
        killed = time.perf_counter()
        await put_until_acknowledged(client.put, f"failover/{i}", value)
        out.append(time.perf_counter() - killed)
        await client.close()
        cluster.start(leader)
        cluster.wait_leader()
    return out


async def aspen_target(cluster: LocalCluster) -> Target:
    client = AsyncClient(cluster.endpoints, cluster.cookie, timeout_s=30)

    async def term() -> int:
        return int((await client.cluster_status())["term"])

    return Target("aspen", client.put, client.get, client.close, term)


def etcd_binary() -> str:
    return shutil.which("etcd") or "/usr/bin/etcd"


def etcd_version() -> str:
    out = subprocess.run([etcd_binary(), "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()[0].removeprefix("etcd Version: ") if out.stdout else "unknown"


class EtcdCluster:
    """Three etcd members on loopback, from Debian's etcd-server package. fsync stays on, as
    etcd ships: the command never carries --unsafe-no-fsync."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        ports = free_ports(6)
        self.client_urls = [f"http://127.0.0.1:{ports[i]}" for i in range(3)]
        self.peer_urls = [f"http://127.0.0.1:{ports[3 + i]}" for i in range(3)]
        self.binary = etcd_binary()

    def command(self, i: int) -> list[str]:
        initial = ",".join(f"e{j}={u}" for j, u in enumerate(self.peer_urls))
        # On a restart the data dir exists and etcd ignores the --initial-* flags.
        cmd = [self.binary, "--name", f"e{i}", "--data-dir", str(self.root / f"e{i}"),
               "--listen-client-urls", self.client_urls[i], "--advertise-client-urls", self.client_urls[i],
               "--listen-peer-urls", self.peer_urls[i], "--initial-advertise-peer-urls", self.peer_urls[i],
               "--initial-cluster", initial, "--initial-cluster-state", "new",
               "--initial-cluster-token", "aspen-bench"]
        assert UNSAFE_NO_FSYNC not in cmd, "etcd is measured as it ships: fsync on"
        return cmd

    def start(self) -> None:
        if not Path(self.binary).exists():
            raise SystemExit("etcd not found: apt-get install etcd-server")
        for i in range(3):
            self.start_member(i)

    def start_member(self, i: int) -> None:
        with open(self.root / f"etcd{i}.log", "ab") as log:
            self.procs[i] = subprocess.Popen(
                self.command(i), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "ETCD_UNSUPPORTED_ARCH": platform.machine()},
            )

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


def etcd_client(url: str, timeout_s: float | None = None) -> Any:
    import aetcd

    host, port = url.removeprefix("http://").split(":")
    return aetcd.Client(host=host, port=int(port), timeout=timeout_s)


async def etcd_wait_ready(client: Any) -> None:
    deadline = time.monotonic() + ETCD_READY_S
    while True:
        try:
            await client.put(b"ready", b"1")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def etcd_target(etcd: EtcdCluster) -> Target:
    client = etcd_client(etcd.client_urls[0])
    await etcd_wait_ready(client)

    async def put(key: str, value: bytes) -> Any:
        return await client.put(key.encode(), value)

    async def get(key: str) -> Any:
        return await client.get(key.encode())  # linearizable by default in etcd

    async def term() -> int:
        return int((await client.status()).raft_term)

    return Target("etcd", put, get, client.close, term)


async def etcd_leader(etcd: EtcdCluster, timeout_s: float = ETCD_READY_S) -> int:
    """The member every running member names as leader (index into client_urls)."""
    names = {f"e{i}": i for i in range(3)}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen: set[int | None] = set()
        for i, proc in etcd.procs.items():
            if proc.poll() is not None:
                continue
            client = etcd_client(etcd.client_urls[i], FAILOVER_ATTEMPT_TIMEOUT_S)
            try:
                st = await client.status()
                seen.add(names.get(st.leader.name) if st.leader is not None else None)
            except Exception:
                seen.add(None)
            finally:
                await client.close()
        if len(seen) == 1 and None not in seen:
            return seen.pop()  # type: ignore[return-value]
        await asyncio.sleep(0.05)
    raise TimeoutError(f"etcd: no leader all members agree on within {timeout_s}s")


class EtcdFailoverClient:
    """Puts through every endpoint in turn, as etcd's own client balances: one attempt with a
    deadline, and on any failure the next endpoint. Starts at the leader, as Aspen's client does
    once it has discovered it."""

    def __init__(self, urls: list[str], first: int) -> None:
        self.clients = [etcd_client(u, FAILOVER_ATTEMPT_TIMEOUT_S) for u in urls]
        self.current = first

    async def put(self, key: str, value: bytes) -> None:
        try:
            await self.clients[self.current].put(key.encode(), value)
        except Exception:
            self.current = (self.current + 1) % len(self.clients)
            raise

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


async def etcd_failover_seconds(etcd: EtcdCluster, rounds: int) -> list[float]:
    """The same quantity as failover_seconds: SIGKILL the leader, time until a write is
    acknowledged again; the killed member is restarted between rounds."""
    value = os.urandom(VALUE_BYTES)
    out = []
    for i in range(rounds):
        leader = await etcd_leader(etcd)
        client = EtcdFailoverClient(etcd.client_urls, leader)
        try:
            await put_until_acknowledged(client.put, "failover/warm")
            etcd.kill(leader)
            killed = time.perf_counter()
            await put_until_acknowledged(client.put, f"failover/{i}", value)
            out.append(time.perf_counter() - killed)
        finally:
            await client.close()
        etcd.start_member(leader)
        await etcd_leader(etcd)
    return out


def _cell(metric: str, value: float) -> str:
    return f"{value:,.2f}" if metric.endswith((" ms", " s")) else f"{value:,.0f}"


def table(rows: dict[str, dict[str, float]]) -> str:
    names = list(rows)
    metrics = list(rows["aspen"])
    header = "| metric | " + " | ".join(names) + (" | aspen / etcd |" if "etcd" in rows else " |")
    sep = "|---" * (len(names) + 1 + ("etcd" in rows)) + "|"
    lines = [header, sep]
    for m in metrics:
        if any(m not in rows[n] for n in names):
            lines.append(
                f"| {m} | {_cell(m, rows['aspen'][m])} |" + " - |" * (len(names) - 1 + ("etcd" in rows))
            )
            continue
        line = f"| {m} | " + " | ".join(_cell(m, rows[n][m]) for n in names)
        if "etcd" in rows:
            # Counts of failures are read as they are, not as a ratio.
            counted = m in COUNT_METRICS or not rows["etcd"][m]
            line += " | -" if counted else f" | {rows['aspen'][m] / rows['etcd'][m]:.2f}x"
        lines.append(line + " |")
    return "\n".join(lines)


def targets_line(rows: dict[str, dict[str, float]]) -> str:
    """Issue 11's targets, each with this run's aspen / etcd ratio and whether it is met."""
    parts = []
    for metric, op, bound, words in TARGETS:
        aspen, etcd = rows.get("aspen", {}).get(metric), rows.get("etcd", {}).get(metric)
        if aspen is None or not etcd:
            parts.append(f"{words}: not measured")
            continue
        ratio = aspen / etcd
        met = ratio <= bound if op == "<=" else ratio >= bound
        parts.append(f"{words}: {ratio:.2f}x, {'met' if met else 'not met'}")
    return "Targets (issue 11): " + "; ".join(parts) + "."


async def main_async(args: argparse.Namespace, node_args: list[str]) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    rounds = args.failover_rounds
    with tempfile.TemporaryDirectory(prefix="aspen-bench-") as tmp:
        cluster = LocalCluster(Path(tmp) / "aspen", node_args=node_args)
        cluster.up(3)
        try:
            rows["aspen"] = await run_system(
                "aspen", lambda: aspen_target(cluster), args.seconds,
                (lambda: failover_seconds(cluster, rounds)) if rounds else None,
            )
        finally:
            cluster.down()
        if args.vs_etcd:
            etcd = EtcdCluster(Path(tmp))
            etcd.start()
            try:
                rows["etcd"] = await run_system(
                    "etcd", lambda: etcd_target(etcd), args.seconds,
                    (lambda: etcd_failover_seconds(etcd, rounds)) if rounds else None,
                )
            finally:
                etcd.stop()
    return rows


HANDSHAKES = 50


async def connect_ms_p50(cluster: LocalCluster) -> float:
    """p50 of a new connection to one node: TCP, TLS when on, the cookie handshake, one Ping."""
    samples = []
    for _ in range(HANDSHAKES):
        client = AsyncClient(
            cluster.nodes[1].client_addr,
            cluster.cookie,
            timeout_s=10,
            discover_leader=False,
            retries_max=1,
            **cluster.client_tls(),
        )
        t0 = time.perf_counter()
        await client.ping()
        samples.append(time.perf_counter() - t0)
        await client.close()
    return percentile(sorted(samples), 0.5) * 1e3


async def rows_at_64(cluster: LocalCluster, seconds: float, values: list[bytes]) -> dict[str, float]:
    client = AsyncClient(cluster.endpoints, cluster.cookie, timeout_s=30, **cluster.client_tls())
    try:
        errors = Errors()
        await client.put("tls/warm", b"x")
        writes = await throughput(
            lambda i: client.put(f"tls/{i % 10_000}", values[i % VALUE_POOL]), 64, seconds, errors
        )
        reads = await throughput(lambda i: client.get(f"tls/{i % 10_000}"), 64, seconds, errors)
        return {
            "writes/s @64": writes,
            "reads/s @64": reads,
            "new connection p50 ms": await connect_ms_p50(cluster),
            "failed requests": errors.count,
        }
    finally:
        await client.close()


async def tls_comparison(seconds: float, node_args: list[str]) -> dict[str, dict[str, float]]:
    """Issue 12's TLS rows: the same 64-in-flight runs on a plaintext and on a TLS cluster."""
    rows: dict[str, dict[str, float]] = {}
    values = random_values(VALUE_POOL, VALUE_BYTES)
    for name, tls in (("plaintext", False), ("tls", True)):
        with tempfile.TemporaryDirectory(prefix="aspen-bench-tls-") as tmp:
            cluster = LocalCluster(Path(tmp) / "aspen", node_args=node_args, tls=tls)
            cluster.up(3)
            try:
                rows[name] = await rows_at_64(cluster, seconds, values)
            finally:
                cluster.down()
    return rows


def tls_table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| metric | plaintext | tls | tls / plaintext |", "|---|---|---|---|"]
    for metric, plain in rows["plaintext"].items():
        tls = rows["tls"][metric]
        ratio = f"{tls / plain:.2f}x" if plain and metric not in COUNT_METRICS else "-"
        lines.append(f"| {metric} | {_cell(metric, plain)} | {_cell(metric, tls)} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vs-etcd", action="store_true", help="run the same workload against a 3-node etcd")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    ap.add_argument("--no-readme", action="store_true", help="print only; do not update benchmarks/README.md")
    ap.add_argument(
        "--failover-rounds", type=int, default=5, help="leader SIGKILLs to time on each system (0: skip)"
    )
    ap.add_argument("--aspen-unsafe-no-fsync", action="store_true",
                    help=f"start the Aspen nodes with aspen-node {UNSAFE_NO_FSYNC} (etcd keeps fsync on)")
    ap.add_argument(
        "--tls", action="store_true", help="then compare plaintext and TLS clusters (issue 12's rows)"
    )
    args = ap.parse_args()
    node_args: list[str] = []
    if args.aspen_unsafe_no_fsync:
        node_args.append(UNSAFE_NO_FSYNC)
    aspen_fsync = f"off ({UNSAFE_NO_FSYNC})" if node_args else "on (default)"
    fsync_note = f"aspen fsync: {aspen_fsync}"
    if args.vs_etcd:
        fsync_note += f"; etcd {etcd_version()} fsync: on (etcd's default; {UNSAFE_NO_FSYNC} not passed)"
    print(fsync_note, flush=True)
    rows = uvloop.run(main_async(args, node_args))
    text = table(rows)
    print(text)
    targets = targets_line(rows) if args.vs_etcd else ""
    if targets:
        print(targets)
    if args.tls:
        tls_text = "TLS (issue 12: writes/s and reads/s @64 within 15% of plaintext):\n\n" + tls_table(
            uvloop.run(tls_comparison(args.seconds, node_args)))
        print(tls_text)
        targets = (targets + "\n\n" if targets else "") + tls_text
    if not args.no_readme:
        note = (
            f"3 nodes on 127.0.0.1, random values (os.urandom) of {VALUE_BYTES} bytes, and of 32 KiB in the "
            f"'32k' rows, Python client (asyncio + uvloop), {args.seconds:g} s per throughput run, "
            f"{SEQUENTIAL_OPS} sequential ops ({SEQUENTIAL_OPS_LARGE} of 32 KiB); reads are linearizable on "
            "both "
            "sides; failover is SIGKILL of the leader to the next acknowledged write, "
            f"{args.failover_rounds} "
            f"round{'' if args.failover_rounds == 1 else 's'} each, the etcd client trying its endpoints in "
            f"turn. {fsync_note}. "
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores."
        )
        body = note + "\n\n" + text + ("\n\n" + targets if targets else "")
        write_section("kv_bench", "KV: Aspen" + (" vs etcd" if args.vs_etcd else ""), body)


if __name__ == "__main__":
    main()
