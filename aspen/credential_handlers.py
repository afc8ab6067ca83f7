"""AuthCreate, AuthList, AuthRevoke, and the node's per-request permission check.

Credentials live in the replicated `auth` meta table (aspen/credentials.py), so every node checks
them against its own state. A revocation is a log entry; AuthRevoke answers once every node it
can reach has applied it, so the next request with that credential fails on any node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aspen import credentials
from aspen import fields as p
from aspen.plugins.manager import FORWARDED_BY
from aspen.server import Identity, RequestHandler
from aspen.services import NodeServices
from wire.errors import AspenError, ErrorCode

REVOKE_CONFIRM_S = 5.0
REVOKE_POLL_S = 0.02

PeerIds = Callable[[], list[int]]
PeerRequest = Callable[..., Awaitable[dict[str, Any]]]


class CredentialHandlers:
    def __init__(self, services: NodeServices, peer_ids: PeerIds, peer_request: PeerRequest) -> None:
        self.services = services
        self.replicated = services.replicated
        self._peer_ids = peer_ids
        self._peer_request = peer_request
        self.table: dict[str, RequestHandler] = {"AuthCreate": self.create, "AuthList": self.list,
                                          "AuthRevoke": self.revoke}

    # -- the checks the server calls -------------------------------------------------------

    def _record(self, name: str) -> credentials.Record | None:
        raw = self.replicated.read(lambda s: s.meta_get(credentials.TABLE, name))
        return None if raw is None else credentials.Record.decode(raw)

    def check_credential(self, name: str, secret: bytes) -> bool:
        record = self._record(name)
        return record is not None and record.matches(secret) and not record.expired(_now_ms())

    def authorize(self, identity: Identity, request: dict[str, Any]) -> None:
        """Refuse what the connection's credential may not do; tell handlers and plugins who asks
        (`caller`, overwritten whatever the client sent)."""
        name = identity.credential
        if name is None:  # the cookie (or a no-auth loopback node): the cluster's root
            # A plugin request another node forwards (its plugin is not Ready there) comes over
            # that node's root connection and names the caller it authorized: keep that name,
            # or a credential's request would run as root wherever it was forwarded to. Only
            # root connections may speak for another caller, and root may do anything anyway.
            forwarded_for = request.get("caller") if FORWARDED_BY in request else None
            request["caller"] = (forwarded_for if isinstance(forwarded_for, str)
                                 and credentials.NAME_RE.fullmatch(forwarded_for) else credentials.ROOT)
            return
        record = self._record(name)
        if record is None:
            raise AspenError(ErrorCode.AUTH_FAILED, f"credential {name!r} has been revoked")
        if record.expired(_now_ms()):
            raise AspenError(ErrorCode.AUTH_FAILED, f"credential {name!r} expired "
                             f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(record.expires_ms / 1000))}")
        missing = record.role.missing(request)
        if missing is not None:
            raise AspenError(ErrorCode.PERMISSION_DENIED,
                             f"credential {name!r} ({record.role.kind}) may not: {missing}")
        request["caller"] = name
        request.pop(FORWARDED_BY, None)  # only nodes (root) forward; a client's claim is dropped

    # -- admin requests --------------------------------------------------------------------

    async def create(self, req: dict[str, Any]) -> dict[str, Any]:
        name = credentials.check_name(req.get("name"))
        prefixes = _strings(req, "prefixes", credentials.PREFIXES_MAX)
        requests = _strings(req, "requests", credentials.REQUESTS_MAX)
        role = credentials.Role(p.require_str(req, "role"), prefixes, requests)
        if role.kind != "admin" and not prefixes and not requests:
            raise AspenError(ErrorCode.INVALID_REQUEST,
                             f"a {role.kind} credential needs --prefix or --request: it could do nothing")
        ttl_s = p.optional_int(req, "ttl_s", 0, 0, credentials.TTL_MAX_S)
        token, record = credentials.issue(name, role, _now_ms(), ttl_s)
        try:
            await self.services.commit(["meta_cas", credentials.TABLE, name, None, record.encode()])
        except AspenError as exc:
            if exc.error.code == ErrorCode.CAS_FAILED:
                raise AspenError(
                    ErrorCode.INVALID_REQUEST, f"credential {name!r} exists; revoke it first"
                ) from None
            raise
        return {"type": "AuthCreated", **record.describe(name), "token": str(token)}

    async def list(self, req: dict[str, Any]) -> dict[str, Any]:
        await self.services.barrier(p.optional_bool(req, "stale", False))
        rows = self.replicated.read(lambda s: s.meta_items(credentials.TABLE))
        return {"type": "AuthListResult",
                "credentials": [credentials.Record.decode(raw).describe(name) for name, raw in rows]}

    async def revoke(self, req: dict[str, Any]) -> dict[str, Any]:
        name = credentials.check_name(req.get("name"))
        body, index = await self.services.commit_at(["meta_del", credentials.TABLE, name])
        confirmed, unconfirmed = await self._wait_applied_everywhere(index)
        return {"type": "AuthRevoked", "name": name, "existed": bool(body.get("existed")),
                "confirmed_nodes": confirmed, "unconfirmed_nodes": unconfirmed}

    async def _wait_applied_everywhere(self, index: int) -> tuple[list[int], list[int]]:
        """Until every peer reports applied >= index (bounded): the revocation holds on every
        node that answers before this returns; the others are named."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REVOKE_CONFIRM_S
        pending = set(self._peer_ids())
        confirmed = [self.replicated.node_id] if self.replicated.applied_index >= index else []
        while pending and loop.time() < deadline:
            for peer in sorted(pending):
                try:
                    status = await asyncio.wait_for(self._peer_request(peer, "ClusterStatus"),
                                                    max(0.05, deadline - loop.time()))
                except (AspenError, OSError, TimeoutError):
                    continue
                if int(status.get("applied_index", 0)) >= index:
                    pending.discard(peer)
                    confirmed.append(peer)
            if pending:
                await asyncio.sleep(REVOKE_POLL_S)
        if self.replicated.node_id not in confirmed:
            await self.replicated.wait_applied(index, REVOKE_CONFIRM_S)
            confirmed.append(self.replicated.node_id)
        return sorted(confirmed), sorted(pending)


def _strings(req: dict[str, Any], name: str, max_items: int) -> tuple[str, ...]:
    if req.get(name) is None:
        return ()
    items = p.require_list(req, name, max_items)
    if not all(isinstance(x, str) for x in items):
        raise AspenError(ErrorCode.INVALID_REQUEST, f"{name}: must be a list of strings")
    return tuple(items)


def _now_ms() -> int:
    return int(time.time() * 1000)
