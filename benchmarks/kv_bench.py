"""KV benchmark: a 3-node Aspen cluster on loopback, 100-byte values.

    python benchmarks/kv_bench.py [--vs-etcd] [--seconds 5] [--no-readme]

Measures sequential write and read latency (p50/p99) and throughput at 1, 16 and 64
requests in flight, prints a table and writes it into benchmarks/README.md. With --vs-etcd it
also starts a 3-node etcd (Debian's etcd-server) on loopback and runs the same workload through
the aetcd asyncio client in the same run, printing each Aspen figure as a ratio to etcd's.
A program that reports, never a timed test: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
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

VALUE = b"v" * 100
CONCURRENCY = (1, 16, 64)
SEQUENTIAL_OPS = 2000


@dataclass
class Target:
    name: str
    put: Callable[[str, bytes], Awaitable[Any]]
    get: Callable[[str], Awaitable[Any]]
    close: Callable[[], Awaitable[None]]


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


async def sequential(op: Callable[[int], Awaitable[Any]], count: int) -> tuple[float, float]:
    samples = []
    for i in range(count):
        t0 = time.perf_counter()
        await op(i)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return percentile(samples, 0.5) * 1e3, percentile(samples, 0.99) * 1e3


async def throughput(op: Callable[[int], Awaitable[Any]], in_flight: int, seconds: float) -> float:
    done = 0
    end = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = w * 10_000_000
        while time.perf_counter() < end:
            await op(i)
            i += 1
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(in_flight)))
    return done / (time.perf_counter() - t0)


async def run_workload(target: Target, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    await target.put("warmup", VALUE)
    out["write p50 ms"], out["write p99 ms"] = await sequential(lambda i: target.put(f"seq/{i}", VALUE), SEQUENTIAL_OPS)
    out["read p50 ms"], out["read p99 ms"] = await sequential(lambda i: target.get(f"seq/{i}"), SEQUENTIAL_OPS)
    for n in CONCURRENCY:
        out[f"writes/s @{n}"] = await throughput(lambda i: target.put(f"tp/{i % 100_000}", VALUE), n, seconds)
    for n in CONCURRENCY:
        out[f"reads/s @{n}"] = await throughput(lambda i: target.get(f"seq/{i % SEQUENTIAL_OPS}"), n, seconds)
    return out


async def failover_seconds(cluster: LocalCluster, rounds: int) -> list[float]:
    """SIGKILL the leader; time until a write succeeds again (election + client rediscovery)."""
    out = []
    for i in range(rounds):
        leader = cluster.wait_leader()
        client = AsyncClient(cluster.endpoints, cluster.cookie, timeout_s=1.0, retries_max=3)
        await client.put("failover/warm", b"x")
        cluster.kill(leader)
        killed = time.perf_counter()
        for _ in range(600):  # bounded: 600 attempts of at most 1 s each
            try:
                await client.put(f"failover/{i}", VALUE)
                break
            except Exception:
                await asyncio.sleep(0.01)
        out.append(time.perf_counter() - killed)
        await client.close()
        cluster.start(leader)
        cluster.wait_leader()
    return out


async def aspen_target(cluster: LocalCluster) -> Target:
    client = AsyncClient(cluster.endpoints, cluster.cookie, timeout_s=30)
    return Target("aspen", client.put, client.get, client.close)


class EtcdCluster:
    """Three etcd members on loopback, from Debian's etcd-server package."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        ports = free_ports(6)
        self.client_urls = [f"http://127.0.0.1:{ports[i]}" for i in range(3)]
        self.peer_urls = [f"http://127.0.0.1:{ports[3 + i]}" for i in range(3)]

    def start(self) -> None:
        binary = shutil.which("etcd") or "/usr/bin/etcd"
        if not Path(binary).exists():
            raise SystemExit("etcd not found: apt-get install etcd-server")
        initial = ",".join(f"e{i}={u}" for i, u in enumerate(self.peer_urls))
        for i in range(3):
            log = open(self.root / f"etcd{i}.log", "wb")  # noqa: SIM115 - closed with the process
            self.procs.append(subprocess.Popen(
                [binary, "--name", f"e{i}", "--data-dir", str(self.root / f"e{i}"),
                 "--listen-client-urls", self.client_urls[i], "--advertise-client-urls", self.client_urls[i],
                 "--listen-peer-urls", self.peer_urls[i], "--initial-advertise-peer-urls", self.peer_urls[i],
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", "aspen-bench"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ETCD_UNSUPPORTED_ARCH": platform.machine()},
            ))

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


async def etcd_target(etcd: EtcdCluster) -> Target:
    import aetcd

    host_port = etcd.client_urls[0].removeprefix("http://")
    host, port = host_port.split(":")
    client = aetcd.Client(host=host, port=int(port))
    deadline = time.monotonic() + 30
    while True:
        try:
            await client.put(b"ready", b"1")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)

    async def put(key: str, value: bytes) -> Any:
        return await client.put(key.encode(), value)

    async def get(key: str) -> Any:
        return await client.get(key.encode())  # linearizable by default in etcd

    return Target("etcd", put, get, client.close)


def table(rows: dict[str, dict[str, float]]) -> str:
    names = list(rows)
    metrics = list(rows["aspen"])
    header = "| metric | " + " | ".join(names) + (" | aspen / etcd |" if "etcd" in rows else " |")
    sep = "|---" * (len(names) + 1 + ("etcd" in rows)) + "|"
    lines = [header, sep]
    for m in metrics:
        if any(m not in rows[n] for n in names):
            lines.append(f"| {m} | {rows['aspen'][m]:,.2f} |" + " - |" * (len(names) - 1 + ("etcd" in rows)))
            continue
        cells = [f"{rows[n][m]:,.2f}" if "ms" in m else f"{rows[n][m]:,.0f}" for n in names]
        line = f"| {m} | " + " | ".join(cells)
        if "etcd" in rows:
            ratio = rows["aspen"][m] / rows["etcd"][m] if rows["etcd"][m] else float("nan")
            line += f" | {ratio:.2f}x"
        lines.append(line + " |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="aspen-bench-") as tmp:
        cluster = LocalCluster(Path(tmp) / "aspen")
        cluster.up(3)
        try:
            target = await aspen_target(cluster)
            rows["aspen"] = await run_workload(target, args.seconds)
            await target.close()
            if args.failover_rounds:
                times = sorted(await failover_seconds(cluster, args.failover_rounds))
                rows["aspen"]["failover median s"] = times[len(times) // 2]
                rows["aspen"]["failover max s"] = times[-1]
        finally:
            cluster.down()
        if args.vs_etcd:
            etcd = EtcdCluster(Path(tmp))
            etcd.start()
            try:
                target = await etcd_target(etcd)
                rows["etcd"] = await run_workload(target, args.seconds)
                await target.close()
            finally:
                etcd.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vs-etcd", action="store_true", help="run the same workload against a 3-node etcd")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    ap.add_argument("--no-readme", action="store_true", help="print only; do not update benchmarks/README.md")
    ap.add_argument("--failover-rounds", type=int, default=5, help="leader SIGKILLs to time (0: skip)")
    args = ap.parse_args()
    rows = uvloop.run(main_async(args))
    text = table(rows)
    print(text)
    if not args.no_readme:
        note = (
            f"3 nodes on 127.0.0.1, 100-byte values, Python client (asyncio + uvloop), {args.seconds:g} s per "
            f"throughput run, {SEQUENTIAL_OPS} sequential ops; reads are linearizable on both sides. "
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores."
        )
        write_section("kv_bench", "KV: Aspen" + (" vs etcd" if args.vs_etcd else ""), note + "\n\n" + text)


if __name__ == "__main__":
    main()
