"""aspen-node: one cluster member: Raft replication, the client port, the handlers.

    aspen-node --node-id 1 --data-dir D --listen 127.0.0.1:7701 --raft 127.0.0.1:7801 \
        --peers 2=127.0.0.1:7802,3=127.0.0.1:7803 --cookie-file D/cookie \
        [--cert-file C --key-file K --trusted-ca-file CA [--client-cert-auth]]

The client port speaks TLS given a certificate; a node listening for clients beyond loopback
refuses to start in plaintext unless told --insecure-plaintext.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aspen import auth, keys, tls
from aspen.barrier import Barrier
from aspen.client import AsyncClient
from aspen.codes import wire_error
from aspen.credential_handlers import CredentialHandlers
from aspen.exits import EXIT_OK, EXIT_STORAGE_FAILED, guarded
from aspen.leases import LeaseManager
from aspen.maintenance import MaintenanceHandlers, restore_into
from aspen.membership import MembershipHandlers
from aspen.metrics import Metrics
from aspen.native_handlers import NativeHandlers
from aspen.plugins import namespaces, plugin_table
from aspen.plugins.manager import PluginManager
from aspen.plugins.plugin_table import PluginRecord
from aspen.plugins.registry_handlers import PluginHandlers
from aspen.server import Finish, RequestHandler, Server, Token
from aspen.services import NodeServices
from aspen.unseal_key import read_unseal_key_file
from aspen.version import aspen_version
from aspen.watch import WatchHub
from cluster import RaftConfig, ReplicatedNode, node_registry
from cluster.errors import ClusterCode, ClusterError
from cluster.node_registry import NodeRecord
from storage.blobs import BlobStore
from storage.durable import ensure_private_dir
from storage.errors import StorageCode, StorageError
from wire.address import split_host_port
from wire.errors import AspenError, ErrorCode

log = logging.getLogger("aspen.node")

DEFAULT_LISTEN = "127.0.0.1:7701"
DEFAULT_RAFT = "127.0.0.1:7801"
REQUEST_TIMEOUT_S = 10.0
REGISTER_RETRY_S = 0.5
PEER_FETCH_TIMEOUT_S = 60.0
SWITCH_INTERVAL_S = float(os.environ.get("ASPEN_SWITCH_INTERVAL_S", "0.0005"))


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: int
    data_dir: Path
    listen: str
    raft: str
    peers: dict[int, str] = field(default_factory=dict)
    peer_clients: dict[int, str] = field(default_factory=dict)
    cookie: str | None = None  # operator-supplied cluster secret
    metrics_listen: str | None = None  # host:port of the Prometheus endpoint, None: off
    metrics_auth: bool = False  # /metrics wants a credential as a bearer token
    advertise_client: str | None = None  # the client address peers should use (default: listen)
    request_timeout_s: float = REQUEST_TIMEOUT_S
    join_existing: bool = False  # --initial-cluster-state existing (RaftConfig.join_existing)
    fsync: bool = True  # --unsafe-no-fsync turns it off (RaftConfig.fsync)
    synced_shadow: bool = False  # tests only (RaftConfig.synced_shadow)
    cert_file: Path | None = None  # TLS on the client port (and this node's certificate to peers)
    key_file: Path | None = None
    trusted_ca_file: Path | None = None  # checks peers' certificates, and clients' with client_cert_auth
    client_cert_auth: bool = False
    insecure_plaintext: bool = False  # allow a non-loopback client port without TLS
    restore: Path | None = None  # an `aspen-cli snapshot save` file to start from (empty data dir only)
    seal_key_file: Path | None = None  # the barrier's unseal key (docs/SECRETS.md), read at start


def parse_id_map(text: str | None, what: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for item in filter(None, (text or "").split(",")):
        nid, sep, addr = item.partition("=")
        if not sep or not nid.strip().isdigit():
            raise ValueError(f"{what}: expected ID=HOST:PORT, got {item!r}")
        split_host_port(addr.strip())
        out[int(nid)] = addr.strip()
    return out


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AspenNode:
    """Composes storage, cluster and the client port. `handler` is what the server calls."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        ensure_private_dir(cfg.data_dir)
        self._check_identity()
        raft_cookie, self.client_auth = self._resolve_cookie()
        self.server_tls, self.peer_tls = self._resolve_tls()
        self.blobs = BlobStore(cfg.data_dir / "blobs")
        raft_cfg = RaftConfig(
            node_id=cfg.node_id,
            raft_addr=cfg.raft,
            peers=dict(cfg.peers),
            data_dir=cfg.data_dir,
            cookie=raft_cookie,
            join_existing=cfg.join_existing,
            fsync=cfg.fsync,
            synced_shadow=cfg.synced_shadow,
        )
        if cfg.restore is not None:
            restored = restore_into(raft_cfg, cfg.restore)
            log.info("restored %s: revision %d, %d keys, as the Raft snapshot at index %d", cfg.restore,
                     restored.revision, len(restored.kv), restored.applied_index)
        self.replicated = ReplicatedNode(raft_cfg, self.blobs, self._fetch_blob_from_peer)
        self.services = NodeServices(self.replicated, cfg.request_timeout_s)
        self.native = NativeHandlers(self.services, self.client_addr_of, metrics_addr=cfg.metrics_listen)
        self.plugins = PluginManager(
            self.services, keys.load_or_create(cfg.data_dir / "node.key"), cfg.data_dir / "wasm-cache",
            cfg.request_timeout_s,
        )
        self.plugin_admin = PluginHandlers(self.plugins, self.services, self.peer_ids, self.peer_request)
        self.membership = MembershipHandlers(self.services, self.client_addr_of)
        self.credentials = CredentialHandlers(self.services, self.peer_ids, self.peer_request)
        self.maintenance = MaintenanceHandlers(self.services, self.plugin_namespaces)
        self.watch_hub = WatchHub(self.replicated)
        self.leases = LeaseManager(self.services, self.client_addr_of)
        self.barrier = Barrier(self.services, self.peer_ids, self.peer_request)  # docs/SECRETS.md
        self.plugins.barrier = self.barrier
        self.table: dict[str, RequestHandler] = {**self.native.table, **self.plugin_admin.table,
                                                 **self.membership.table, **self.credentials.table,
                                                 **self.maintenance.table, **self.leases.table,
                                                 **self.barrier.table}
        self.metrics = Metrics(self)
        self.server: Server | None = None
        self._peer_clients: dict[int, AsyncClient] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def plugin_namespaces(self) -> dict[str, tuple[str, ...]]:
        """Every registered plugin's KV namespace (enabled or not), and the default ones."""
        owned: dict[str, tuple[str, ...]] = {
            "the plugins' default namespaces": (namespaces.PLUGIN_NAMESPACE,)
        }
        for name, raw in self.replicated.read(plugin_table.raw_records).items():
            try:
                owned[f"plugin {name!r}"] = namespaces.effective_prefixes(
                    name, PluginRecord.decode(raw).kv_prefixes
                )
            except Exception:  # an undecodable record claims nothing more than its default namespace
                continue
        return owned

    # -- start-up checks -------------------------------------------------------------------

    def _check_identity(self) -> None:
        """Refuse a data dir that belongs to another node: mixing them corrupts Raft state."""
        ident = self.cfg.data_dir / "node.json"
        mine = {"node_id": self.cfg.node_id, "raft": self.cfg.raft}
        if ident.exists():
            seen = json.loads(ident.read_text())
            if seen.get("node_id") != self.cfg.node_id:
                raise SystemExit(
                    f"aspen-node: {self.cfg.data_dir} belongs to node {seen.get('node_id')}, not "
                    f"{self.cfg.node_id}"
                )
        else:
            ident.write_text(json.dumps(mine))

    def _resolve_cookie(self) -> tuple[str, bool]:
        """The Raft secret, and whether clients must authenticate.

        pysyncobj unpickles what arrives on its port, so the port is never opened without a
        secret. A lone node started without one gets a random secret of its own (kept in the
        data dir) and, on loopback only, serves clients without authentication, like a fresh
        etcd; a multi-node cluster or a non-loopback listener requires an operator cookie.
        """
        if self.cfg.cookie:
            return self.cfg.cookie, True
        if self.cfg.peers:
            raise SystemExit(
                "aspen-node: a multi-node cluster needs a cluster secret: --cookie-file FILE or ASPEN_COOKIE"
            )
        host, _ = split_host_port(self.cfg.listen)
        raft_host, _ = split_host_port(self.cfg.raft)
        if not (_is_loopback(host) and _is_loopback(raft_host)):
            raise SystemExit("aspen-node: listening beyond loopback needs a cluster secret (--cookie-file)")
        own = self.cfg.data_dir / "raft-secret"
        if not own.exists():
            fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(auth.generate_cookie())
        return own.read_text().strip(), False

    def _resolve_tls(self) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
        """The client port's TLS context and the one this node dials peers with.

        Secure by default: clients beyond loopback get TLS, or the operator says in so many
        words that the network is trusted (--insecure-plaintext).
        """
        cfg = self.cfg
        if cfg.cert_file is None or cfg.key_file is None:
            host, _ = split_host_port(cfg.listen)
            if not _is_loopback(host) and not cfg.insecure_plaintext:
                raise SystemExit(
                    f"aspen-node: clients on {cfg.listen} would talk in plaintext: give --cert-file and "
                    "--key-file "
                    "(TLS), or --insecure-plaintext on a network you trust"
                )
            return None, None
        try:
            server = tls.server_context(
                cfg.cert_file, cfg.key_file, cfg.trusted_ca_file, cfg.client_cert_auth
            )
            peer = tls.client_context(tls.TLSFiles(cfg.trusted_ca_file, cfg.cert_file, cfg.key_file))
        except ValueError as exc:
            raise SystemExit(f"aspen-node: {exc}") from None
        return server, peer

    def reload_tls(self) -> None:
        """SIGHUP: read the certificate, key and CA files again, into the live contexts.

        New connections (clients', and this node's to peers) use them; open ones keep theirs.
        So a certificate is rotated without a restart. A CA file's new certificates are added
        to the trusted ones; dropping a CA takes a restart (docs/OPERATIONS.md).
        """
        cfg = self.cfg
        if self.server_tls is None or self.peer_tls is None or cfg.cert_file is None or cfg.key_file is None:
            log.warning("SIGHUP: no TLS files to reload")
            return
        try:
            self.server_tls.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
            self.peer_tls.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
            if cfg.trusted_ca_file is not None:
                self.server_tls.load_verify_locations(cafile=str(cfg.trusted_ca_file))
                self.peer_tls.load_verify_locations(cafile=str(cfg.trusted_ca_file))
        except (OSError, ssl.SSLError) as exc:
            log.error("SIGHUP: TLS files not reloaded, the previous ones stay in use: %s", exc)
            return
        log.info("SIGHUP: TLS certificate, key and CA reloaded from %s", cfg.cert_file)

    # -- serving ---------------------------------------------------------------------------

    def dispatch(
        self, request: dict[str, Any], finish: Finish, token: Token
    ) -> Awaitable[dict[str, Any]] | None:
        """Route a request: a plugin that owns the key's namespace, else the native handler,
        else the first plugin by priority that handles the type (aspen/plugins/manager.py).
        A plugin request is handed to the plugin's worker, which answers through `finish`."""
        rtype = request["type"]
        native = self.table.get(rtype)
        plugin = self.plugins.route(rtype, request, native is not None)
        if plugin is not None:
            self.plugins.handle(plugin, request, finish, token)
            return None
        if native is None:
            raise AspenError(ErrorCode.UNKNOWN_REQUEST, f"no native handler and no plugin handles {rtype!r}")
        return native(request)

    async def start(self) -> None:
        self.watch_hub.start(asyncio.get_running_loop())  # before the first apply: its history starts there
        await self.replicated.start()
        self.leases.start()
        await self.plugins.start()
        host, port = split_host_port(self.cfg.listen)
        cookie = auth.Cookie(self.cfg.cookie) if self.client_auth and self.cfg.cookie else None
        self.server = Server(
            self.dispatch,
            host,
            port,
            cookie=cookie,
            node_id=self.cfg.node_id,
            observe=self.metrics.observe,
            ssl_context=self.server_tls,
            authorize=self.credentials.authorize,
            check_credential=self.credentials.check_credential,
            streams={"Watch": self.watch_hub.watch},
        )
        await self.server.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._register_self()))
        if self.cfg.seal_key_file is not None:  # auto-unseal; the key stays in memory only
            unseal_key = read_unseal_key_file(self.cfg.seal_key_file)
            self._tasks.append(asyncio.get_running_loop().create_task(self.barrier.auto_unseal(unseal_key)))
        if self.cfg.metrics_listen:
            if self.cfg.metrics_auth:
                self.metrics.check_credential = self.credentials.check_credential
            mhost, mport = split_host_port(self.cfg.metrics_listen)
            await self.metrics.serve(mhost, mport)
        log.info("node %d ready: clients on %s, raft on %s", self.cfg.node_id, self.cfg.listen, self.cfg.raft)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.server is not None:
            await self.server.stop()
        await self.metrics.stop()
        await self.plugins.stop()
        await self.leases.stop()
        self.watch_hub.stop()
        for client in self._peer_clients.values():
            await client.close()
        await self.replicated.stop()

    async def _register_self(self) -> None:
        """Record this node's addresses in the replicated registry (until it sticks)."""
        mine = NodeRecord(raft_addr=self.cfg.raft, client_addr=self.cfg.advertise_client or self.cfg.listen)
        node_id = self.cfg.node_id
        while True:
            if self.replicated.read(lambda s: node_registry.raw_record(s, node_id)) == mine.encode():
                return
            try:
                await self.services.commit(node_registry.put_op(node_id, mine))
                return
            except AspenError as exc:
                log.debug("registering node %s: %s", node_id, exc)
                await asyncio.sleep(REGISTER_RETRY_S)

    # -- peers -----------------------------------------------------------------------------

    def client_addr_of(self, node_id: int) -> str | None:
        if node_id == self.cfg.node_id:
            return self.cfg.advertise_client or self.cfg.listen
        rec = self.replicated.read(lambda s: node_registry.record(s, node_id))
        if rec is not None and rec.client_addr is not None:
            return rec.client_addr
        return self.cfg.peer_clients.get(node_id)

    def peer_client(self, node_id: int) -> AsyncClient:
        client = self._peer_clients.get(node_id)
        if client is None:
            addr = self.client_addr_of(node_id)
            if addr is None:
                raise AspenError(ErrorCode.UNAVAILABLE, f"no client address known for node {node_id}")
            client = AsyncClient(
                [addr],
                cookie=self.cfg.cookie,
                timeout_s=PEER_FETCH_TIMEOUT_S,
                discover_leader=False,
                tls=self.peer_tls,
            )
            self._peer_clients[node_id] = client
        return client

    def peer_ids(self) -> list[int]:
        registered = self.replicated.read(node_registry.node_ids)
        return sorted((registered | set(self.cfg.peers)) - {self.cfg.node_id})

    async def peer_request(self, node_id: int, rtype: str, **fields: Any) -> dict[str, Any]:
        return await self.peer_client(node_id).request(rtype, **fields)

    async def _fetch_blob_from_peer(self, node_id: int, blob_hash: str) -> bytes:
        """Blob sync's fetch (cluster/blobsync.py), so its failures are in cluster's codes."""
        try:
            reply = await self.peer_client(node_id).request("GetBlob", hash=blob_hash, local=True)
        except AspenError as exc:
            raise ClusterError(ClusterCode.UNAVAILABLE, f"node {node_id}: {exc}") from exc
        if not reply.get("found"):
            raise ClusterError(ClusterCode.BLOB_NOT_FOUND, f"node {node_id} does not hold {blob_hash}")
        data = reply.get("data")
        if not isinstance(data, bytes):
            raise ClusterError(StorageCode.BLOB_CORRUPT, f"node {node_id} sent no bytes for {blob_hash}")
        return data


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="aspen-node", description="Run one Aspen cluster node.",
        epilog=f"exit status: 0 stopped by SIGTERM/SIGINT; 1 could not start; {EXIT_STORAGE_FAILED} its "
               "storage failed (a journal fdatasync) and it stopped rather than acknowledge what may not be "
               "on disk (docs/OPERATIONS.md, \"A failed disk\").",
    )
    ap.add_argument("--version", action="version", version=f"aspen-node {aspen_version()}")
    ap.add_argument("--node-id", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--listen", default=DEFAULT_LISTEN, help="client address host:port")
    ap.add_argument("--raft", default=DEFAULT_RAFT, help="Raft address host:port")
    ap.add_argument("--peers", default="", help="the other members: ID=HOST:RAFTPORT,...")
    ap.add_argument("--peer-clients", default="", help="their client addresses: ID=HOST:PORT,...")
    ap.add_argument("--cookie-file", type=Path, help="file holding the cluster secret (mode 0600)")
    ap.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT_S)
    ap.add_argument(
        "--metrics-listen",
        metavar="[HOST:]PORT",
        help="serve /metrics, /health and /ready on HOST:PORT (a bare PORT: 127.0.0.1)",
    )
    ap.add_argument(
        "--metrics-auth",
        action="store_true",
        help="/metrics answers only `Authorization: Bearer <credential>` (aspen-cli auth create)",
    )
    ap.add_argument("--advertise-client", help="client address other nodes use (default: --listen)")
    ap.add_argument("--log-level", default=os.environ.get("ASPEN_LOG", "INFO"))
    ap.add_argument(
        "--initial-cluster-state",
        choices=("new", "existing"),
        default="new",
        help="existing: this node joins a cluster that holds data; with an empty data dir it never "
        "campaigns, it waits to hear from a leader (a restore, a new member, a lost disk)",
    )
    ap.add_argument(
        "--unsafe-no-fsync",
        action="store_true",
        help="do not fsync the Raft log (etcd's flag): faster, but a power loss of a majority of nodes "
        "can lose acknowledged writes",
    )
    ap.add_argument(
        "--cert-file", type=Path, help="TLS certificate (PEM) for the client port; also presented to peers"
    )
    ap.add_argument("--key-file", type=Path, help="its private key (PEM)")
    ap.add_argument(
        "--trusted-ca-file",
        type=Path,
        help="CA (PEM) that signed the other nodes' certificates (and clients', with --client-cert-auth)",
    )
    ap.add_argument(
        "--client-cert-auth",
        action="store_true",
        help="clients must present a certificate signed by --trusted-ca-file",
    )
    ap.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="serve clients beyond loopback without TLS (only on a network you trust)",
    )
    ap.add_argument(
        "--restore",
        type=Path,
        metavar="FILE",
        help="start from an `aspen-cli snapshot save` FILE (BLAKE3 checked); the data dir must hold no "
        "Raft log. Restore every member of the new cluster from the same file (docs/OPERATIONS.md)",
    )
    ap.add_argument(
        "--seal-key-file",
        type=Path,
        help="the secrets barrier's unseal key (64 hex characters); never stored: docs/SECRETS.md",
    )
    # Tests only: keep twins of the Raft files holding exactly what was fsynced (power-loss test).
    ap.add_argument("--test-synced-shadow", action="store_true", help=argparse.SUPPRESS)
    return ap


REQUEST_TIMEOUT_MAX_S = 3600.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_args(argv: list[str] | None) -> NodeConfig:
    ap = build_parser()
    args = ap.parse_args(argv)
    # Checked before anything starts: each was a traceback (INTERNAL) at start-up, or a node
    # serving with a request deadline of 0.
    if args.log_level.upper() not in LOG_LEVELS:
        ap.error(f"--log-level: one of {', '.join(LOG_LEVELS)}, not {args.log_level[:64]!r}")
    if not 0 < args.request_timeout <= REQUEST_TIMEOUT_MAX_S:
        ap.error(f"--request-timeout: seconds, more than 0 and at most {REQUEST_TIMEOUT_MAX_S:g}")
    metrics_listen = (
        f"127.0.0.1:{args.metrics_listen}"
        if args.metrics_listen and args.metrics_listen.isdigit()
        else args.metrics_listen
    )
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s node{args.node_id} %(name)s %(levelname)s %(message)s",
    )
    try:
        split_host_port(args.listen)
        split_host_port(args.raft)
        for given in (metrics_listen, args.advertise_client):
            if given is not None:
                split_host_port(given)
        peers = parse_id_map(args.peers, "--peers")
        peer_clients = parse_id_map(args.peer_clients, "--peer-clients")
        cookie = auth.load_cookie(cookie_file=args.cookie_file)
    except (ValueError, OSError) as exc:
        ap.error(str(exc))
    if args.node_id <= 0:
        ap.error("--node-id must be a positive integer")
    if args.node_id in peers:
        ap.error("--peers lists the other members, not this node")
    if (args.cert_file is None) != (args.key_file is None):
        ap.error("--cert-file and --key-file go together")
    if args.seal_key_file is not None:
        try:
            read_unseal_key_file(args.seal_key_file)
        except (ValueError, OSError) as exc:
            ap.error(f"--seal-key-file: {exc}")
    if args.client_cert_auth and (args.cert_file is None or args.trusted_ca_file is None):
        ap.error("--client-cert-auth needs --cert-file, --key-file and --trusted-ca-file")
    return NodeConfig(
        node_id=args.node_id,
        data_dir=args.data_dir,
        listen=args.listen,
        raft=args.raft,
        peers=peers,
        peer_clients=peer_clients,
        cookie=cookie.secret if cookie is not None else None,
        request_timeout_s=args.request_timeout,
        metrics_listen=metrics_listen,
        metrics_auth=args.metrics_auth,
        advertise_client=args.advertise_client,
        join_existing=args.initial_cluster_state == "existing",
        fsync=not args.unsafe_no_fsync,
        synced_shadow=args.test_synced_shadow,
        cert_file=args.cert_file,
        key_file=args.key_file,
        trusted_ca_file=args.trusted_ca_file,
        client_cert_auth=args.client_cert_auth,
        insecure_plaintext=args.insecure_plaintext,
        restore=args.restore,
        seal_key_file=args.seal_key_file,
    )


async def serve(cfg: NodeConfig) -> int:
    """Run a node until SIGTERM/SIGINT (status 0), or until its storage fails (fail-stop:
    EXIT_STORAGE_FAILED, after a clean stop of everything else)."""
    node = AspenNode(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, node.reload_tls)
    await node.start()
    print(f"ready node={cfg.node_id} listen={cfg.listen}", flush=True)
    waits = [loop.create_task(stop.wait()), loop.create_task(node.replicated.failed.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()
    if node.replicated.failure is not None:
        log.critical("stopping: %s (exit status %d; docs/OPERATIONS.md, \"A failed disk\")",
                     node.replicated.failure, EXIT_STORAGE_FAILED)
    log.info("shutting down")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(node.stop(), 10)
    # Also a failure found by the journal's last sync, during this stop.
    return EXIT_OK if node.replicated.failure is None else EXIT_STORAGE_FAILED


def main(argv: list[str] | None = None) -> None:
    # A data directory that cannot be made, an address that is not UTF-8, ...: one line.
    sys.exit(guarded(lambda: _main(argv)))


def _main(argv: list[str] | None) -> int:
    cfg = parse_args(argv)
    # The Raft thread and the event loop share the GIL. With CPython's default 5 ms switch
    # interval a busy loop thread holds back Raft messages (and so every commit) by up to
    # 5 ms; a shorter interval trades a little throughput for much lower commit latency.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # Every file the node creates (Raft log, snapshots, blobs, keys) holds data: its user's
    # alone, whatever umask it was started with.
    os.umask(0o077)
    try:
        import uvloop

        return uvloop.run(serve(cfg))
    except KeyboardInterrupt:
        pass  # Ctrl-C is this server's way to stop: a clean exit, as SIGTERM
    except (ClusterError, StorageError) as exc:  # a start that failed below: its line names the code
        raise wire_error(exc) from exc
    return 0


if __name__ == "__main__":
    main()
