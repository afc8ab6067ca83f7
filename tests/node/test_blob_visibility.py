"""A blob put through one node is known at every other at once, though followers hear of a
commit only with the next append (cluster/raft.py, COMMIT_NOTICE_DELAY_S): HasBlob and GetBlob
answer "no" only after a read barrier. Three in-process members on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aspen.services import NodeServices
from tests.cluster.test_raft_inprocess import make_cluster, stop_all, wait_leader


def test_a_blob_put_through_the_leader_is_known_at_a_follower_at_once(tmp_path: Path) -> None:
    async def run() -> None:
        nodes = await make_cluster(tmp_path)
        try:
            leader = await wait_leader(nodes)
            followers = [NodeServices(n, 10.0) for n in nodes if n is not leader]
            for _ in range(5):
                ref = await NodeServices(leader, 10.0).put_blob(os.urandom(4096))
                # Asked in the same loop turn the put returned in: the followers have the entry
                # (it committed with one of them) but have not applied it yet.
                assert [await f.has_blob(ref.hash) for f in followers] == [True, True]
                assert [await f.has_blob(ref.hash, local=True) for f in followers] == [False, False]
            assert not await followers[0].has_blob(os.urandom(32).hex())  # a miss is still a miss
        finally:
            await stop_all(nodes)

    asyncio.run(run())
