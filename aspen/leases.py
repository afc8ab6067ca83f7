"""Leases (etcd's): LeaseGrant, LeaseRevoke, LeaseKeepAlive, LeaseTimeToLive, LeaseList, and
the leader's expiry loop.

A lease and the keys attached to it are replicated state (storage/state.py: grant, `lput`,
revoke). When a lease expires is not: the leader keeps a deadline per lease in memory, moves it
on each keep-alive, and when one passes it proposes the revoke, which deletes the attached
keys on every node as one write. A new leader knows no deadlines, so every lease's TTL
restarts in full when leadership changes, as in etcd: a lease never expires early because of
an election, only later. Keep-alive and time-to-live are answered by the leader (NOT_LEADER
elsewhere, which the client follows). Lease ids travel as `lease_id` (a frame's `id` is the
request's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from aspen import fields as p
from aspen.server import RequestHandler
from aspen.services import NodeServices
from storage.state import LEASES
from wire.errors import AspenError, ErrorCode
from wire.limits import LEASE_ID_MAX, LEASE_TTL_MAX_S

log = logging.getLogger("aspen.leases")

LEASE_TICK_S = 0.25  # how often the leader looks for expired leases: expiry is this late at most
REVOKES_PER_TICK_MAX = 64  # proposed at once; the rest next tick


class LeaseManager:
    def __init__(self, services: NodeServices, client_addr_of: Callable[[int], str | None]) -> None:
        self.services = services
        self.replicated = services.replicated  # leadership and term: the lease deadlines live on the leader
        self._client_addr_of = client_addr_of
        self._deadlines: dict[int, float] = {}  # lease id -> loop time; on the leader only
        self._term: int | None = None  # the term these deadlines belong to
        self._task: asyncio.Task[None] | None = None
        self.expired = 0  # leases this node revoked as leader (metrics, tests)
        self.table: dict[str, RequestHandler] = {
            "LeaseGrant": self.grant,
            "LeaseRevoke": self.revoke,
            "LeaseKeepAlive": self.keep_alive,
            "LeaseTimeToLive": self.time_to_live,
            "LeaseList": self.list_leases,
        }

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the leader's expiry loop ----------------------------------------------------------

    def _granted(self) -> dict[int, int]:
        rows = self.services.read(lambda s: [(k, s.lease(int(k))) for k, _ in s.meta_items(LEASES)])
        return {int(k): lease["ttl_s"] for k, lease in rows if lease is not None}

    async def _run(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: keep the loop (and the node) alive, say so
                log.exception("lease expiry tick failed")
            await asyncio.sleep(LEASE_TICK_S)

    async def _tick(self) -> None:
        if not self.replicated.is_leader():
            self._deadlines.clear()
            self._term = None
            return
        now = asyncio.get_running_loop().time()
        term = self.replicated.raft_core().term()
        granted = self._granted()
        if term != self._term:  # leadership is new: every TTL starts again
            self._term = term
            self._deadlines = {lease_id: now + ttl_s for lease_id, ttl_s in granted.items()}
        else:
            for lease_id in list(self._deadlines):
                if lease_id not in granted:
                    del self._deadlines[lease_id]
            for lease_id, ttl_s in granted.items():
                self._deadlines.setdefault(lease_id, now + ttl_s)
        expired = sorted(i for i, deadline in self._deadlines.items() if deadline <= now)[
            :REVOKES_PER_TICK_MAX
        ]
        if expired:
            await asyncio.gather(*(self._expire(i) for i in expired))

    async def _expire(self, lease_id: int) -> None:
        try:
            await self.services.commit(["lease_revoke", lease_id])
            self.expired += 1
            log.info("lease %d expired: revoked with its keys", lease_id)
        except AspenError as exc:
            if exc.code != ErrorCode.LEASE_NOT_FOUND:
                log.warning("revoking expired lease %d failed (next tick retries): %s", lease_id, exc.message)
                return
        self._deadlines.pop(lease_id, None)

    # -- requests --------------------------------------------------------------------------

    def _require_leader(self, what: str) -> None:
        if not self.replicated.is_leader():
            leader = self.replicated.leader_id()
            hint = {"leader_id": leader, "leader_addr": self._client_addr_of(leader)} if leader else {}
            raise AspenError(
                ErrorCode.NOT_LEADER, f"{what} is answered by the leader, which keeps the deadlines", **hint
            )

    async def _existing(self, lease_id: int) -> dict[str, Any]:
        await self.services.barrier()
        lease = self.services.read(lambda s: s.lease(lease_id))
        if lease is None:
            raise AspenError(
                ErrorCode.LEASE_NOT_FOUND, f"no lease {lease_id} (revoked, expired, or never granted)"
            )
        return lease

    async def grant(self, req: dict[str, Any]) -> dict[str, Any]:
        ttl_s = p.require_int(req, "ttl_s", 1, LEASE_TTL_MAX_S)
        lease_id = p.optional_int(req, "lease_id", 0, 0, LEASE_ID_MAX) or secrets.randbelow(LEASE_ID_MAX) + 1
        body = await self.services.commit(["lease_grant", lease_id, ttl_s])
        if self._term is not None and self.replicated.is_leader():
            self._deadlines[lease_id] = asyncio.get_running_loop().time() + ttl_s
        return {"type": "LeaseGrantResult", **body}

    async def revoke(self, req: dict[str, Any]) -> dict[str, Any]:
        lease_id = p.require_int(req, "lease_id", 1, LEASE_ID_MAX)
        body = await self.services.commit(["lease_revoke", lease_id])
        return {"type": "LeaseRevokeResult", **body}

    async def keep_alive(self, req: dict[str, Any]) -> dict[str, Any]:
        lease_id = p.require_int(req, "lease_id", 1, LEASE_ID_MAX)
        self._require_leader("LeaseKeepAlive")
        lease = await self._existing(lease_id)
        self._require_leader("LeaseKeepAlive")  # still, after the barrier
        self._deadlines[lease_id] = asyncio.get_running_loop().time() + lease["ttl_s"]
        return {"type": "LeaseKeepAliveResult", "lease_id": lease_id, "ttl_s": lease["ttl_s"]}

    async def time_to_live(self, req: dict[str, Any]) -> dict[str, Any]:
        lease_id = p.require_int(req, "lease_id", 1, LEASE_ID_MAX)
        self._require_leader("LeaseTimeToLive")
        lease = await self._existing(lease_id)
        now = asyncio.get_running_loop().time()
        deadline = self._deadlines.get(lease_id, now + lease["ttl_s"])
        out = {
            "type": "LeaseTimeToLiveResult",
            "lease_id": lease_id,
            "granted_ttl_s": lease["ttl_s"],
            "ttl_s": max(0, round(deadline - now)),
            "key_count": len(lease["keys"]),
        }
        if p.optional_bool(req, "keys", False):
            out["keys"] = lease["keys"]
        return out

    async def list_leases(self, req: dict[str, Any]) -> dict[str, Any]:
        if not p.optional_bool(req, "stale", False):
            await self.services.barrier()
        rows = self.services.read(lambda s: [(int(k), s.lease(int(k))) for k, _ in s.meta_items(LEASES)])
        leases = sorted(
            (
                {"lease_id": i, "ttl_s": lease["ttl_s"], "key_count": len(lease["keys"])}
                for i, lease in rows
                if lease is not None
            ),
            key=lambda row: row["lease_id"],
        )
        return {"type": "LeaseListResult", "leases": leases}
