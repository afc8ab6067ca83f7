"""Any bytes replicate: random, all-0xff and all-zero values, alone and many at once, at the
value limit, through the leader and through a follower, in WriteKey, BatchWrite and CAS.

On pysyncobj's own transport these stalled the log: its leader labelled the chunks of a large
entry by the entry's length, but the pickle it sent of high-bit bytes was ~2.5x longer, so a
follower tried to unpickle a half entry, failed, and elections followed. Each test checks the
term did not move: load must never cause an election.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from aspen.client import AsyncClient
from deploy.launcher import LocalCluster
from storage.limits import VALUE_MAX_BYTES


async def write_concurrently(cluster: LocalCluster, node_id: int, values: dict[str, bytes]) -> None:
    client = AsyncClient([cluster.nodes[node_id].client_addr], cluster.cookie, 30.0, discover_leader=False)
    try:
        results = await asyncio.gather(*(client.put(k, v) for k, v in values.items()), return_exceptions=True)
    finally:
        await client.close()
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} of {len(values)} writes failed, first: {failures[0]!r}"


def read_back(cluster: LocalCluster, values: dict[str, bytes]) -> None:
    for node_id in cluster.nodes:
        with cluster.client([node_id], discover_leader=False) as c:
            for key, value in values.items():
                got = c.get(key)
                assert got["was_found"] and got["value"] == value, f"node {node_id} key {key}"


@pytest.mark.parametrize("via", ["leader", "follower"])
def test_64_concurrent_random_32k_values(shared_cluster: LocalCluster, via: str) -> None:
    term = shared_cluster.leader_term()
    leader = shared_cluster.wait_leader()
    node_id = leader if via == "leader" else next(n for n in shared_cluster.nodes if n != leader)
    values = {f"rnd32k/{via}/{i}": os.urandom(32 * 1024) for i in range(64)}
    asyncio.run(write_concurrently(shared_cluster, node_id, values))
    read_back(shared_cluster, values)
    assert shared_cluster.leader_term() == term, "binary load caused an election"


@pytest.mark.parametrize("fill", [b"\xff", b"\x00", None])
def test_one_value_at_the_limit(shared_cluster: LocalCluster, fill: bytes | None) -> None:
    term = shared_cluster.leader_term()
    value = os.urandom(VALUE_MAX_BYTES) if fill is None else fill * VALUE_MAX_BYTES
    key = f"limit/{fill.hex() if fill else 'random'}"
    with shared_cluster.client() as c:
        c.put(key, value)
    read_back(shared_cluster, {key: value})
    assert shared_cluster.leader_term() == term


def test_batch_and_cas_of_binary_values(shared_cluster: LocalCluster) -> None:
    term = shared_cluster.leader_term()
    leader = shared_cluster.wait_leader()
    follower = next(n for n in shared_cluster.nodes if n != leader)
    values = {f"bbatch/{i}": os.urandom(200 * 1024) for i in range(24)}  # ~4.8 MiB in one entry
    with shared_cluster.client([follower], discover_leader=False) as c:
        c.batch([{"op": "Set", "key": k, "value": v} for k, v in values.items()])
        new = os.urandom(VALUE_MAX_BYTES)
        c.cas("bbatch/0", values["bbatch/0"], new)
        values["bbatch/0"] = new
    read_back(shared_cluster, values)
    assert shared_cluster.leader_term() == term


def test_many_rounds_of_mixed_binary_writes_keep_one_term(
    shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    term = shared_cluster.leader_term()
    for rnd in range(4):
        sizes = [1, 100, 4096, 65_535, 65_536, 65_537, 300_000, VALUE_MAX_BYTES]
        values = {f"mixed/{rnd}/{i}": os.urandom(sizes[i % len(sizes)]) for i in range(32)}
        asyncio.run(write_concurrently(shared_cluster, 1 + rnd % 3, values))
        read_back(shared_cluster, dict(list(values.items())[:4]))
    assert shared_cluster.leader_term() == term
