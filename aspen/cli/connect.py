"""How aspen-cli reaches the cluster: the connection options every command shares, and
aiming a request at one node (--endpoint ADDR, or --node N found through the cluster)."""

from __future__ import annotations

from dataclasses import dataclass

from aspen.auth import Cookie
from aspen.client import Client
from aspen.tls import TLSFiles
from wire.errors import AspenError, ErrorCode


@dataclass(frozen=True)
class Connection:
    cluster: str  # host:port,... to find the cluster through
    cookie: Cookie | None
    timeout_s: float
    tls: TLSFiles
    credential: str | None = None  # a named credential, used instead of the cookie (TLS only)

    def client(
        self, endpoints: str | list[str] | None = None, *, pin: bool = False, timeout_s: float | None = None
    ) -> Client:
        """A client of the cluster, or pinned to one endpoint: served there and nowhere else."""
        return Client(
            endpoints if endpoints is not None else self.cluster,
            self.cookie,
            timeout_s if timeout_s is not None else self.timeout_s,
            pin=pin,
            cacert=self.tls.cacert,
            cert=self.tls.cert,
            key=self.tls.key,
            credential=self.credential,
        )

    def aimed(self, endpoint: str | None, node_id: int | None) -> Client:
        """The client a command uses: the whole cluster, or exactly one node."""
        if endpoint is not None:
            return self.client(endpoint, pin=True)
        if node_id is not None:
            return self.client(client_addr_of(self, node_id), pin=True)
        return self.client()


def client_addr_of(conn: Connection, node_id: int) -> str:
    """Node node_id's client address, from the membership any node reports."""
    with conn.client() as c:
        status = c.cluster_status()
    for n in status.get("nodes") or []:
        if n.get("node_id") == node_id:
            addr = n.get("client_addr")
            if not isinstance(addr, str) or not addr:
                raise AspenError(ErrorCode.UNAVAILABLE, f"node {node_id}'s client address is not known yet")
            return addr
    members = ", ".join(str(n.get("node_id")) for n in status.get("nodes") or [])
    raise AspenError(ErrorCode.NOT_FOUND, f"no node {node_id} in the cluster (members: {members or 'none'})")
