"""Where a plugin request's cost goes in one node process: the call itself against the hand-off
to the plugin's worker thread.

    python benchmarks/dispatch_bench.py [--batches 1000] [--rounds 5] [--no-readme]

No cluster and no sockets: an event loop posts batches of 64 requests (as 64 in flight arrive)
to a PluginWorker (aspen/plugins/worker.py) serving a WAT plugin over an in-memory host, and
awaits their answers. Three ways, interleaved round by round:
- inline: the same calls made one after another on the loop's thread (what the worker saves
  the loop from, not a way the node serves: a slow plugin would stall it);
- worker, two CPUs: loop and worker threads where the OS puts them;
- worker, one CPU: both threads pinned to the same CPU.
Each thread's CPU time per request comes from time.thread_time; the best round is kept. The
plugin bench (benchmarks/plugin_bench.py) measures the whole request over the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aspen.plugins.worker import PluginWorker
from benchmarks.plugin_bench import READ_RESPONSE
from benchmarks.report import write_section
from sandbox import InMemoryHost, Permissions, PluginConfig, PluginInstance, Runtime
from tests.plugins.wat import plugin

IN_FLIGHT = 64
WAYS = ("inline", "worker, two CPUs", "worker, one CPU")


def plugins(runtime: Runtime) -> dict[str, tuple[PluginInstance, dict[str, Any]]]:
    host = InMemoryHost()
    host.kv["bench:key"] = b"v" * 100
    pinger = runtime.load(plugin("bench-ping", "1.0.0", {"type": "Pong", "node_id": 0}),
                          PluginConfig("bench-ping", Permissions()), host)
    reader = runtime.load(
        plugin("bench-read", "1.0.0", READ_RESPONSE, imports=("kv_get_value",), strings=(b"bench:key",),
               handle="(drop (call $kv_get_value $s0))"),
        PluginConfig("bench-read", Permissions(kv_read=True), kv_prefixes=("bench:",)), host)
    for p in (pinger, reader):
        p.init()
    return {"Ping (plugin)": (pinger, {"type": "PluginPing"}),
            "ReadKey (plugin, kv_get_value)": (reader, {"type": "ReadKey", "key": "bench:key"})}


def pin(worker: PluginWorker, cpus: set[int]) -> None:
    os.sched_setaffinity(0, cpus)  # the calling thread: the loop's
    native_id = worker._thread.native_id
    assert native_id is not None
    os.sched_setaffinity(native_id, cpus)


async def through_worker(worker: PluginWorker, call: Callable[[dict[str, Any]], Any], request: dict[str, Any],
                         batches: int) -> tuple[float, float, float]:
    """(loop CPU s, worker CPU s, wall s) for `batches` batches of IN_FLIGHT requests."""
    loop = asyncio.get_running_loop()
    left = 0
    batch_done: asyncio.Future[None] = loop.create_future()

    def done(token: Any, result: Any, error: BaseException | None) -> None:
        nonlocal left
        assert error is None and result["type"] != "Error", (result, error)
        left -= 1
        if left == 0:
            batch_done.set_result(None)

    worker_before = await worker.submit(time.thread_time)
    loop_before, wall_before = time.thread_time(), time.perf_counter()
    for _ in range(batches):
        left, batch_done = IN_FLIGHT, loop.create_future()
        for _ in range(IN_FLIGHT):
            worker.post(call, (request,), done, None)
        await batch_done
    loop_s, wall_s = time.thread_time() - loop_before, time.perf_counter() - wall_before
    worker_s = await worker.submit(time.thread_time) - worker_before
    return loop_s, worker_s, wall_s


def inline(
    call: Callable[[dict[str, Any]], Any], request: dict[str, Any], batches: int
) -> tuple[float, float, float]:
    loop_before, wall_before = time.thread_time(), time.perf_counter()
    for _ in range(batches * IN_FLIGHT):
        call(request)
    return time.thread_time() - loop_before, 0.0, time.perf_counter() - wall_before


async def run(batches: int, rounds: int) -> dict[tuple[str, str], tuple[float, float, float]]:
    runtime = Runtime()
    all_cpus = os.sched_getaffinity(0)
    one_cpu = {min(all_cpus)}
    best: dict[tuple[str, str], tuple[float, float, float]] = {}
    try:
        for name, (instance, request) in plugins(runtime).items():
            worker = PluginWorker(name, asyncio.get_running_loop())
            try:
                for _ in range(rounds):
                    for way in WAYS:
                        pin(worker, one_cpu if way == "worker, one CPU" else all_cpus)
                        if way == "inline":
                            loop_s, worker_s, wall_s = inline(instance.handle_request, request, batches)
                        else:
                            loop_s, worker_s, wall_s = await through_worker(
                                worker, instance.handle_request, request, batches
                            )
                        n = batches * IN_FLIGHT
                        us = (loop_s / n * 1e6, worker_s / n * 1e6, wall_s / n * 1e6)
                        if (name, way) not in best or sum(us[:2]) < sum(best[(name, way)][:2]):
                            best[(name, way)] = us
            finally:
                pin(worker, all_cpus)
                worker.close()
    finally:
        runtime.close()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--batches", type=int, default=1000, help=f"batches of {IN_FLIGHT} requests per measurement"
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; each way keeps its best")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("dispatch_bench compares one CPU with two: it needs at least two")
    best = asyncio.run(run(args.batches, args.rounds))
    lines = ["| plugin request | way | loop thread CPU us | worker thread CPU us | CPU us in all | wall us |",
             "|---|---|---|---|---|---|"]
    for (name, way), (loop_us, worker_us, wall_us) in best.items():
        lines.append(
            f"| {name} | {way} | {loop_us:.2f} | {worker_us:.2f} | {loop_us + worker_us:.2f} | "
            f"{wall_us:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        note = (
            f"One process, an in-memory host, batches of {IN_FLIGHT} requests, best of {args.rounds} "
            "interleaved "
            f"rounds of {args.batches} batches, per request, measured {time.strftime('%Y-%m-%d')}. 'inline' "
            "is "
            "the call alone (msgpack in and out, the C call, stats); the worker rows add the hand-off: the "
            "loop's side (post, answers) and the worker's (taking the batch, the same calls). The gap "
            "between "
            "one and two CPUs is what the hand-off costs in caches and in the GIL passing between CPUs."
        )
        write_section(
            "dispatch_bench", "Plugins: the call against the hand-off to its worker", note + "\n\n" + text
        )


if __name__ == "__main__":
    main()
