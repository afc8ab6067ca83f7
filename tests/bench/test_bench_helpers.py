"""The benchmarks' pure helpers: what their tables say must follow from what they measured."""

from __future__ import annotations

import asyncio

from benchmarks.kv_bench import Errors, table, targets_line, throughput
from deploy.launcher import parse_status_kib


def rows(aspen: dict[str, float], etcd: dict[str, float]) -> dict[str, dict[str, float]]:
    return {"aspen": aspen, "etcd": etcd}


def test_targets_are_met_on_the_right_side_of_each_bound() -> None:
    measured = rows(
        {
            "write p50 ms": 1.0,
            "read p50 ms": 0.9,
            "writes/s @64": 2000,
            "reads/s @64": 3000,
            "failover median s": 0.5,
        },
        {
            "write p50 ms": 1.0,
            "read p50 ms": 1.0,
            "writes/s @64": 1000,
            "reads/s @64": 1000,
            "failover median s": 1.0,
        },
    )
    line = targets_line(measured)
    assert "write p50 <= 1.0x etcd: 1.00x, met" in line  # the bound itself meets a <= target
    assert "linearizable read p50 <= 0.8x etcd: 0.90x, not met" in line
    assert "writes/s @64 >= 2x etcd: 2.00x, met" in line
    assert "reads/s @64 >= 2x etcd: 3.00x, met" in line
    assert "failover <= etcd's: 0.50x, met" in line


def test_targets_without_etcd_say_not_measured() -> None:
    assert "write p50 <= 1.0x etcd: not measured" in targets_line({"aspen": {"write p50 ms": 1.0}})


def test_table_units_and_counts() -> None:
    text = table(rows(
        {"write p50 ms": 1.234, "writes/s @64": 12345.6, "failover max s": 0.5, "failed requests": 3},
        {"write p50 ms": 1.0, "writes/s @64": 1000.0, "failover max s": 1.0, "failed requests": 0},
    ))
    assert "| write p50 ms | 1.23 | 1.00 | 1.23x |" in text
    assert "| writes/s @64 | 12,346 | 1,000 | 12.35x |" in text
    assert "| failover max s | 0.50 | 1.00 | 0.50x |" in text  # seconds keep their decimals
    assert "| failed requests | 3 | 0 | - |" in text  # a count is no ratio


def test_throughput_counts_every_workers_requests() -> None:
    # 8 workers each completing requests concurrently: none of their counts may be lost.
    calls = 0

    async def op(_: int) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.001)

    async def run() -> float:
        return await throughput(op, 8, 0.2, Errors())

    rate = asyncio.run(run())
    assert abs(rate * 0.2 - calls) <= calls * 0.2  # rate x seconds ~ the calls made (timing slack)


def test_throughput_counts_failures_apart() -> None:
    async def op(i: int) -> None:
        await asyncio.sleep(0)
        if i % 2:
            raise RuntimeError("refused")

    errors = Errors()
    asyncio.run(throughput(op, 2, 0.05, errors))
    assert errors.count > 0 and errors.first == "RuntimeError: refused"


def test_parse_status_kib() -> None:
    status = "Name:\tpython\nVmHWM:\t  123456 kB\nVmRSS:\t   98765 kB\n"
    assert parse_status_kib(status, "VmRSS") == 98765
    assert parse_status_kib(status, "VmHWM") == 123456
    assert parse_status_kib(status, "VmSwap") is None


def test_automerge_table_says_met_only_within_the_target() -> None:
    from benchmarks.automerge_bench import Case
    from benchmarks.automerge_bench import table as automerge_table

    text = automerge_table(
        {"push": Case(1.0, [0.5, 0.9, 2.0], [10, 20, 30]), "pull": Case(0.5, [0.6, 0.7, 0.4], [5])}
    )
    rows_ = [line.split(" | ") for line in text.splitlines()[2:]]
    assert [r[4] for r in rows_] == ["yes", "no"]  # medians 0.9 <= 1 and 0.6 > 0.5
    assert rows_[0][5] == "20 |"
