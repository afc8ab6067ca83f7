"""Log compaction and snapshot install through our transport and journal, on real pysyncobj
members in one process.

The leader compacts its log into a snapshot; the state is dumped in a forked child (the node's
threads go on serving: a dump of a large state on the Raft thread stopped heartbeats and cost
elections), the journal drops the compacted entries only once the snapshot is durable, and a
follower that was away longer than the log reaches back catches up from the snapshot (sent in
chunks over the sealed transport) and ends with the same state.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from cluster import ReplicatedNode
from storage.blobs import BlobStore
from tests.cluster.test_raft_inprocess import _no_fetch, make_cluster, stop_all, wait_leader

COMPACT_AFTER_ENTRIES = 300


class RecordingNode(ReplicatedNode):
    """Writes the pid that dumped the state into `dump_pids` (a file: the child cannot tell us)."""

    dump_pids: Path

    def _dump_state(self) -> bytes:
        with open(self.dump_pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return super()._dump_state()


def test_compaction_in_a_child_and_snapshot_install_on_a_lagging_follower(tmp_path: Path) -> None:
    pids_file = tmp_path / "dump-pids"
    RecordingNode.dump_pids = pids_file

    async def run() -> None:
        nodes = await make_cluster(
            tmp_path, node_class=RecordingNode, compaction_min_entries=COMPACT_AFTER_ENTRIES
        )
        again: list[ReplicatedNode] = []
        try:
            leader = await wait_leader(nodes)
            lagging = next(n for n in nodes if n is not leader)
            cfg = lagging.cfg
            await lagging.stop()
            live = [n for n in nodes if n is not lagging]
            values = {f"snap/{i}": os.urandom(200 + i % 3000) for i in range(3 * COMPACT_AFTER_ENTRIES)}
            for key, value in values.items():  # one entry each: awaited one at a time
                result, _ = await leader.propose(["put", key, value])
                assert result[0] == "ok"
            deadline = time.monotonic() + 30
            while not (pids_file.exists() and Path(leader.cfg.snapshot_path).exists()):
                assert time.monotonic() < deadline, "the leader never compacted its log"
                await leader.propose(["put", "snap/tick", b"x"])
                await asyncio.sleep(0.05)
            pids = {int(p) for p in pids_file.read_text().split()}
            assert os.getpid() not in pids, "the state was dumped on the node's own threads"
            assert leader.status()["log_len"] < 3 * COMPACT_AFTER_ENTRIES

            restarted = ReplicatedNode(cfg, BlobStore(cfg.data_dir / "blobs"), _no_fetch)
            await restarted.start()
            again.append(restarted)
            await leader.barrier(10)
            target = leader.applied_index
            deadline = time.monotonic() + 30
            while restarted.applied_index < target:
                assert time.monotonic() < deadline, (
                    f"lagging follower stuck at {restarted.applied_index} < {target}"
                )
                await asyncio.sleep(0.05)
            await restarted.barrier(10)
            for key in list(values)[:: max(1, len(values) // 50)]:
                assert restarted.read(lambda s, k=key: s.get(k)).value == values[key]
            hashes = {n.read(lambda s: s.state_hash()) for n in [*live, restarted]}
            assert len(hashes) == 1, "the follower's state differs after the snapshot"
        finally:
            await stop_all([n for n in nodes if n._raft is not None] + again)

    asyncio.run(run())
