"""aspen-cluster: start and drive a local multi-node cluster (tests, benchmarks, operators).

    eval "$(aspen-cluster up --nodes 3 --dir /tmp/c [--base-port 7701] [--tls])"
    aspen-cluster status --dir /tmp/c
    aspen-cluster kill --dir /tmp/c 2      # SIGKILL
    aspen-cluster start --dir /tmp/c 2
    aspen-cluster down --dir /tmp/c --purge

State lives in DIR/cluster.json (ids, ports, pids) and DIR/cookie (mode 0600); each node's
data dir is DIR/node<ID>/ and its log DIR/node<ID>/node.log. With --tls, DIR/tls/ holds a new
CA, a certificate per node (for its address) and a client certificate; the nodes require
client certificates and the printed exports point the CLI at them. `LocalCluster` is the same
thing as a Python API; the CLI is a thin layer over it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aspen import certs
from aspen.auth import generate_cookie, read_cookie_file, write_cookie_file
from aspen.client import Client
from aspen.exits import EPILOG, EXIT_ERROR, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, fail, guarded
from aspen.maintenance import load_snapshot_file
from aspen.version import aspen_version
from wire.errors import AspenError

LEADER_WAIT_S = 30.0
STOP_WAIT_S = 10.0
START_WAIT_S = 60.0  # a restarted node replays its log before it listens
READY_LINE = "ready: clients on"  # what aspen-node logs once its client port listens
NODES_MAX = 15
HOST = "127.0.0.1"


@dataclass(slots=True)
class NodeSpec:
    node_id: int
    client_port: int
    raft_port: int
    pid: int | None = None
    metrics_port: int | None = None  # Prometheus endpoint, chosen at first start
    host: str = HOST  # the node's address (a network-namespace test host's, for partition tests)
    netns: str | None = None  # run the node inside this network namespace

    @property
    def client_addr(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def raft_addr(self) -> str:
        return f"{self.host}:{self.raft_port}"


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; bound all at once so they are distinct."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1][0] != "Z"
        except OSError:
            return False


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def proc_status_kib(pid: int, field_name: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return parse_status_kib(text, field_name)


def parse_status_kib(status_text: str, field_name: str) -> int | None:
    for line in status_text.splitlines():
        name, _, rest = line.partition(":")
        if name == field_name:
            return int(rest.split()[0])
    return None


class LocalCluster:
    """A cluster of local aspen-node processes under one directory (the CLI's and tests' API).

    with LocalCluster(tmp / "c") as c:   # down() on exit
        c.up(3)
        with c.client() as client: ...
        c.kill(c.leader_id()); c.wait_leader()
    """

    def __init__(self, root: Path, node_args: list[str] | None = None, tls: bool = False) -> None:
        """node_args: extra aspen-node arguments for every node; tls: the client port speaks TLS
        with certificates made here (both kept in cluster.json)."""
        self.root = root.resolve()
        self.nodes: dict[int, NodeSpec] = {}
        self.node_args: list[str] = list(node_args or [])
        self.tls = tls
        # The processes this object started (not those of an earlier `up` it loaded): their
        # exit statuses (exit_status).
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        if self.state_path.exists():
            self._load()

    # -- state files -----------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.root / "cluster.json"

    @property
    def cookie_path(self) -> Path:
        return self.root / "cookie"

    @property
    def cookie(self) -> str:
        return read_cookie_file(self.cookie_path).secret

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    def client_tls(self) -> dict[str, Path]:
        """Client keyword arguments (cacert, cert, key) for this cluster; {} without TLS."""
        if not self.tls:
            return {}
        return {
            "cacert": self.tls_dir / "ca.pem",
            "cert": self.tls_dir / "client.pem",
            "key": self.tls_dir / "client.key",
        }

    def _issue_node_cert(self, node_id: int) -> None:
        host = self.nodes[node_id].host
        certs.issue(self.tls_dir, f"node{node_id}", sorted({host, "127.0.0.1", "localhost"}))

    def _load(self) -> None:
        raw = json.loads(self.state_path.read_text())
        self.nodes = {n["node_id"]: NodeSpec(**n) for n in raw["nodes"]}
        self.node_args = list(raw.get("node_args") or self.node_args)
        self.tls = bool(raw.get("tls", self.tls))

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "nodes": [asdict(n) for n in self.nodes.values()],
                    "node_args": self.node_args,
                    "tls": self.tls,
                },
                indent=2,
            )
        )
        os.replace(tmp, self.state_path)

    def data_dir(self, node_id: int) -> Path:
        return self.root / f"node{node_id}"

    def log_path(self, node_id: int) -> Path:
        return self.data_dir(node_id) / "node.log"

    @property
    def endpoints(self) -> str:
        return ",".join(n.client_addr for n in self.nodes.values())

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self, count: int, wait: bool = True, base_port: int | None = None,
           hosts: dict[int, tuple[str, str]] | None = None, restore: Path | None = None) -> None:
        """Start `count` nodes; with base_port, node i (from 1) serves clients on base_port+i-1
        and Raft on base_port+100+i-1, else on free ports the kernel picks. With restore, every
        node starts from that `aspen-cli snapshot save` file (aspen-node --restore)."""
        if not 1 <= count <= NODES_MAX:
            raise ValueError(f"--nodes must be from 1 to {NODES_MAX}")
        if self.nodes:
            raise RuntimeError(f"{self.root} already holds a cluster; use start, or down --purge first")
        if hosts is not None:
            # Network-namespace test hosts (deploy/netns.py): each has its own address and port
            # space, so every node uses the standard ports.
            client_ports, raft_ports = [7701] * count, [7801] * count
        elif base_port is not None:
            if not 1024 <= base_port <= 65535 - 100 - count:
                raise ValueError(f"--base-port must be from 1024 to {65535 - 100 - count}")
            client_ports = [base_port + i for i in range(count)]
            raft_ports = [base_port + 100 + i for i in range(count)]
            busy = [p for p in client_ports + raft_ports if not port_free(p)]
            if busy:
                raise RuntimeError(f"ports already in use: {busy}")
        else:
            ports = free_ports(2 * count)
            client_ports, raft_ports = ports[0::2], ports[1::2]
        self.root.mkdir(parents=True, exist_ok=True)
        write_cookie_file(self.cookie_path, generate_cookie())
        self.nodes = {i + 1: NodeSpec(i + 1, client_ports[i], raft_ports[i]) for i in range(count)}
        for node_id, (address, netns) in (hosts or {}).items():
            spec = self.nodes[node_id]
            spec.host, spec.netns, spec.metrics_port = address, netns, 9701
        if self.tls:
            certs.create_ca(self.tls_dir)
            certs.issue(self.tls_dir, "client", [])
            for node_id in self.nodes:
                self._issue_node_cert(node_id)
        self._save()
        try:
            first_start = ["--restore", str(restore.resolve())] if restore is not None else []
            for node_id in self.nodes:
                # up() waits for a leader below.
                self.start(node_id, "new", wait_listening=False, extra_args=first_start)
            if wait:
                self.wait_leader()
        except BaseException:
            self.down()  # no half-started cluster left running behind an error
            raise

    def command(
        self, node_id: int, initial_state: str = "existing", extra_args: list[str] | None = None
    ) -> list[str]:
        spec = self.nodes[node_id]
        others = [n for n in self.nodes.values() if n.node_id != node_id]
        if self.tls:
            tls = [
                "--cert-file",
                str(self.tls_dir / f"node{node_id}.pem"),
                "--key-file",
                str(self.tls_dir / f"node{node_id}.key"),
                "--trusted-ca-file",
                str(self.tls_dir / "ca.pem"),
                "--client-cert-auth",
            ]
        elif spec.host != HOST:
            tls = ["--insecure-plaintext"]  # network-namespace test hosts on a private bridge
        else:
            tls = []
        return [
            sys.executable,
            "-m",
            "aspen.node",
            "--node-id",
            str(node_id),
            "--data-dir",
            str(self.data_dir(node_id)),
            "--listen",
            spec.client_addr,
            "--raft",
            spec.raft_addr,
            "--peers",
            ",".join(f"{n.node_id}={n.raft_addr}" for n in others),
            "--peer-clients",
            ",".join(f"{n.node_id}={n.client_addr}" for n in others),
            "--cookie-file",
            str(self.cookie_path),
            "--initial-cluster-state",
            initial_state,
            *(["--metrics-listen", f"{spec.host}:{spec.metrics_port}"] if spec.metrics_port else []),
            *tls,
            *self.node_args,
            *(extra_args or []),
        ]

    def start(
        self,
        node_id: int,
        initial_state: str = "existing",
        wait_listening: bool = True,
        extra_args: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """Start a node; "existing" (anything but the first `up`): a node whose data dir is
        empty waits to hear from a leader instead of campaigning. Returns once the node's
        client port listens (clients fail fast on a refused connection, so "started" must
        mean reachable), unless wait_listening is False."""
        if self.nodes[node_id].metrics_port is None:
            self.nodes[node_id].metrics_port = free_ports(1)[0]
        spec = self.nodes[node_id]
        if self.alive(node_id):
            raise RuntimeError(f"node {node_id} is already running (pid {spec.pid})")
        self.data_dir(node_id).mkdir(parents=True, exist_ok=True)
        log_from = self.log_path(node_id).stat().st_size if self.log_path(node_id).exists() else 0
        env = {k: v for k, v in os.environ.items() if k not in ("ASPEN_COOKIE",)} | (extra_env or {})
        prefix = ["ip", "netns", "exec", spec.netns] if spec.netns else []
        with open(self.log_path(node_id), "ab") as log:
            proc = subprocess.Popen(
                prefix + self.command(node_id, initial_state, extra_args),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        spec.pid = proc.pid
        self._procs[node_id] = proc
        self._save()
        if wait_listening:
            self._wait_listening(node_id, log_from)

    def _wait_listening(self, node_id: int, log_from: int) -> None:
        # The node's own word, in its log: no probe connection that its metrics would count.
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            with open(self.log_path(node_id), "rb") as log:
                log.seek(log_from)
                if READY_LINE.encode() in log.read():
                    return
            if not self.alive(node_id):
                raise RuntimeError(f"node {node_id} exited; log tail: {self.log_tails().get(node_id, '')}")
            time.sleep(0.02)
        raise TimeoutError(
            f"node {node_id} did not listen within {START_WAIT_S:g}s; log tail: "
            f"{self.log_tails().get(node_id, '')}"
        )

    def add_node(self, timeout_s: float = 30.0) -> int:
        """Start one more node (peers: every current member) and join it through AddNode."""
        node_id = max(self.nodes) + 1
        client_port, raft_port = free_ports(2)
        spec = NodeSpec(node_id, client_port, raft_port)
        self.nodes[node_id] = spec
        if self.tls:
            self._issue_node_cert(node_id)
        self._save()
        self.start(node_id)
        with self.client([n for n in self.nodes if n != node_id and self.alive(n)], timeout_s=timeout_s) as c:
            c.request("AddNode", node_id=node_id, raft_addr=spec.raft_addr, client_addr=spec.client_addr)
        self.wait_caught_up(node_id, timeout_s)
        return node_id

    def wait_caught_up(self, node_id: int, timeout_s: float = 30.0) -> None:
        """Until the leader sees `node_id` connected and the node has applied what the leader had
        committed when the wait began: a member that can serve, not one still joining."""
        deadline = time.monotonic() + timeout_s
        target: int | None = None
        while time.monotonic() < deadline:
            leader = self.leader_id()
            st = self.status_of(leader) if leader is not None else None
            mine = self.status_of(node_id)
            if st is not None and mine is not None:
                target = st["commit_index"] if target is None else target
                connected = any(n["node_id"] == node_id and n.get("connected") for n in st.get("nodes") or [])
                if connected and mine["applied_index"] >= target:
                    return
            if not self.alive(node_id):
                raise RuntimeError(f"node {node_id} exited; log tail: {self.log_tails().get(node_id, '')}")
            time.sleep(0.05)
        raise TimeoutError(
            f"node {node_id} did not catch up within {timeout_s}s; log tails: {self.log_tails()}"
        )

    def remove_node(self, node_id: int, timeout_s: float = 30.0) -> None:
        """RemoveNode through the leader (leadership moves first if it is the leader), then stop it."""
        if node_id not in self.nodes:
            raise RuntimeError(f"no node {node_id} here")
        others = [n for n in self.nodes if n != node_id and self.alive(n)]
        try:
            with self.client(others, timeout_s=timeout_s) as c:
                c.request("RemoveNode", node_id=node_id)
        except AspenError as exc:
            if exc.code != "UNAVAILABLE" or self.leader_id() != node_id:
                raise
            # The leader could not hand over in time: stop it, let the others elect, then
            # remove it from the new leader.
            self.stop(node_id)
            self.wait_leader(exclude=node_id)
            with self.client(others, timeout_s=timeout_s) as c:
                c.request("RemoveNode", node_id=node_id)
        self.stop(node_id)
        del self.nodes[node_id]
        self._save()

    def signal(self, node_id: int, sig: int) -> None:
        spec = self.nodes[node_id]
        if spec.pid and self.alive(node_id):
            os.kill(spec.pid, sig)

    def kill(self, node_id: int) -> None:
        self.signal(node_id, signal.SIGKILL)
        self._wait_dead(node_id, STOP_WAIT_S)

    def stop(self, node_id: int) -> None:
        self.signal(node_id, signal.SIGTERM)
        if not self._wait_dead(node_id, STOP_WAIT_S):
            self.kill(node_id)

    def _wait_dead(self, node_id: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive(node_id):
                return True
            time.sleep(0.02)
        return False

    def down(self, purge: bool = False) -> None:
        """SIGTERM every node at once, wait (bounded), SIGKILL stragglers; --purge deletes DIR."""
        for node_id in self.nodes:
            self.signal(node_id, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for node_id in self.nodes:
            if not self._wait_dead(node_id, max(0.0, deadline - time.monotonic())):
                self.kill(node_id)
        if purge and self.root.exists():
            shutil.rmtree(self.root)
            self.nodes = {}

    def alive(self, node_id: int) -> bool:
        proc = self._procs.get(node_id)
        if proc is not None and proc.pid == self.nodes[node_id].pid:
            return proc.poll() is None  # reaped through its Popen, which keeps the status
        return pid_alive(self.nodes[node_id].pid)

    def exit_status(self, node_id: int) -> int | None:
        """The exit status of the node process this object last started, None while it runs
        (or when another `up` started it)."""
        proc = self._procs.get(node_id)
        return None if proc is None else proc.poll()

    # -- queries ---------------------------------------------------------------------------

    def client(self, node_ids: list[int] | None = None, timeout_s: float = 10.0, **kwargs: Any) -> Client:
        ids = node_ids or list(self.nodes)
        return Client(
            [self.nodes[i].client_addr for i in ids],
            self.cookie,
            timeout_s,
            **{**self.client_tls(), **kwargs},
        )

    def status_of(self, node_id: int, timeout_s: float = 2.0) -> dict[str, Any] | None:
        if not self.alive(node_id):
            return None
        client = self.client([node_id], timeout_s=timeout_s, discover_leader=False, retries_max=1)
        try:
            return client.cluster_status()
        except (AspenError, OSError, TimeoutError):
            return None
        finally:
            client.close()

    def roles(self) -> dict[int, str]:
        """Each node's own view of its role: leader/follower/candidate, 'down' or 'unresponsive'."""
        out: dict[int, str] = {}
        for node_id in self.nodes:
            if not self.alive(node_id):
                out[node_id] = "down"
                continue
            st = self.status_of(node_id)
            if st is None:
                out[node_id] = "unresponsive"
                continue
            mine = [n for n in st.get("nodes") or [] if n.get("node_id") == node_id]
            role = mine[0].get("role") if mine else None
            out[node_id] = str(role or ("leader" if st.get("leader_id") == node_id else "follower"))
        return out

    def leader_id(self) -> int | None:
        """The leader all live nodes agree on, or None."""
        seen = set()
        for node_id in self.nodes:
            if not self.alive(node_id):
                continue
            st = self.status_of(node_id)
            if st is None:
                return None
            seen.add(st.get("leader_id"))
        return seen.pop() if len(seen) == 1 and None not in seen else None

    def leader_term(self, timeout_s: float = LEADER_WAIT_S) -> int:
        """The term of the leader all live nodes agree on (an election moves it)."""
        leader = self.wait_leader(timeout_s)
        status = self.status_of(leader)
        if status is None:
            raise RuntimeError(f"leader {leader} gave no status")
        return int(status["term"])

    def wait_leader(self, timeout_s: float = LEADER_WAIT_S, exclude: int | None = None) -> int:
        deadline = time.monotonic() + timeout_s
        started = [i for i, n in self.nodes.items() if n.pid]
        while time.monotonic() < deadline:
            leader = self.leader_id()
            if leader is not None and leader != exclude:
                return leader
            if started and not any(self.alive(i) for i in started):
                raise RuntimeError(f"every node exited; log tails: {self.log_tails()}")
            time.sleep(0.05)
        raise TimeoutError(f"no leader within {timeout_s}s; log tails: {self.log_tails()}")

    def log_tails(self, chars: int = 2000) -> dict[int, str]:
        return {
            i: self.log_path(i).read_text(errors="replace")[-chars:]
            for i in self.nodes
            if self.log_path(i).exists()
        }

    def exports(self) -> str:
        lines = [
            f"export ASPEN_CLUSTER={shlex.quote(self.endpoints)}",
            f"export ASPEN_COOKIE={shlex.quote(self.cookie)}",
        ]
        names = {"cacert": "ASPEN_CACERT", "cert": "ASPEN_CERT", "key": "ASPEN_KEY"}
        lines += [f"export {names[k]}={shlex.quote(str(v))}" for k, v in self.client_tls().items()]
        return "".join(line + "\n" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="aspen-cluster", description="Run a local Aspen cluster.", epilog=EPILOG
    )
    ap.add_argument("--version", action="version", version=f"aspen-cluster {aspen_version()}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--dir", type=Path, required=True, help="the cluster's directory (cluster.json, logs, data)"
        )
        return p

    up = command("up", "start N nodes and wait for a leader; prints the exports to reach them")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument(
        "--base-port", type=int, help="client ports from P, Raft ports from P+100 (default: free ports)"
    )
    up.add_argument(
        "--restore",
        type=Path,
        metavar="FILE",
        help="start every node from an `aspen-cli snapshot save` FILE (a new cluster with its data)",
    )
    up.add_argument(
        "--with",
        dest="with_plugins",
        action="append",
        default=[],
        choices=("secrets",),
        help="install a built first-party plugin once the cluster is up (secrets: docs/SECRETS.md)",
    )
    up.add_argument(
        "--tls",
        action="store_true",
        help="make a CA and certificates in DIR/tls; nodes serve TLS and require client certificates",
    )
    command("status", "each node's role, pid, liveness and addresses")
    p = command("down", "stop every node (SIGTERM, then SIGKILL after a while)")
    p.add_argument("--purge", action="store_true", help="also delete the directory")
    command("add", "start one more node, join it to the cluster, wait until it has caught up")
    for name, help_text in (
        ("kill", "SIGKILL one node (a crash)"),
        ("stop", "SIGTERM one node and wait for it"),
        ("start", "start a stopped or killed node again"),
        ("remove", "remove a node from the membership and stop it"),
    ):
        p = command(name, help_text)
        p.add_argument("node", type=int)
        if name == "start":
            p.add_argument(
                "--wait",
                action="store_true",
                help="return once a leader sees the node connected and it has caught up",
            )
    return ap


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd != "up" and not (args.dir / "cluster.json").exists():
        # `down --dir typo` was silent and exited 0: nothing was stopped.
        return fail(
            "NOT_FOUND", f"no cluster in {os.fsdecode(args.dir)!r} (no cluster.json there)", EXIT_ERROR
        )
    cluster = LocalCluster(args.dir, tls=getattr(args, "tls", False))
    try:
        if args.cmd == "up":
            if args.restore is not None:
                load_snapshot_file(args.restore)  # a bad file is one line here, not nodes that never start
            cluster.up(args.nodes, base_port=args.base_port, restore=args.restore)
            if "secrets" in args.with_plugins:  # installed as `make install-secrets` does, once built
                from aspen import secrets

                with cluster.client(timeout_s=30.0) as client:
                    r = secrets.install(client)
                print(
                    f"# installed {r['name']} {r['version']} on every node; unseal it: docs/SECRETS.md",
                    file=sys.stderr,
                )
            sys.stdout.write(cluster.exports())
        elif args.cmd == "status":
            leader = cluster.leader_id()
            print(f"leader: {leader if leader is not None else 'none'}")
            for node_id, role in cluster.roles().items():
                spec = cluster.nodes[node_id]
                alive = "alive" if cluster.alive(node_id) else "dead"
                print(
                    f"node {node_id}: {role:<12} pid={spec.pid} {alive:<5} client={spec.client_addr} "
                    f"raft={spec.raft_addr}"
                )
        elif args.cmd == "down":
            cluster.down(purge=args.purge)
            print(
                f"stopped {len(cluster.nodes) or 'every'} "
                f"node(s){' and deleted ' + str(args.dir) if args.purge else ''}"
            )
        elif args.cmd == "add":
            print(f"node {cluster.add_node()} joined")
            sys.stdout.write(cluster.exports())
        elif args.cmd == "remove":
            cluster.remove_node(args.node)
            print(f"node {args.node} removed")
        else:
            if args.node not in cluster.nodes:
                return fail(
                    "NOT_FOUND",
                    f"no node {args.node} in {args.dir} (nodes: "
                    f"{', '.join(map(str, cluster.nodes)) or 'none'})",
                    EXIT_ERROR,
                )
            getattr(cluster, args.cmd)(args.node)
            if args.cmd == "start" and args.wait:
                cluster.wait_caught_up(args.node)
            done = {"kill": "killed", "stop": "stopped", "start": "started"}[args.cmd]
            print(f"node {args.node} {done}{' and caught up' if args.cmd == 'start' and args.wait else ''}")
    except FileNotFoundError as exc:  # --with a plugin that is not built
        return fail("NOT_FOUND", str(exc), EXIT_ERROR)
    except ValueError as exc:  # an argument out of range
        return fail("INVALID_REQUEST", str(exc), EXIT_USAGE)
    except TimeoutError as exc:
        return fail("TIMEOUT", str(exc), EXIT_UNAVAILABLE)
    except RuntimeError as exc:  # the directory's state: already running, ports in use, nodes exited
        return fail("UNAVAILABLE", str(exc), EXIT_ERROR)
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    sys.exit(guarded(lambda: _run(argv)))


if __name__ == "__main__":
    main()
