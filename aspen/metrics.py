"""Prometheus metrics for one node, on its own registry (no process-global state).

Counters and histograms are updated on the request path; the Raft, plugin and blob figures
are read at scrape time by a collector, so nothing is sampled on a timer. Served as text by a
tiny asyncio HTTP endpoint (`GET /metrics`) on the node's loop: no extra thread. Beside it,
`GET /health` (200 while the node serves: liveness) and `GET /ready` (200 when it knows a
leader and has a quorum, else 503: readiness), for load balancers and orchestrators.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from aspen.codes import OUTCOMES
from aspen.credentials import Token
from cluster.journal import FDATASYNC_BUCKETS_S

if TYPE_CHECKING:
    from aspen.plugins.manager import PluginManager
    from aspen.server import Server
    from cluster import ReplicatedNode


class MetricsSource(Protocol):
    """What the metrics read of the node (AspenNode is one): passed in, so metrics and the node
    do not import each other."""

    cfg: Any  # its node_id
    replicated: ReplicatedNode
    plugins: PluginManager
    server: Server | None
    table: dict[str, Any]  # the native request types

REQUEST_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
HTTP_REQUEST_MAX_BYTES = 8192
CHILDREN_CACHE_MAX = 4096
_OUTCOMES = OUTCOMES
_ROLES = ("follower", "candidate", "leader")
_STATES = ("Loading", "Initializing", "Ready", "Degraded", "Stopping", "Stopped", "Failed")


class NodeCollector:
    def __init__(self, source: MetricsSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        st = self.source.replicated.status()
        yield GaugeMetricFamily("aspen_raft_term", "Current Raft term", value=st["term"])
        yield GaugeMetricFamily("aspen_raft_commit_index", "Raft commit index", value=st["commit_index"])
        yield GaugeMetricFamily(
            "aspen_raft_applied_index", "Last log index applied here", value=st["applied_index"]
        )
        yield GaugeMetricFamily(
            "aspen_raft_has_quorum", "1 when a majority is reachable", value=int(st["has_quorum"])
        )
        times = self.source.replicated.journal_sync_times()
        cumulative = list(itertools.accumulate(times.counts))
        yield HistogramMetricFamily(
            "aspen_disk_journal_fsync_duration_seconds",
            "Raft journal fdatasync durations (etcd_disk_wal_fsync_duration_seconds' buckets)",
            buckets=[*((repr(le), n) for le, n in zip(FDATASYNC_BUCKETS_S, cumulative, strict=False)),
                     ("+Inf", cumulative[-1])],
            sum_value=times.sum_s,
        )
        role = GaugeMetricFamily("aspen_raft_role", "1 for this node's current role", labels=["role"])
        for r in _ROLES:
            role.add_metric([r], int(st["role"] == r))
        yield role
        blobs = self.source.replicated.read(lambda s: list(s.blob_records()))
        mine = [rec for _, rec in blobs if self.source.cfg.node_id in rec.holders]
        yield GaugeMetricFamily(
            "aspen_blob_bytes", "Bytes of blobs held by this node", value=sum(r.size for r in mine)
        )
        yield GaugeMetricFamily("aspen_blobs", "Blobs held by this node", value=len(mine))
        calls = GaugeMetricFamily(
            "aspen_plugin_calls", "Calls into the plugin's current instance", labels=["plugin"]
        )
        errors = GaugeMetricFamily(
            "aspen_plugin_errors", "Failed calls (traps, timeouts, fuel)", labels=["plugin"]
        )
        fuel = GaugeMetricFamily("aspen_plugin_fuel_used", "Fuel consumed", labels=["plugin"])
        p50 = GaugeMetricFamily("aspen_plugin_latency_p50_seconds", "Median call latency", labels=["plugin"])
        p99 = GaugeMetricFamily(
            "aspen_plugin_latency_p99_seconds", "99th percentile call latency", labels=["plugin"]
        )
        dropped = GaugeMetricFamily("aspen_plugin_hook_events_dropped", "Hook events lost to a full queue",
                                    labels=["plugin"])
        state = GaugeMetricFamily(
            "aspen_plugin_state", "1 for the plugin's lifecycle state", labels=["plugin", "state"]
        )
        for name, s in self.source.plugins.local_status().items():
            if "calls" not in s:
                continue
            calls.add_metric([name], s["calls"])
            errors.add_metric([name], s["errors"])
            fuel.add_metric([name], s["fuel_used"])
            p50.add_metric([name], s["p50_ms"] / 1000)
            p99.add_metric([name], s["p99_ms"] / 1000)
            dropped.add_metric([name], s["events_dropped"])
            for candidate in _STATES:
                state.add_metric([name, candidate], int(s["state"] == candidate))
        yield from (calls, errors, fuel, p50, p99, dropped, state)
        server = self.source.server
        if server is not None:
            conns = GaugeMetricFamily("aspen_client_connections", "Client connections by handshake state",
                                      labels=["state"])
            conns.add_metric(["handshake"], len(server.preauth))
            conns.add_metric(["authenticated"], len(server.connections))
            refused = CounterMetricFamily(
                "aspen_client_refusals",
                "Connections refused or closed: a wrong cookie, "
                "a frame failing its session tag, no free slot",
                labels=["reason"],
            )
            for reason in ("cookie", "tag", "overloaded"):
                refused.add_metric([reason], server.refusals.counts.get(reason, 0))
            yield from (conns, refused)


class Metrics:
    def __init__(self, node: MetricsSource) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("aspen_requests", "Requests by type and outcome", ["type", "outcome"],
                                registry=self.registry)
        self.latency = Histogram("aspen_request_duration_seconds", "Request latency by type", ["type"],
                                 buckets=REQUEST_BUCKETS_S, registry=self.registry)
        self.registry.register(NodeCollector(node))
        self._known_types = node.table.keys()
        self._plugin_types: Callable[[], Any] = lambda: node.plugins.table.by_type
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._server: asyncio.AbstractServer | None = None
        # Set by the node with --metrics-auth: (name, secret) -> whether it is a live credential.
        self.check_credential: Callable[[str, bytes], bool] | None = None
        self._raft_status: Callable[[], dict[str, Any]] = node.replicated.status

    def _label(self, rtype: str) -> str:
        # Bounded label cardinality: a client can send any type name; only known ones get a label.
        return rtype if rtype in self._known_types or rtype in self._plugin_types() else "other"

    def observe(self, rtype: str, outcome: str, seconds: float) -> None:
        """One answered request (the server calls this for every request it answers)."""
        if outcome not in _OUTCOMES:  # a plugin's Error response may carry any string
            outcome = "other_error"
        children = self._children.get((rtype, outcome))
        if children is None:
            children = self._children_for(rtype, outcome)
        requests, latency = children
        requests.inc()
        latency.observe(seconds)

    def _children_for(self, rtype: str, outcome: str) -> tuple[Any, Any]:
        # prometheus_client's labels() costs about 1 us a call: the labelled children are kept
        # per (type, outcome). Only types with a label of their own are kept (a type keeps its
        # label once it had one, even after its plugin is removed), so the cache is bounded.
        label = self._label(rtype)
        children = (self.requests.labels(label, outcome), self.latency.labels(label))
        if len(self._children) < CHILDREN_CACHE_MAX and label != "other":
            self._children[(rtype, outcome)] = children
        return children

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._http, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def health(self) -> tuple[bytes, bytes]:
        """Liveness: this answer is the node's event loop running."""
        return b"200 OK", b"ok\n"

    def ready(self) -> tuple[bytes, bytes]:
        """Readiness: a leader is known and a quorum is reachable, so requests can be served."""
        try:
            st = self._raft_status()
        except Exception:  # not started yet, or stopping
            return b"503 Service Unavailable", b"not ready: raft is not running\n"
        if st.get("leader_id") is not None and st.get("has_quorum"):
            return b"200 OK", b"ready: leader %d\n" % st["leader_id"]
        return b"503 Service Unavailable", (b"not ready: no leader\n" if st.get("leader_id") is None
                                            else b"not ready: no quorum\n")

    def _bearer_ok(self, head: bytes) -> bool:
        """With aspen-node --metrics-auth, /metrics wants `Authorization: Bearer <credential>`
        (any role: aspen-cli auth create prometheus --role reader --prefix metrics/)."""
        check = self.check_credential
        if check is None:
            return True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                try:
                    parsed = Token.parse(token.decode("ascii"))
                except (UnicodeDecodeError, ValueError):
                    return False
                return check(parsed.name, parsed.secret)
        return False

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = head.split(b" ", 2)[1] if head.startswith(b"GET ") and head.count(b" ") >= 2 else b""
            if len(head) > HTTP_REQUEST_MAX_BYTES or path not in (b"/metrics", b"/health", b"/ready"):
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            elif path == b"/metrics" and not self._bearer_ok(head):
                writer.write(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
            elif path == b"/metrics":
                body = self.render()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            else:
                status, body = self.health() if path == b"/health" else self.ready()
                writer.write(b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (status, len(body)) + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
