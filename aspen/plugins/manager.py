"""PluginManager: every node loads every enabled plugin of the replicated registry.

- The registry is the meta table `plugins` (name -> manifest + wasm_hash + reload_seq), changed
  only through Raft. Each node reconciles its loaded plugins against it whenever a registry
  entry commits (and every few seconds, as a safety net), fetching binaries it lacks from
  peers by BLAKE3 hash.
- Routing is an immutable RoutingTable swapped in one assignment (the guide's ArcSwap): a
  request sees the old table or the new one, never half of each; calls already running finish
  on the instance they started on, and a retired instance is shut down after its queue drains.
- Each plugin has one worker thread: its calls run one at a time, off the event loop, behind
  a bounded queue, so a slow plugin never stalls Raft, the KV path or other plugins.
- Timers fire `plugin_on_timer` on every node that runs the plugin; hook events are delivered
  through a bounded queue per plugin (a slow subscriber loses events, counted).
- Each plugin's log lines and trap reports on this node are kept in a bounded ring
  (aspen/plugins/logring.py) for `plugin logs`; a request for a plugin Failed on this node is
  forwarded once to a node where it is Ready (_forward).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.signing

from aspen.codes import LAYER_ERRORS
from aspen.manifest import Manifest
from aspen.plugins import plugin_table
from aspen.plugins.hooks import HOOK_DEPTH_MAX, HookEvent, subject_of
from aspen.plugins.logring import LogRing
from aspen.plugins.namespaces import KV_TYPES
from aspen.plugins.nodehost import NodeHost
from aspen.plugins.plugin_table import PluginRecord
from aspen.plugins.readgate import ReadGate, Waiting
from aspen.plugins.worker import PluginWorker
from aspen.server import Finish, Token
from aspen.services import NodeServices
from cluster import ReplicatedNode
from cluster.events import Subscription
from sandbox import PluginInstance, PluginState, Runtime, SandboxError, subject_matches
from sandbox.runtime import TRAP_LEVEL
from wire.errors import AspenError, ErrorCode

if TYPE_CHECKING:
    from aspen.barrier import Barrier

log = logging.getLogger("aspen.plugins")

# A request forwarded by another node (PluginManager._forward) names it in this field; such a
# request is never forwarded again (one hop), and a plugin sees the field.
FORWARDED_BY = "forwarded_by"
# Errors that say a forwarded request did not run on that node: this node answers NOT_READY.
NOT_SERVED = frozenset({"NOT_READY", "PLUGIN_FAILED", "UNKNOWN_REQUEST"})
FORWARD_STATUS_TTL_S = 1.0  # how long the other nodes' plugin states are trusted for forwarding
FORWARD_STATUS_TIMEOUT_S = 2.0
Forwarder = tuple[Callable[[], list[int]], Callable[..., Awaitable[dict[str, Any]]]]  # (peers, peer_request)
EVENT_QUEUE_MAX = 1024
RECONCILE_PERIOD_S = 2.0
HEALTH_PERIOD_S = 10.0


@dataclass
class Counters:
    events_delivered: int = 0
    events_suppressed: int = 0  # own writes and over-deep hook chains (the loop rule)


@dataclass(frozen=True)
class Loaded:
    manifest: Manifest
    record: bytes  # the registry value it was loaded from: a different value means reload
    instance: PluginInstance
    worker: PluginWorker
    host: NodeHost
    events: Subscription
    counters: Counters = field(default_factory=Counters)


@dataclass(frozen=True)
class RoutingTable:
    plugins: dict[str, Loaded] = field(default_factory=dict)
    by_type: dict[str, tuple[Loaded, ...]] = field(default_factory=dict)
    namespaced: tuple[Loaded, ...] = ()

    @classmethod
    def build(cls, plugins: dict[str, Loaded]) -> RoutingTable:
        ordered = sorted(plugins.values(), key=lambda p: (p.manifest.priority, p.manifest.name))
        by_type: dict[str, list[Loaded]] = {}
        for p in ordered:
            for t in p.manifest.handles:
                by_type.setdefault(t, []).append(p)
        return cls(
            plugins=dict(plugins),
            by_type={t: tuple(ps) for t, ps in by_type.items()},
            namespaced=tuple(
                p for p in ordered if p.manifest.kv_prefixes and KV_TYPES & set(p.manifest.handles)
            ),
        )


class PluginManager:
    def __init__(self, services: NodeServices, signing_key: nacl.signing.SigningKey, cache_dir: Path,
                 request_timeout_s: float) -> None:
        self.services = services
        self.replicated: ReplicatedNode = services.replicated
        self.signing_key = signing_key
        self.runtime = Runtime(cache_dir)
        self.timeout_s = request_timeout_s
        self.table = RoutingTable()
        self.load_errors: dict[str, str] = {}
        self.barrier: Barrier | None = None  # the node's (aspen/barrier.py): ABI v3's barrier_* functions
        self.logs: dict[str, LogRing] = {}  # per registered plugin: kept across its upgrades and reloads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconcile_lock = asyncio.Lock()
        self._reconcile_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._requests: set[asyncio.Task[None]] = set()  # requests being forwarded
        self._read_gate = ReadGate(self.replicated.barrier, request_timeout_s, self._post_current)
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._delivering: set[str] = set()
        self._registry_events: Subscription | None = None
        self._forwarder: Forwarder | None = None
        # plugin -> (until when, the ask of the other nodes' states): _ready_peer
        self._ready_peers_cache: dict[str, tuple[float, asyncio.Task[int | None]]] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._registry_events = self.replicated.events.subscribe(
            maxlen=EVENT_QUEUE_MAX, notify=lambda: loop.call_soon_threadsafe(self._on_registry_event)
        )
        self._tasks = [loop.create_task(self._reconcile_loop()), loop.create_task(self._health_loop())]
        self._reconcile_wanted.set()

    async def stop(self) -> None:
        for task in [*self._tasks, *self._requests, *(t for _, t in self._ready_peers_cache.values())]:
            task.cancel()
        self._read_gate.close()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        table, self.table = self.table, RoutingTable()
        for loaded in table.plugins.values():
            await self._retire(loaded)
        if self._registry_events is not None:
            self._registry_events.close()
        self.runtime.close()

    def request_reconcile(self) -> None:
        self._reconcile_wanted.set()

    def _on_registry_event(self) -> None:
        assert self._registry_events is not None
        for event in self._registry_events.drain():
            key = getattr(event, "key", None)
            if isinstance(key, str) and key.startswith("plugins/"):
                self._reconcile_wanted.set()

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_wanted.wait(), RECONCILE_PERIOD_S)
            self._reconcile_wanted.clear()
            try:
                await self.reconcile()
            except Exception:
                log.exception("plugin reconcile failed")

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_PERIOD_S)
            for loaded in list(self.table.plugins.values()):
                with contextlib.suppress(*LAYER_ERRORS, SandboxError):
                    await self._call(loaded, loaded.instance.health)

    # -- reconcile -------------------------------------------------------------------------

    def registry(self) -> dict[str, bytes]:
        return self.replicated.read(plugin_table.raw_records)

    async def reconcile(self) -> None:
        async with self._reconcile_lock:
            records = self.registry()
            current = self.table.plugins
            updated = dict(current)
            retired: list[Loaded] = []
            for name, raw in records.items():
                try:
                    rec = PluginRecord.decode(raw)
                except ValueError:
                    continue
                cur = current.get(name)
                if not rec.enabled:
                    if cur is not None:
                        retired.append(updated.pop(name))
                    continue
                if cur is not None and cur.record == raw:
                    continue
                if cur is not None:
                    # The new instance's plugin_init registers the timers it wants; the old
                    # instance's must not keep firing into it.
                    self._cancel_timers(name)
                try:
                    updated[name] = await self._load(name, raw, rec)
                    self.load_errors.pop(name, None)
                    if cur is not None:
                        retired.append(cur)
                except (*LAYER_ERRORS, SandboxError, ValueError) as exc:
                    # The old version (if any) keeps serving; the next reconcile tries again.
                    if self.load_errors.get(name) != str(exc):  # once per new reason, not per retry
                        self.logs.setdefault(name, LogRing()).append(TRAP_LEVEL, f"not loaded: {exc}")
                    self.load_errors[name] = str(exc)
                    log.warning("plugin %s not loaded: %s", name, exc)
            for name in current:
                if name not in records:
                    retired.append(updated.pop(name))
            for name in [n for n in self.logs if n not in records]:  # bounded by the registry
                del self.logs[name]
            for name in [n for n in self._ready_peers_cache if n not in records]:
                del self._ready_peers_cache[name]
            if (
                retired
                or updated.keys() != current.keys()
                or any(updated[n] is not current.get(n) for n in updated)
            ):
                self.table = RoutingTable.build(updated)  # the atomic swap
            for loaded in retired:
                await self._retire(loaded)

    async def _load(self, name: str, raw: bytes, rec: PluginRecord) -> Loaded:
        manifest = Manifest.from_json(rec.manifest_json())
        if manifest.wasm_hash is None:
            raise ValueError(f"registry entry {name} has no wasm_hash")
        wasm = await self.replicated.blob_sync.ensure(manifest.wasm_hash)
        loop = asyncio.get_running_loop()
        worker = PluginWorker(name, loop)
        ring = self.logs.setdefault(name, LogRing())
        host = NodeHost(name, self, self.services, self.signing_key, loop, self.timeout_s, ring)
        try:
            instance = await worker.submit(self.runtime.load, wasm, manifest.sandbox_config(), host)
            host.call_time_left_s = instance.call_time_left_s
            try:
                if manifest.permissions.get("kv_read"):
                    await self.replicated.barrier(self.timeout_s)
                await worker.submit(instance.init)
            except SandboxError as exc:
                log.warning("plugin %s failed to initialize: %s", name, exc)  # kept, shown as Failed
        except BaseException:
            worker.close()
            raise
        events = self.replicated.events.subscribe(
            maxlen=EVENT_QUEUE_MAX, notify=lambda: loop.call_soon_threadsafe(self._kick_delivery, name)
        )
        log.info("plugin %s %s loaded (%s)", name, manifest.version, instance.state)
        return Loaded(manifest, raw, instance, worker, host, events)

    async def _retire(self, loaded: Loaded) -> None:
        """Shut down a replaced or removed instance after the calls queued on it."""
        name = loaded.manifest.name
        if self.table.plugins.get(name) is None:
            self._cancel_timers(name)
        loaded.events.close()
        fut = loaded.worker.close(then=loaded.instance.shutdown)  # after the calls queued before it
        if fut is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(fut, 10)

    # -- calls -----------------------------------------------------------------------------

    async def _call(self, loaded: Loaded, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn on the plugin's worker. A plugin that may read KV gets a read barrier first,
        on the loop, batched with every other request's: its kv_get_value calls then read the
        local state, which is at least as new as the moment this call started (linearizable),
        without a Raft round trip per read inside the serialized plugin."""
        if loaded.manifest.permissions.get("kv_read"):
            await self.replicated.barrier(self.timeout_s)
        return await loaded.worker.submit(fn, *args)

    def route(self, rtype: str, request: dict[str, Any], native: bool) -> Loaded | None:
        """The plugin that serves this request, or None for the native handler / unknown.

        1. A KV request whose key (or scan prefix) lies inside a plugin's kv_prefixes, of a
           type that plugin handles, goes to that plugin: it owns its namespace.
        2. Otherwise native handlers come first.
        3. Otherwise the first plugin by priority (then name) whose `handles` names the type.
        """
        table = self.table
        if rtype in KV_TYPES and table.namespaced:
            key = request.get("key", request.get("prefix"))
            if isinstance(key, str):
                for loaded in table.namespaced:
                    if rtype in loaded.manifest.handles and key.startswith(loaded.manifest.kv_prefixes):
                        return loaded
        if native:
            return None
        candidates = table.by_type.get(rtype)
        return candidates[0] if candidates else None

    def handle(self, loaded: Loaded, request: dict[str, Any], finish: Finish, token: Token) -> None:
        """Serve a request with a plugin (aspen/server.py's Dispatch): handed to its worker,
        which answers through `finish`. A plugin that may read KV gets the read barrier first,
        shared by the requests of this loop turn (aspen/plugins/readgate.py). A plugin that is
        Failed here is asked on another node instead (_forward)."""
        state = loaded.instance.state
        if (
            state is not PluginState.READY
            and state is not PluginState.DEGRADED
            and self._forwarder is not None
            and FORWARDED_BY not in request
        ):
            self._spawn(self._forward(loaded, request, finish, token), finish, token)
        elif loaded.manifest.permissions.get("kv_read"):
            self._read_gate.add((loaded, request, finish, token))
        else:
            loaded.worker.post(loaded.instance.handle_request, (request,), finish, token)
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None], finish: Finish, token: Token) -> None:
        """Run a request's coroutine as a task that answers it, even when cancelled."""
        task = asyncio.get_running_loop().create_task(coro)
        self._requests.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._requests.discard(t)
            if t.cancelled():  # the node is stopping; also when the task never got to start
                finish(token, None, AspenError(ErrorCode.UNAVAILABLE, "the node is stopping", applied="no"))

        task.add_done_callback(done)

    def forward_through(self, forwarder: Forwarder) -> None:
        """How to reach the other nodes (PluginHandlers has the node's peer client)."""
        self._forwarder = forwarder

    async def _forward(self, loaded: Loaded, request: dict[str, Any], finish: Finish, token: Token) -> None:
        """The plugin is Failed (or not yet Ready) on this node but may be Ready on another:
        send the request, once, to a node where it is (_ready_peer). It carries FORWARDED_BY,
        so a node that cannot serve it after all answers NOT_READY rather than forwarding it
        again. An answer that proves the request did not run there (not ready, not loaded, no
        connection) is not passed on: then, as when no node is Ready, this node's own answer
        (NOT_READY) is the answer. A request never runs twice."""
        assert self._forwarder is not None
        _, peer_request = self._forwarder
        rtype = request["type"]
        fields = {**{k: v for k, v in request.items() if k != "type"}, FORWARDED_BY: self.replicated.node_id}
        peer = await self._ready_peer(loaded.manifest.name)
        if peer is not None:
            try:
                reply = await asyncio.wait_for(peer_request(peer, rtype, **fields), self.timeout_s)
            except AspenError as exc:
                did_not_run = exc.code in NOT_SERVED or (
                    exc.code == ErrorCode.UNAVAILABLE and exc.error.details.get("applied") == "no")
                if not did_not_run:
                    finish(token, None, exc)  # the plugin's own error, or an outcome we cannot know
                    return
            except OSError:
                pass  # no connection: it did not run there
            except TimeoutError:
                finish(
                    token,
                    None,
                    AspenError(
                        ErrorCode.TIMEOUT,
                        f"{rtype} forwarded to node {peer} (plugin "
                        f"{loaded.manifest.name} is {loaded.instance.state} here) got no "
                        f"answer within {self.timeout_s:g}s",
                        applied="unknown",
                    ),
                )
                return
            else:
                finish(token, reply, None)
                return
        loaded.worker.post(loaded.instance.handle_request, (request,), finish, token)

    async def _ready_peer(self, name: str) -> int | None:
        """Another node where plugin `name` is Ready or Degraded, or None. Asked of them all at
        once, at most once a FORWARD_STATUS_TTL_S per plugin and shared by the requests meanwhile (a
        Failed plugin's requests must not each cost a round of status requests); a node that
        does not answer within FORWARD_STATUS_TIMEOUT_S (down, partitioned) is left out, so a
        dead node is not where a request waits out its timeout."""
        now = time.monotonic()
        entry = self._ready_peers_cache.get(name)
        if entry is None or entry[0] <= now:
            entry = (
                now + FORWARD_STATUS_TTL_S,
                asyncio.get_running_loop().create_task(self._ask_ready(name)),
            )
            self._ready_peers_cache[name] = entry
        return await asyncio.shield(entry[1])  # a cancelled request leaves the shared ask running

    async def _ask_ready(self, name: str) -> int | None:
        """The first other node to answer that the plugin is Ready or Degraded there (the
        fastest one; a node that is down is not waited for once another has answered)."""
        assert self._forwarder is not None
        peers, peer_request = self._forwarder

        async def state_of(peer: int) -> tuple[int, Any]:
            try:
                reply = await asyncio.wait_for(peer_request(peer, "PluginLocalStatus", name=name),
                                               FORWARD_STATUS_TIMEOUT_S)
                return peer, reply["plugins"].get(name, {}).get("state")
            except (AspenError, OSError, TimeoutError, KeyError, AttributeError):
                return peer, None

        loop = asyncio.get_running_loop()
        asks = [loop.create_task(state_of(peer)) for peer in peers()]
        try:
            for answer in asyncio.as_completed(asks):
                peer, state = await answer
                if state in (PluginState.READY, PluginState.DEGRADED):
                    return peer
            return None
        finally:
            for ask in asks:
                ask.cancel()

    def _post_current(self, waiting: Waiting) -> None:
        """Past the read barrier: to the plugin's worker. An upgrade may have swapped the plugin
        in meanwhile and retired this instance: the request goes to the version serving now
        (old or new, never a failure). A refusal (a full queue) raises to the gate, which
        answers it."""
        loaded, request, finish, token = waiting
        current = self.table.plugins.get(loaded.manifest.name)
        if current is not None and request["type"] in current.manifest.handles:
            loaded = current
        loaded.worker.post(loaded.instance.handle_request, (request,), finish, token)

    # -- timers ----------------------------------------------------------------------------

    def schedule_timer(self, plugin: str, name: str, interval_ms: int, repeat: bool) -> None:
        assert self._loop is not None
        old = self._timers.pop((plugin, name), None)
        if old is not None:
            old.cancel()
        self._timers[(plugin, name)] = self._loop.call_later(
            interval_ms / 1000, self._fire_timer, plugin, name, interval_ms, repeat
        )

    def _cancel_timers(self, plugin: str) -> None:
        for key in [k for k in self._timers if k[0] == plugin]:
            self._timers.pop(key).cancel()

    def cancel_timer(self, plugin: str, name: str) -> None:
        handle = self._timers.pop((plugin, name), None)
        if handle is not None:
            handle.cancel()

    def _fire_timer(self, plugin: str, name: str, interval_ms: int, repeat: bool) -> None:
        self._timers.pop((plugin, name), None)
        if repeat:
            self.schedule_timer(plugin, name, interval_ms, repeat)
        loaded = self.table.plugins.get(plugin)
        if loaded is None or loaded.instance.state not in (PluginState.READY, PluginState.DEGRADED):
            return
        assert self._loop is not None
        task = self._loop.create_task(self._call(loaded, loaded.instance.on_timer, name))
        task.add_done_callback(_log_failure(f"timer {name} of plugin {plugin}"))

    # -- hook events -----------------------------------------------------------------------

    def _kick_delivery(self, name: str) -> None:
        if name in self._delivering:
            return
        loaded = self.table.plugins.get(name)
        if loaded is None:
            return
        self._delivering.add(name)
        assert self._loop is not None
        self._loop.create_task(self._deliver(loaded))

    async def _deliver(self, loaded: Loaded) -> None:
        name = loaded.manifest.name
        try:
            while True:
                batch = loaded.events.drain(64)
                if not batch:
                    return
                for event in batch:
                    hook = self._hook_event_for(loaded, event)
                    if hook is None:
                        continue
                    try:
                        await self._call(loaded, _deliver_one, loaded, hook)
                        loaded.counters.events_delivered += 1
                    except (*LAYER_ERRORS, SandboxError) as exc:
                        log.debug("plugin %s hook handler failed: %s", name, exc)
        finally:
            self._delivering.discard(name)
            if loaded.events.pending() and self.table.plugins.get(name) is loaded:
                self._kick_delivery(name)

    def _hook_event_for(self, loaded: Loaded, event: Any) -> HookEvent | None:
        patterns = loaded.instance.subscriptions
        if not patterns:
            return None
        mapped = subject_of(event.kind, event.key)
        if mapped is None:
            return None
        subject, key = mapped
        if not any(subject_matches(p, subject) for p in patterns):
            return None
        origin, depth = getattr(event, "origin", None), getattr(event, "depth", 0)
        if origin == loaded.manifest.name or depth >= HOOK_DEPTH_MAX:
            loaded.counters.events_suppressed += 1
            return None
        return HookEvent(subject, key, event.index, event.term, getattr(event, "revision", 0), depth)

    # -- status ----------------------------------------------------------------------------

    def local_logs(self, name: str, after_seq: int, since_ms: int, limit: int) -> dict[str, Any]:
        """This node's recent lines of plugin `name` (aspen/plugins/logring.py), and what was
        dropped: by the rate limit (since the plugin was last loaded) and out of the ring."""
        ring = self.logs.get(name)
        loaded = self.table.plugins.get(name)
        rate_dropped = loaded.instance.stats.logs.dropped_lines if loaded is not None else 0
        if ring is None:
            return {"lines": [], "last_seq": 0, "evicted_lines": 0, "skipped_lines": 0,
                    "rate_dropped_lines": rate_dropped}
        page = ring.read(after_seq, since_ms, limit)
        return {"lines": [e.to_wire() for e in page.entries], "last_seq": page.last_seq,
                "evicted_lines": page.evicted_lines, "skipped_lines": page.skipped_lines,
                "rate_dropped_lines": rate_dropped}

    def local_status(self, name: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for pname, loaded in self.table.plugins.items():
            if name is not None and pname != name:
                continue
            inst = loaded.instance
            out[pname] = {
                "version": loaded.manifest.version,
                "state": str(inst.state),
                "reason": inst.state_reason,
                **inst.stats.snapshot(),
                "queued": loaded.worker.pending(),
                "events_delivered": loaded.counters.events_delivered,
                "events_dropped": loaded.events.dropped,
                "events_suppressed": loaded.counters.events_suppressed,
                "timers": sorted(inst.timers),
                "subscriptions": list(inst.subscriptions),
            }
        for pname, error in self.load_errors.items():
            if (name is None or pname == name) and pname not in out:
                out[pname] = {"state": "NotLoaded", "reason": error}
        return out


def _deliver_one(loaded: Loaded, hook: HookEvent) -> None:
    """Runs on the plugin's worker thread: writes made meanwhile carry the next depth."""
    loaded.host.depth = hook.depth + 1
    try:
        loaded.instance.on_hook_event(hook.to_guest())
    finally:
        loaded.host.depth = 0


def _log_failure(what: str) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.debug("%s failed: %s", what, task.exception())

    return done

