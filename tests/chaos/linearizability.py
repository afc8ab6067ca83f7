"""A Porcupine-style linearizability checker for KV histories (Wing & Gong, Lowe's memoization).

Model: one register per key (a value, or absent), with get, put, delete, cas, increment and
atomic multi-key batch writes. A history is checked per *component*: keys are partitioned
into groups that no operation spans (union-find over batch keys), and each group is checked
on its own with a multi-key state. Linearizability is compositional for single-object
operations, so per-key checking is exact; a batch is a multi-object operation, so projecting
it onto each key separately would be unsound (a reader could see half a batch), which is why
keys a batch touches are checked together.

An operation whose outcome is unknown (a timeout, a connection lost after sending) has a
completion time of infinity: it may take effect at any point after its invocation, or never.
In this model any pending write can always be applied last without contradicting anything,
so "never" and "after everything else" are the same and the search stops successfully once
every operation with a known completion is linearized.

The search is bounded by a step budget and a deadline; past either, the verdict is UNKNOWN,
never a hang.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

STEPS_MAX_DEFAULT = 50_000_000  # the deadline is the usual bound; this one makes unit tests exact
DEADLINE_S_DEFAULT = 60.0
COMPONENT_KEYS_MAX = 16  # a wider batch component is refused rather than searched forever

# Kinds of operations the model knows.
GET, PUT, DELETE, CAS, INCR, BATCH = "get", "put", "delete", "cas", "incr", "batch"
KINDS = frozenset({GET, PUT, DELETE, CAS, INCR, BATCH})


class Verdict(StrEnum):
    OK = "linearizable"
    ILLEGAL = "not linearizable"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Op:
    """One operation as the checker sees it.

    kind: get | put | delete | cas | incr | batch.
    keys: the key (one) or, for batch, every key written.
    args: put (value,); cas (expected or None = must be absent, new); batch: ((key, value or
      None for a delete), ...); get/delete/incr: ().
    ok: True = completed, with `result`; False = definitely had no effect (refused);
      None = unknown outcome (indeterminate): complete_s must be math.inf.
    result: get -> value or None; cas -> (swapped: bool, actual value or None when not
      swapped, or the sentinel NOT_KNOWN when the store did not say); incr -> new int.
    """

    op_id: int
    client: int
    kind: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    invoke_s: float
    complete_s: float
    ok: bool | None
    result: Any = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown op kind {self.kind!r}")
        if self.ok is None and self.complete_s != math.inf:
            raise ValueError(f"op {self.op_id}: an indeterminate op completes at infinity")
        if self.complete_s < self.invoke_s:
            raise ValueError(f"op {self.op_id}: completes before it is invoked")


class _NotKnown:
    def __repr__(self) -> str:
        return "NOT_KNOWN"


NOT_KNOWN: Any = _NotKnown()


@dataclass(frozen=True, slots=True)
class ComponentResult:
    keys: tuple[str, ...]
    ops: int
    verdict: Verdict
    steps: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict
    components: tuple[ComponentResult, ...] = field(default_factory=tuple)

    def failures(self) -> list[ComponentResult]:
        return [c for c in self.components if c.verdict is not Verdict.OK]


def counter_bytes(value: int) -> bytes:
    """How the counter plugin stores its count: 8 bytes little-endian."""
    return value.to_bytes(8, "little")


def counter_value(raw: bytes | None) -> int:
    return 0 if raw is None else int.from_bytes(raw, "little")


# -- the model ---------------------------------------------------------------------------

State = tuple[Any, ...]  # one value (bytes or None) per key of the component, in key order


def step(state: State, index: dict[str, int], op: Op) -> State | None:
    """The state after `op` if it can take effect in `state` with its recorded result, else None.

    An indeterminate op (ok None) takes whichever result the state gives it."""
    known = op.ok is True
    if op.kind == BATCH:
        new = list(state)
        for key, value in op.args:
            new[index[key]] = value
        return tuple(new)
    i = index[op.keys[0]]
    current = state[i]
    if op.kind == GET:
        return state if not known or op.result == current else None
    if op.kind == PUT:
        return _set(state, i, op.args[0])
    if op.kind == DELETE:
        return _set(state, i, None)
    if op.kind == INCR:
        new_value = counter_value(current) + 1
        if known and op.result != new_value:
            return None
        return _set(state, i, counter_bytes(new_value))
    # CAS
    expected, new_value = op.args
    matches = current == expected
    if not known:
        return _set(state, i, new_value) if matches else state
    swapped, actual = op.result
    if swapped:
        return _set(state, i, new_value) if matches else None
    if matches:
        return None
    return state if actual is NOT_KNOWN or actual == current else None


def _set(state: State, i: int, value: Any) -> State:
    if state[i] == value:
        return state
    return (*state[:i], value, *state[i + 1:])


# -- the search (Lowe's just-in-time linearization with a memo of (linearized, state)) ---


class _Entry:
    __slots__ = ("is_call", "match", "next", "op", "prev", "slot", "time_s")

    def __init__(self, op: Op | None, slot: int, is_call: bool, time_s: float) -> None:
        self.op = op
        self.slot = slot
        self.is_call = is_call
        self.time_s = time_s
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _build_list(ops: Sequence[Op]) -> _Entry:
    events: list[tuple[float, int, int, _Entry]] = []
    for slot, op in enumerate(ops):
        call = _Entry(op, slot, True, op.invoke_s)
        ret = _Entry(op, slot, False, op.complete_s)
        call.match = ret
        # At equal times a return sorts before a call: ops that merely touch are not concurrent,
        # which is the stricter (real-time order respecting) reading. An op's own return always
        # follows its call, also when both carry one timestamp (a zero-duration op).
        events.append((op.invoke_s, 1, slot, call))
        events.append((op.complete_s, 2 if op.complete_s == op.invoke_s else 0, slot, ret))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Entry(None, -1, False, -math.inf)
    prev = head
    for _, _, _, entry in events:
        prev.next = entry
        entry.prev = prev
        prev = entry
    return head


def _lift(entry: _Entry) -> None:
    assert entry.prev is not None and entry.match is not None
    entry.prev.next = entry.next
    if entry.next is not None:
        entry.next.prev = entry.prev
    ret = entry.match
    assert ret.prev is not None
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(entry: _Entry) -> None:
    ret = entry.match
    assert ret is not None and ret.prev is not None and entry.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    entry.prev.next = entry
    if entry.next is not None:
        entry.next.prev = entry


def check_component(keys: Sequence[str], ops: Sequence[Op], initial: State | None = None, *,
                    steps_max: int = STEPS_MAX_DEFAULT, deadline: float | None = None) -> ComponentResult:
    """Is this history over `keys` (ops touching only those keys) linearizable?"""
    keys = tuple(keys)
    index = {k: i for i, k in enumerate(keys)}
    # Refused ops had no effect: they are not part of the history to explain.
    live = [op for op in ops if op.ok is not False and not (op.kind == GET and op.ok is None)]
    state: State = initial if initial is not None else (None,) * len(keys)
    gate = _symmetry_gates(live)
    head = _build_list(live)
    linearized = 0
    cache: set[tuple[int, State]] = set()
    stack: list[tuple[_Entry, State]] = []
    entry = head.next
    steps = 0
    while entry is not None:
        steps += 1
        if steps > steps_max or (steps & 0x3FF == 0 and deadline is not None and time.monotonic() > deadline):
            return ComponentResult(keys, len(live), Verdict.UNKNOWN, steps, "search budget exhausted")
        if entry.is_call:
            assert entry.op is not None
            before = gate[entry.slot]
            if before >= 0 and not linearized >> before & 1:
                entry = entry.next  # an identical unknown op invoked earlier goes first (symmetry)
                continue
            new_state = step(state, index, entry.op)
            if new_state is not None:
                new_linearized = linearized | (1 << entry.slot)
                memo = (new_linearized, new_state)
                if memo not in cache:
                    cache.add(memo)
                    stack.append((entry, state))
                    state, linearized = new_state, new_linearized
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
            continue
        if entry.time_s == math.inf:
            # Only ops of unknown outcome are left: each may still take effect last, or never.
            return ComponentResult(keys, len(live), Verdict.OK, steps)
        # A return reached whose op could not be linearized before it: backtrack.
        if not stack:
            assert entry.op is not None
            return ComponentResult(keys, len(live), Verdict.ILLEGAL, steps, _explain(entry.op, live))
        top, state = stack.pop()
        linearized &= ~(1 << top.slot)
        _unlift(top)
        entry = top.next
    return ComponentResult(keys, len(live), Verdict.OK, steps)


def _symmetry_gates(ops: Sequence[Op]) -> list[int]:
    """For each op, the slot of an identical op of unknown outcome (same kind, keys and
    arguments) invoked just before it, or -1; such ops must be linearized in invocation order.

    Sound and complete: identical unknown ops have no result to match, so in any linearization
    two of them can swap places as long as each stays after its own invocation, which putting
    the earlier-invoked one first always allows (and when only some take effect, let them be
    the earliest). Without this, k unknown increments give the search C(k, j) equivalent ways
    to have applied j of them, which made a 90 s run's counter cost 1.7 M steps."""
    gate = [-1] * len(ops)
    last: dict[tuple[Any, ...], int] = {}
    for slot in sorted(range(len(ops)), key=lambda i: (ops[i].invoke_s, i)):
        op = ops[slot]
        if op.ok is not None:
            continue
        cls = (op.kind, op.keys, op.args)
        gate[slot] = last.get(cls, -1)
        last[cls] = slot
    return gate


def _explain(op: Op, ops: Sequence[Op]) -> str:
    """The op no linearization could place, with the ops overlapping it (what to look at)."""
    near = [o for o in ops if o.invoke_s <= op.complete_s and o.complete_s >= op.invoke_s - 1.0]
    lines = [f"cannot linearize {describe(op)}", "ops around it:"]
    lines += [f"  {describe(o)}" for o in sorted(near, key=lambda o: o.invoke_s)[:40]]
    return "\n".join(lines)


def describe(op: Op) -> str:
    outcome = {True: "ok", False: "fail", None: "info"}[op.ok]
    end = "inf" if op.complete_s == math.inf else f"{op.complete_s:.4f}"
    return (f"#{op.op_id} c{op.client} {op.kind} {','.join(op.keys)} args={op.args!r} "
            f"[{op.invoke_s:.4f}, {end}] {outcome} -> {op.result!r}")


# -- partitioning and the whole-history check --------------------------------------------


def components(ops: Iterable[Op]) -> list[tuple[tuple[str, ...], list[Op]]]:
    """Groups of keys no op spans, with their ops (union-find over each op's keys)."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        parent.setdefault(k, k)
        root = k
        while parent[root] != root:
            root = parent[root]
        while parent[k] != root:  # path compression
            parent[k], k = root, parent[k]
        return root

    ops = list(ops)
    for op in ops:
        first = find(op.keys[0])
        for k in op.keys[1:]:
            parent[find(k)] = first
    groups: dict[str, list[Op]] = {}
    for op in ops:
        groups.setdefault(find(op.keys[0]), []).append(op)
    out = []
    for group in groups.values():
        keys = tuple(sorted({k for op in group for k in op.keys}))
        out.append((keys, sorted(group, key=lambda o: o.op_id)))
    return sorted(out)


def check(ops: Iterable[Op], *, steps_max: int = STEPS_MAX_DEFAULT,
          deadline_s: float = DEADLINE_S_DEFAULT) -> CheckResult:
    """Check every component; ILLEGAL if any is, else UNKNOWN if any ran out of budget."""
    deadline = time.monotonic() + deadline_s
    results = []
    for keys, group in components(ops):
        if len(keys) > COMPONENT_KEYS_MAX:
            results.append(ComponentResult(keys, len(group), Verdict.UNKNOWN, 0,
                                           f"{len(keys)} keys joined by batches: over {COMPONENT_KEYS_MAX}"))
            continue
        results.append(check_component(keys, group, steps_max=steps_max, deadline=deadline))
    verdicts = {r.verdict for r in results}
    verdict = (
        Verdict.ILLEGAL
        if Verdict.ILLEGAL in verdicts
        else Verdict.UNKNOWN
        if Verdict.UNKNOWN in verdicts
        else Verdict.OK
    )
    return CheckResult(verdict, tuple(results))
