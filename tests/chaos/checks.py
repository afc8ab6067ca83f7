"""The end-of-run checks besides linearizability: lost writes, the counter, state hashes, the
plugin registry on every node, and unavailability after faults that hit the leader."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deploy.launcher import LocalCluster
from tests.chaos import counter_plugin
from tests.chaos.history import INFO, OK, Record
from tests.chaos.linearizability import BATCH, CAS, DELETE, GET, INCR, PUT, counter_bytes, counter_value
from tests.chaos.nemesis import Fault
from wire.errors import AspenError

CONVERGE_WAIT_S = 30.0


def written_value(record: Record, key: str) -> tuple[bool, bytes | None]:
    """(does this op write `key` if it takes effect, the value it leaves)."""
    if record.kind == PUT:
        return True, record.args[0]
    if record.kind == DELETE:
        return True, None
    if record.kind == CAS:
        if record.outcome == OK and not record.result[0]:
            return False, None
        return True, record.args[1]
    if record.kind == BATCH:
        return True, dict(record.args)[key]
    if record.kind == INCR:
        if record.outcome == OK:
            return True, counter_bytes(record.result)
        return True, None  # an unknown increment's value is unknown: see could_leave
    return False, None


def could_leave(record: Record, key: str, value: bytes | None) -> bool:
    writes, left = written_value(record, key)
    if not writes:
        return False
    if record.kind == INCR and record.outcome == INFO:
        return value is not None  # it leaves whatever count it reached
    return left == value


@dataclass(frozen=True, slots=True)
class LostWrite:
    key: str
    final: bytes | None
    write: Record


def lost_writes(records: Sequence[Record], finals: dict[str, bytes | None]) -> list[LostWrite]:
    """Acknowledged writes the final state contradicts.

    For each acknowledged write w of a key, the final value must have been left by w itself or
    by a write (acknowledged or of unknown outcome) that did not complete before w began;
    otherwise w was lost: something older than it, or nothing, is what the cluster kept."""
    lost: list[LostWrite] = []
    for key, final in finals.items():
        writers = [r for r in records if key in r.keys and r.kind != GET and r.outcome in (OK, INFO)
                   and written_value(r, key)[0]]
        explainers = [r for r in writers if could_leave(r, key, final)]
        for w in writers:
            if w.outcome != OK:
                continue
            if not any(x.op_id == w.op_id or x.complete_s >= w.invoke_s for x in explainers):
                lost.append(LostWrite(key, final, w))
    return lost


@dataclass(frozen=True, slots=True)
class CounterCheck:
    final: int
    acknowledged: int
    indeterminate: int
    highest_acknowledged: int

    @property
    def ok(self) -> bool:
        return self.acknowledged <= self.final <= self.acknowledged + self.indeterminate and \
            self.highest_acknowledged <= self.final


def counter_check(records: Sequence[Record], final: bytes | None) -> CounterCheck:
    incrs = [r for r in records if r.kind == INCR]
    acked = [r for r in incrs if r.outcome == OK]
    return CounterCheck(counter_value(final), len(acked), sum(r.outcome == INFO for r in incrs),
                        max((r.result for r in acked), default=0))


@dataclass(frozen=True, slots=True)
class NodeState:
    node_id: int
    applied_index: int
    state_hash: str


def converged_state(
    cluster: LocalCluster, timeout_s: float = CONVERGE_WAIT_S
) -> tuple[bool, list[NodeState]]:
    """Every node's (applied index, state hash), polled until all are at the same index; then
    the hashes must match. (False, last seen) if they never reach one index in time."""
    deadline = time.monotonic() + timeout_s
    seen: list[NodeState] = []
    while time.monotonic() < deadline:
        seen = []
        for node_id in cluster.nodes:
            try:
                with cluster.client([node_id], timeout_s=5.0, discover_leader=False, retries_max=2) as c:
                    r = c.request("StateHash")
                seen.append(NodeState(node_id, r["applied_index"], r["state_hash"]))
            except (AspenError, OSError, TimeoutError):
                break
        if len(seen) == len(cluster.nodes) and len({s.applied_index for s in seen}) == 1:
            return len({s.state_hash for s in seen}) == 1, seen
        time.sleep(0.2)
    return False, seen


def registries(cluster: LocalCluster, timeout_s: float = CONVERGE_WAIT_S) -> tuple[bool, dict[int, Any]]:
    """Every node's plugin list (registry entry and its local state), polled until all agree
    and the counter plugin is Ready everywhere (a restarted node loads it after catching up)."""
    deadline = time.monotonic() + timeout_s
    lists: dict[int, Any] = {}
    while time.monotonic() < deadline:
        lists = {}
        for node_id in cluster.nodes:
            try:
                with cluster.client([node_id], timeout_s=5.0, discover_leader=False, retries_max=2) as c:
                    lists[node_id] = c.request("PluginList")["plugins"]
            except (AspenError, OSError, TimeoutError) as exc:
                lists[node_id] = f"unreachable: {exc}"
        values = list(lists.values())
        ready = all(
            isinstance(v, list) and any(p["name"] == counter_plugin.NAME and p["state"] == "Ready" for p in v)
            for v in values
        )
        if ready and all(v == values[0] for v in values):
            return True, lists
        time.sleep(0.2)
    return False, lists


@dataclass(frozen=True, slots=True)
class Unavailability:
    fault: Fault
    window_s: float | None  # None: no write succeeded after it before the run ended


def unavailability(records: Sequence[Record], faults: Sequence[Fault]) -> list[Unavailability]:
    """For each fault that hit the leader: from the moment it was in force (the process dead or
    stopped, the link down) to the first write invoked after that and acknowledged (any write
    kind; a CAS that did not swap also went through the log). Measuring from when the nemesis
    began would count writes the old leader committed while SIGKILL was still on its way."""
    writes = sorted((r for r in records if r.kind != GET and r.outcome == OK), key=lambda r: r.complete_s)
    out = []
    for fault in faults:
        if not fault.hit_leader:
            continue
        after = [r.complete_s for r in writes if r.invoke_s >= fault.in_force_s]
        window = min(after) - fault.in_force_s if after else None
        out.append(Unavailability(fault, window))
    return out


def worst(windows: Sequence[Unavailability], kind: str | None = None) -> float | None:
    vals = [
        u.window_s if u.window_s is not None else math.inf
        for u in windows
        if kind is None or u.fault.kind == kind
    ]
    return max(vals) if vals else None


@dataclass(frozen=True, slots=True)
class LogWarnings:
    node_id: int
    count: int
    first: str


def raft_warnings(cluster: LocalCluster, pattern: str = "pysyncobj.syncobj CRITICAL") -> list[LogWarnings]:
    """pysyncobj's CRITICAL lines per node log: "truncating already-applied log entries" means
    a follower cut entries it had applied, a divergence. pysyncobj 0.3.17 used to log it on
    every resend shorter than a follower's log (it cut matching tails too); RaftCore keeps a
    matching tail now (cluster/raft.py), so a line left is a real conflict and fails the run."""
    out = []
    for node_id in cluster.nodes:
        path = cluster.log_path(node_id)
        if not path.exists():
            continue
        hits = [line for line in path.read_text(errors="replace").splitlines() if pattern in line]
        if hits:
            out.append(LogWarnings(node_id, len(hits), hits[0][:300]))
    return out
