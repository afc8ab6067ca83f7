"""Client threads issuing random reads, writes, CAS, batch writes and counter increments over a
small key set, recording each operation in the history.

Keys come in three groups so the checker's components stay small (its search is exponential
in concurrency per component): registers (single-key ops only), batch keys (batch writes
over two or three of them, plus single-key ops), and the counter (increments and reads).
Every written value is unique (client and sequence number), so a read names its writer.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aspen.client import Client
from tests.chaos import counter_plugin
from tests.chaos.history import FAIL, INFO, OK, History, outcome_of_error
from tests.chaos.linearizability import BATCH, CAS, DELETE, GET, INCR, PUT, counter_value
from wire.errors import AspenError, ErrorCode

VALUE_TAIL_BYTES = (0, 16, 300, 4096, 70_000)  # 70 KB: over pysyncobj's old 64 KiB chunk size

REGISTER_KEYS = tuple(f"chaos/r{i}" for i in range(4))
BATCH_KEYS = tuple(f"chaos/b{i}" for i in range(3))
COUNTER_KEY = counter_plugin.COUNTER_KEY
ALL_KEYS = REGISTER_KEYS + BATCH_KEYS + (COUNTER_KEY,)
OPS_PER_CLIENT_MAX = 100_000


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    clients: int = 4
    think_s: tuple[float, float] = (0.005, 0.02)  # pause between a client's ops: bounded history size
    request_timeout_s: float = 5.0


class Worker:
    def __init__(self, client_id: int, client: Client, history: History, rng: random.Random,
                 config: WorkloadConfig) -> None:
        self.client_id = client_id
        self.client = client
        self.history = history
        self.rng = rng
        self.config = config
        self.seq = 0
        self.last_seen: dict[str, bytes | None] = {}  # a plausible CAS expectation per key
        self.crash: str | None = None  # an unexpected exception that stopped this client

    def run(self, stop: threading.Event) -> None:
        try:
            for _ in range(OPS_PER_CLIENT_MAX):
                if stop.is_set():
                    return
                self.one()
                stop.wait(self.rng.uniform(*self.config.think_s))
        except Exception as exc:  # a bug in the suite or a malformed answer: the run must fail, not thin out
            self.crash = f"{type(exc).__name__}: {exc}"

    def _value(self) -> bytes:
        # Unique (client and sequence number first) and binary after: what users store (random
        # bytes, often with every high bit set) is what has broken Raft transports before.
        self.seq += 1
        return b"c%d-%d:" % (self.client_id, self.seq) + self.rng.randbytes(self.rng.choice(VALUE_TAIL_BYTES))

    def one(self) -> None:
        r = self.rng.random()
        if r < 0.12:
            self.incr()
        elif r < 0.24:
            self.batch()
        else:
            key = self.rng.choice(REGISTER_KEYS + BATCH_KEYS + (COUNTER_KEY,) * (r < 0.3))
            if key == COUNTER_KEY:
                self.get(key)
                return
            pick = self.rng.random()
            if pick < 0.4:
                self.get(key)
            elif pick < 0.65:
                self.put(key)
            elif pick < 0.75:
                self.delete(key)
            else:
                self.cas(key)

    # Each op: invoke, call, classify, record. The callable returns the result to record.
    def _do(self, kind: str, keys: tuple[str, ...], args: tuple[Any, ...], call: Callable[[], Any]) -> None:
        op_id, invoke_s = self.history.invoke()
        try:
            result = call()
        except _CasMismatch as mismatch:
            self.history.complete(
                op_id, self.client_id, kind, keys, args, invoke_s, OK, (False, mismatch.actual)
            )
            return
        except (AspenError, OSError, TimeoutError) as exc:
            outcome = outcome_of_error(kind, exc)
            self.history.complete(
                op_id, self.client_id, kind, keys, args, invoke_s, outcome, None, str(exc)[:200]
            )
            if outcome == INFO:
                for key in keys:
                    self.last_seen.pop(key, None)
            return
        self.history.complete(op_id, self.client_id, kind, keys, args, invoke_s, OK, result)

    def get(self, key: str) -> None:
        def call() -> bytes | None:
            r = self.client.get(key)
            value = r["value"] if r["was_found"] else None
            self.last_seen[key] = value
            return value
        self._do(GET, (key,), (), call)

    def put(self, key: str) -> None:
        value = self._value()

        def call() -> None:
            self.client.put(key, value)
            self.last_seen[key] = value
        self._do(PUT, (key,), (value,), call)

    def delete(self, key: str) -> None:
        def call() -> None:
            self.client.delete(key)
            self.last_seen[key] = None
        self._do(DELETE, (key,), (), call)

    def cas(self, key: str) -> None:
        expected = self.last_seen.get(key) if self.rng.random() < 0.8 else None
        new = self._value()

        def call() -> tuple[bool, None]:
            try:
                self.client.cas(key, expected, new)
            except AspenError as exc:
                if exc.code != ErrorCode.CAS_FAILED:
                    raise
                d = exc.error.details
                actual = d.get("actual_value") if d.get("actual_found") else None
                self.last_seen[key] = actual
                raise _CasMismatch(actual) from None
            self.last_seen[key] = new
            return (True, None)
        self._do(CAS, (key,), (expected, new), call)

    def batch(self) -> None:
        keys = tuple(sorted(self.rng.sample(BATCH_KEYS, self.rng.randint(2, len(BATCH_KEYS)))))
        writes = tuple((k, None if self.rng.random() < 0.2 else self._value()) for k in keys)
        wire = [
            {"op": "Delete", "key": k} if v is None else {"op": "Set", "key": k, "value": v}
            for k, v in writes
        ]

        def call() -> None:
            self.client.batch(wire)
            self.last_seen.update(writes)
        self._do(BATCH, keys, writes, call)

    def incr(self) -> None:
        def call() -> int:
            value = counter_value(self.client.request(counter_plugin.REQUEST_TYPE)["value"])
            self.last_seen[COUNTER_KEY] = value.to_bytes(8, "little")
            return value
        self._do(INCR, (COUNTER_KEY,), (), call)


class _CasMismatch(Exception):
    """A CAS that completed without swapping: an ok op with result (False, actual)."""

    def __init__(self, actual: bytes | None) -> None:
        super().__init__("cas mismatch")
        self.actual = actual


def final_reads(
    client: Client, history: History, client_id: int, attempts_max: int = 20
) -> dict[str, bytes | None]:
    """Read every key once more, linearizably, after healing; recorded like any op, so the
    checker sees them. A read that fails is retried (bounded): reads change nothing."""
    out: dict[str, bytes | None] = {}
    for key in ALL_KEYS:
        for _ in range(attempts_max):
            op_id, invoke_s = history.invoke()
            try:
                r = client.get(key)
            except (AspenError, OSError, TimeoutError) as exc:
                history.complete(op_id, client_id, GET, (key,), (), invoke_s, FAIL, None, str(exc)[:200])
                continue
            value = r["value"] if r["was_found"] else None
            history.complete(op_id, client_id, GET, (key,), (), invoke_s, OK, value)
            out[key] = value
            break
        else:
            raise RuntimeError(f"final read of {key} failed {attempts_max} times")
    return out
