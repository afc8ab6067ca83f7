"""The history of a chaos run: every operation with its client, invocation and completion times,
outcome and result, recorded from many client threads.

Outcomes, Jepsen style:
- ok: completed, with its result (a CAS that did not swap is ok, with swapped=False);
- fail: definitely had no effect (the node refused it before proposing, the request was never
  sent, a read failed: reads change nothing);
- info: unknown (a timeout, a connection lost after sending, applied="unknown"): it may take
  effect at any time after its invocation, or never. Its completion time is infinity.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chaos import counter_plugin
from tests.chaos.linearizability import BATCH, CAS, GET, NOT_KNOWN, Op
from wire.errors import AspenError, ErrorCode

OPS_MAX = 200_000  # a bound on memory; a run that hits it stops recording and says so

OK, FAIL, INFO = "ok", "fail", "info"
# Codes that mean the node refused the request before anything reached the log.
_REFUSED = frozenset({
    ErrorCode.NOT_LEADER, ErrorCode.INVALID_REQUEST, ErrorCode.UNKNOWN_REQUEST, ErrorCode.KEY_TOO_LARGE,
    ErrorCode.VALUE_TOO_LARGE, ErrorCode.RESERVED_KEY, ErrorCode.AUTH_FAILED, ErrorCode.FRAME_TOO_LARGE,
    ErrorCode.MALFORMED_FRAME, "NOT_READY", counter_plugin.CONTENDED,
})


def outcome_of_error(kind: str, exc: BaseException) -> str:
    """fail when the error proves the op had no effect, else info (unknown is always sound)."""
    if kind == GET:
        return FAIL  # a read that did not answer changed nothing
    if isinstance(exc, AspenError):
        applied = exc.error.details.get("applied")
        if applied == "no":
            return FAIL
        if applied != "unknown" and exc.code in _REFUSED:
            return FAIL
    return INFO


@dataclass(frozen=True, slots=True)
class Record:
    op_id: int
    client: int
    kind: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    invoke_s: float
    complete_s: float  # math.inf for info
    outcome: str
    result: Any = None
    error: str = ""

    def to_op(self) -> Op:
        ok = {OK: True, FAIL: False, INFO: None}[self.outcome]
        return Op(
            self.op_id,
            self.client,
            self.kind,
            self.keys,
            self.args,
            self.invoke_s,
            self.complete_s,
            ok,
            self.result,
        )

    def to_json(self) -> dict[str, Any]:
        return {"id": self.op_id, "client": self.client, "kind": self.kind, "keys": list(self.keys),
                "args": _plain(self.args), "invoke_s": self.invoke_s,
                "complete_s": None if self.complete_s == math.inf else self.complete_s,
                "outcome": self.outcome, "result": _plain(self.result), "error": self.error}


    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Record:
        """The inverse of to_json (for re-checking a saved history.jsonl)."""
        complete = math.inf if raw["complete_s"] is None else raw["complete_s"]
        if raw["kind"] == BATCH:  # ((key: str, value or None), ...): keys stay text
            args: tuple[Any, ...] = tuple((k, _unplain(v)) for k, v in raw["args"])
        else:
            args = _unplain(raw["args"])
        result = raw["result"]
        if raw["kind"] == CAS and result is not None:
            result = (result[0], NOT_KNOWN if result[1] == "?" else _unplain(result[1]))
        elif raw["kind"] == GET:
            result = _unplain(result)
        return cls(raw["id"], raw["client"], raw["kind"], tuple(raw["keys"]), args, raw["invoke_s"], complete,
                   raw["outcome"], result, raw["error"])


def _plain(value: Any) -> Any:
    """JSON for op arguments and results: readable text for printable values, {"hex"} else."""
    if value is NOT_KNOWN:
        return "?"
    if isinstance(value, bytes):
        text = value.decode("ascii", "replace")
        return (
            text if text.isprintable() and "\\" not in text and "\ufffd" not in text else {"hex": value.hex()}
        )
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("ascii")
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    if isinstance(value, list):
        return tuple(_unplain(v) for v in value)
    return value


class History:
    """Thread-safe, append-only, bounded. Times are seconds since the history began."""

    def __init__(self, ops_max: int = OPS_MAX) -> None:
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._next_id = 0
        self.ops_max = ops_max
        self.truncated = False

    def now(self) -> float:
        return time.monotonic() - self.t0

    def invoke(self) -> tuple[int, float]:
        with self._lock:
            op_id = self._next_id
            self._next_id += 1
        return op_id, self.now()

    def complete(self, op_id: int, client: int, kind: str, keys: tuple[str, ...], args: tuple[Any, ...],
                 invoke_s: float, outcome: str, result: Any = None, error: str = "") -> Record:
        complete_s = math.inf if outcome == INFO else self.now()
        record = Record(op_id, client, kind, keys, args, invoke_s, complete_s, outcome, result, error)
        with self._lock:
            if len(self._records) < self.ops_max:
                self._records.append(record)
            else:
                self.truncated = True
        return record

    def records(self) -> list[Record]:
        with self._lock:
            return sorted(self._records, key=lambda r: r.op_id)

    def ops(self) -> list[Op]:
        return [r.to_op() for r in self.records()]

    def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {outcome: n}} plus a 'total' row."""
        out: dict[str, dict[str, int]] = {}
        for r in self.records():
            for row in (r.kind, "total"):
                out.setdefault(row, {OK: 0, FAIL: 0, INFO: 0})[r.outcome] += 1
        return out

    def dump(self, path: Path) -> None:
        with path.open("w") as f:
            for r in self.records():
                f.write(json.dumps(r.to_json()) + "\n")


def load(path: Path) -> list[Record]:
    with path.open() as f:
        return [Record.from_json(json.loads(line)) for line in f if line.strip()]
