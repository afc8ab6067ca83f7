"""NodeHost: the sandbox's Host interface, implemented over this node.

A plugin runs on its own worker thread; these methods run there and wait (bounded) for the
event loop to do the cluster work. KV reads are linearizable (a log barrier before each plugin
call, then local reads) and writes go through Raft like any client's. Writes are tagged with the plugin's name
(and the
hook depth it is handling) in the log, for the loop rule in aspen/plugins/hooks.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import nacl.signing

from aspen.codes import LAYER_ERRORS, wire_error
from aspen.plugins.logring import LogRing
from aspen.services import NodeServices
from sandbox import HostError, SandboxCode
from sandbox.runtime import TRAP_LEVEL

T = TypeVar("T")
log = logging.getLogger("aspen.plugins")
_LEVELS = {"debug": logging.DEBUG, "warn": logging.WARNING}


class Timers(Protocol):
    """What a NodeHost needs of the plugin manager (PluginManager is one): its timers, which it
    schedules and cancels on the event loop."""

    def schedule_timer(self, plugin: str, name: str, interval_ms: int, repeat: bool) -> None: ...
    def cancel_timer(self, plugin: str, name: str) -> None: ...


class NodeHost:
    def __init__(self, plugin: str, manager: Timers, services: NodeServices,
                 signing_key: nacl.signing.SigningKey, loop: asyncio.AbstractEventLoop, timeout_s: float,
                 ring: LogRing) -> None:
        self.plugin = plugin
        self.ring = ring  # the plugin's lines on this node, for `aspen-cli plugin logs`
        self.manager = manager
        self.services = services
        self.replicated = services.replicated
        self.signing_key = signing_key
        self.loop = loop
        self.timeout_s = timeout_s
        self.depth = 0  # hook depth of the event being handled (0 outside hook handlers)
        self._hlc_ms = 0
        # The running plugin call's time left (PluginInstance.call_time_left_s), once loaded.
        self.call_time_left_s: Callable[[], float] | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        # The plugin's execution timeout counts host calls, so waiting past it would only keep
        # the plugin's worker (and its queue) from the next call: wait no longer than it has.
        wait_s = self.timeout_s + 1
        if self.call_time_left_s is not None:
            wait_s = min(wait_s, self.call_time_left_s())
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result(wait_s)
        except LAYER_ERRORS as exc:
            error = wire_error(exc)
            raise HostError(str(error.code), error.message) from None
        except TimeoutError:
            raise HostError("TIMEOUT", f"the node did not answer within {wait_s:.3f}s") from None

    async def _write(self, op: list[Any]) -> dict[str, Any]:
        # Tagged in the log itself, so every node knows this plugin wrote it, at what depth.
        body, index = await self.services.commit_at(["tagged", self.plugin, self.depth, op])
        # Read-your-writes inside the plugin: on a follower, wait for the local apply too.
        await self.replicated.wait_applied(index, self.timeout_s)
        return body

    def _read(self, fn: Any) -> Any:
        # The manager put a read barrier before this call (aspen/plugins/readgate.py): the local
        # state is at least as new as the request, so a local read is linearizable.
        return self.replicated.read(fn)

    # -- KV --------------------------------------------------------------------------------

    def barrier_key(self) -> bytes:
        barrier = self.manager.barrier
        if barrier is None:
            raise HostError(SandboxCode.SEALED, "this node has no barrier")
        return barrier.key()

    def kv_get(self, key: str) -> bytes | None:
        entry = self._read(lambda s: s.get(key))
        return None if entry is None else entry.value

    def kv_put(self, key: str, value: bytes) -> None:
        self._run(self._write(["put", key, value]))

    def kv_delete(self, key: str) -> bool:
        return bool(self._run(self._write(["del", key]))["deleted"])

    def kv_scan(self, prefix: str, limit: int) -> list[tuple[str, bytes]]:
        page = self._read(lambda s: s.scan(prefix, limit, None))
        return [(k, e.value) for k, e in page.entries]

    def kv_cas(self, key: str, expected: bytes | None, new: bytes) -> tuple[bool, bytes | None]:
        try:
            self._run(self._write(["cas", key, expected, new]))
            return True, None
        except HostError as exc:
            if exc.code != "CAS_FAILED":
                raise
        entry = self._read(lambda s: s.get(key))
        return False, None if entry is None else entry.value

    def kv_batch(self, ops: list[tuple[str, str, bytes | None]]) -> None:
        log_ops = [["put", k, v] if kind == "set" else ["del", k] for kind, k, v in ops]
        self._run(self._write(["batch", log_ops]))

    # -- blobs -----------------------------------------------------------------------------

    def blob_exists(self, blob_hash: str) -> bool:
        return self._run(self.services.has_blob(blob_hash))

    def blob_get(self, blob_hash: str) -> bytes | None:
        return self._run(self.services.get_blob(blob_hash))

    def blob_put(self, data: bytes) -> str:
        return self._run(self.services.put_blob(data)).hash

    # -- cluster and crypto ----------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.replicated.is_leader()

    def leader_id(self) -> int | None:
        return self.replicated.leader_id()

    def node_id(self) -> int:
        return self.replicated.node_id

    def sign(self, data: bytes) -> bytes:
        return self.signing_key.sign(data).signature

    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    # -- timers, hooks, logs, clocks -------------------------------------------------------

    def schedule_timer(self, plugin: str, name: str, interval_ms: int, repeat: bool) -> None:
        self.loop.call_soon_threadsafe(self.manager.schedule_timer, plugin, name, interval_ms, repeat)

    def cancel_timer(self, plugin: str, name: str) -> bool:
        self.loop.call_soon_threadsafe(self.manager.cancel_timer, plugin, name)
        return True

    def subscriptions_changed(self, plugin: str, patterns: tuple[str, ...]) -> None:
        pass  # the manager reads the instance's subscriptions when it delivers

    def log(self, plugin: str, level: str, message: str) -> None:
        self.ring.append(level, message)
        if level != TRAP_LEVEL:  # the sandbox has logged its trap reports to the node's log itself
            log.log(_LEVELS.get(level, logging.INFO), "[%s] %s", plugin, message)

    def hlc_now_ms(self) -> int:
        # Monotonic per node even if the wall clock steps back.
        self._hlc_ms = max(int(time.time() * 1000), self._hlc_ms)
        return self._hlc_ms
