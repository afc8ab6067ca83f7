"""AddNode / RemoveNode: scaling the cluster in and out, one change at a time, on the leader.

Adding: record the node's addresses in the replicated registry (so every node can reach its
client port for blob fetches and plugin status), then add its Raft address as a member; the
new node, started with the current members as its peers, catches up from the log or a
snapshot, fetches the blobs and plugin binaries it lacks and loads the plugins by itself.
Removing the leader first hands leadership to the most caught-up follower (pysyncobj's
TimeoutNow), then answers NOT_LEADER with the new leader as the hint: the client retries there,
and the removal runs. The handover is best effort (under heavy write load a follower is rarely
exactly caught up); when it does not happen within 3 s the request fails with UNAVAILABLE and
the operator stops the old leader, lets the others elect, and removes it from the new leader
(`aspen-cluster remove` does exactly that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aspen import fields as p
from aspen.server import RequestHandler
from aspen.services import NodeServices
from cluster import node_registry
from cluster.node_registry import NodeRecord
from wire.address import split_host_port
from wire.errors import AspenError, ErrorCode

MEMBERSHIP_TIMEOUT_S = 20.0
TRANSFER_TIMEOUT_S = 3.0


def _addr(req: dict[str, Any], name: str) -> str:
    value = p.optional_str(req, name, 255)
    try:
        split_host_port(value or "")
    except ValueError:
        raise AspenError(ErrorCode.INVALID_REQUEST, f"{name}: a host:port address") from None
    return value or ""


class MembershipHandlers:
    def __init__(self, services: NodeServices, client_addr_of: Callable[[int], str | None]) -> None:
        self.services = services
        self.replicated = services.replicated
        self._client_addr_of = client_addr_of
        self.table: dict[str, RequestHandler] = {"AddNode": self.add_node, "RemoveNode": self.remove_node}

    def _require_leader(self) -> None:
        if not self.replicated.is_leader():
            leader = self.replicated.leader_id()
            hint = {"leader_id": leader, "leader_addr": self._client_addr_of(leader)} if leader else {}
            raise AspenError(ErrorCode.NOT_LEADER, "membership changes are made on the leader", **hint)

    def _registry(self) -> dict[int, NodeRecord]:
        return self.replicated.read(node_registry.records)

    async def add_node(self, req: dict[str, Any]) -> dict[str, Any]:
        node_id = p.optional_int(req, "node_id", 0, 1, 2**31)
        if node_id == 0:
            raise AspenError(ErrorCode.INVALID_REQUEST, "node_id: required, a positive integer")
        raft_addr, client_addr = _addr(req, "raft_addr"), _addr(req, "client_addr")
        self._require_leader()
        members = {m["raft_addr"] for m in self.replicated.status()["members"]}
        registry = self._registry()
        if node_id in registry and registry[node_id].raft_addr in members:
            raise AspenError(ErrorCode.INVALID_REQUEST, f"node {node_id} is already a member")
        if raft_addr in members:
            raise AspenError(ErrorCode.INVALID_REQUEST, f"{raft_addr} is already a member")
        await self.services.commit(node_registry.put_op(node_id, NodeRecord(raft_addr, client_addr)))
        await self.replicated.change_membership("add", raft_addr, MEMBERSHIP_TIMEOUT_S)
        return {"type": "MembershipChanged", "added": node_id, "raft_addr": raft_addr}

    async def remove_node(self, req: dict[str, Any]) -> dict[str, Any]:
        node_id = p.optional_int(req, "node_id", 0, 1, 2**31)
        rec = self._registry().get(node_id)
        if rec is None:
            raise AspenError(ErrorCode.NOT_FOUND, f"no node {node_id} in the cluster registry")
        self._require_leader()
        if node_id == self.replicated.node_id:
            new_leader = await self.replicated.transfer_leadership(TRANSFER_TIMEOUT_S)
            raise AspenError(ErrorCode.NOT_LEADER, f"leadership handed to node {new_leader}; retry there",
                             leader_id=new_leader, leader_addr=self._client_addr_of(new_leader))
        await self.replicated.change_membership("remove", rec.raft_addr, MEMBERSHIP_TIMEOUT_S)
        await self.services.commit(node_registry.delete_op(node_id))
        return {"type": "MembershipChanged", "removed": node_id}
