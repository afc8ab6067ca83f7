"""The nemesis: one fault at a time, each healed after a bounded hold, on a real cluster.

Faults:
- kill_leader / kill_follower: SIGKILL (no shutdown code runs), restarted after the hold;
- pause: SIGSTOP a node (the leader half the time), SIGCONT after the hold: a node that
  wakes up believing it still leads;
- restart: SIGTERM (a clean stop), then start again;
- isolate: cut one host's link (the leader half the time) on network-namespace hosts;
- split: move a minority of hosts (possibly with the leader) to another bridge.
The partition faults exist only when the cluster runs on deploy/netns.py hosts.

After healing, the nemesis waits (bounded) until every node answers and all agree on a
leader before the next fault, so faults never stack up into a lost majority: the suite tests
failover, not what a cluster without quorum does (it must refuse, which partitions cover).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from deploy.launcher import LocalCluster
from deploy.netns import HostNetwork

NODE_FAULTS = ("kill_leader", "kill_follower", "pause", "restart")
NET_FAULTS = ("isolate", "split")
RECOVERY_WAIT_S = 30.0
FAULTS_MAX = 1_000


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    nodes: tuple[int, ...]
    leader: int | None  # the leader when the fault began
    start_s: float  # when the nemesis began injecting it
    in_force_s: float  # when it was in force (the process dead or stopped, the link down)
    end_s: float  # when it was healed
    recovered_s: float | None  # when every node answered with one leader again (None: not in time)

    @property
    def hit_leader(self) -> bool:
        return self.leader in self.nodes


@dataclass(frozen=True, slots=True)
class NemesisConfig:
    quiet_s: tuple[float, float] = (1.0, 2.5)  # between faults
    hold_s: tuple[float, float] = (1.0, 3.0)  # how long a fault lasts
    partitions: bool = True


class Nemesis:
    def __init__(self, cluster: LocalCluster, now: Callable[[], float], rng: random.Random,
                 config: NemesisConfig, net: HostNetwork | None = None) -> None:
        self.cluster = cluster
        self.now = now
        self.rng = rng
        self.config = config
        self.net = net if config.partitions else None
        self.kinds = NODE_FAULTS + (NET_FAULTS if self.net is not None else ())
        self.faults: list[Fault] = []
        self.skipped: list[str] = []
        self.crash: str | None = None  # an exception that stopped the nemesis early
        self._paused: set[int] = set()
        self._lock = threading.Lock()  # heal_all may run from another thread after a timeout

    def schedule(self) -> list[str]:
        """Fault kinds in order: rounds of every kind, shuffled per round by the seed, the first
        round led by a leader kill, so even a short run measures failover and sees each kind
        before any repeats."""
        order: list[str] = []
        while len(order) < FAULTS_MAX:
            round_ = list(self.kinds)
            self.rng.shuffle(round_)
            if not order:
                round_.remove("kill_leader")
                round_.insert(0, "kill_leader")
            order.extend(round_)
        return order[:FAULTS_MAX]

    def run(self, stop: threading.Event) -> None:
        """Inject faults until `stop` is set; each fault is healed before the next one."""
        try:
            for kind in self.schedule():
                if stop.wait(self.rng.uniform(*self.config.quiet_s)):
                    return
                self.inject(kind, stop)
        except Exception as exc:  # e.g. `ip` failing: the run must say so, heal_all still runs after
            self.crash = f"{type(exc).__name__}: {exc}"

    def inject(self, kind: str, stop: threading.Event) -> Fault | None:
        try:
            leader = self.cluster.wait_leader(timeout_s=10.0)
        except (TimeoutError, RuntimeError) as exc:
            self.skipped.append(f"{self.now():.3f} {kind}: no leader to aim at ({str(exc)[:80]})")
            return None
        nodes = self._targets(kind, leader)
        hold_s = self.rng.uniform(*self.config.hold_s)
        start_s = self.now()
        self._begin(kind, nodes)
        in_force_s = self.now()
        stop.wait(hold_s)  # a stop request cuts the hold short; the fault is healed either way
        self._end(kind, nodes)
        end_s = self.now()
        recovered_s = self._wait_recovered()
        fault = Fault(kind, nodes, leader, start_s, in_force_s, end_s, recovered_s)
        self.faults.append(fault)
        return fault

    def _targets(self, kind: str, leader: int) -> tuple[int, ...]:
        followers = [n for n in self.cluster.nodes if n != leader]
        if kind == "kill_leader":
            return (leader,)
        if kind == "kill_follower":
            return (self.rng.choice(followers),)
        if kind in ("pause", "isolate"):
            return (leader,) if self.rng.random() < 0.5 else (self.rng.choice(followers),)
        if kind == "restart":
            return (self.rng.choice(list(self.cluster.nodes)),)
        if kind == "split":
            minority = (len(self.cluster.nodes) - 1) // 2
            pool = list(self.cluster.nodes)
            return tuple(sorted(self.rng.sample(pool, minority)))
        raise ValueError(f"unknown fault {kind!r}")

    def _begin(self, kind: str, nodes: tuple[int, ...]) -> None:
        with self._lock:
            for node in nodes:
                if kind in ("kill_leader", "kill_follower"):
                    self.cluster.kill(node)
                elif kind == "pause":
                    self._paused.add(node)
                    self.cluster.signal(node, signal.SIGSTOP)
                elif kind == "restart":
                    self.cluster.stop(node)
                elif kind == "isolate":
                    assert self.net is not None
                    self.net.isolate(node)
            if kind == "split":
                assert self.net is not None
                self.net.split(list(nodes))

    def _end(self, kind: str, nodes: tuple[int, ...]) -> None:
        with self._lock:
            for node in nodes:
                if kind in ("kill_leader", "kill_follower", "restart"):
                    self.cluster.start(node)
                elif kind == "pause":
                    self.cluster.signal(node, signal.SIGCONT)
                    self._paused.discard(node)
                elif kind == "isolate":
                    assert self.net is not None
                    self.net.heal(node)
            if kind == "split":
                assert self.net is not None
                self.net.heal_all()

    def _wait_recovered(self, timeout_s: float = RECOVERY_WAIT_S) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.cluster.wait_leader(timeout_s=max(0.1, deadline - time.monotonic()))
            except (TimeoutError, RuntimeError):
                return None
            if all(self.cluster.status_of(n) is not None for n in self.cluster.nodes):
                return self.now()
            time.sleep(0.1)
        return None

    def heal_all(self) -> None:
        """Undo every fault that may still be in force: resume, restart the dead, reconnect."""
        with self._lock:
            for node in list(self.cluster.nodes):
                self.cluster.signal(node, signal.SIGCONT)
                if not self.cluster.alive(node):
                    self.cluster.start(node)
            self._paused.clear()
            if self.net is not None:
                self.net.heal_all()
