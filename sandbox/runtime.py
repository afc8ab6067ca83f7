"""Runtime (engine, epoch ticker, module cache) and PluginInstance (one sandboxed plugin).

Limits that hold: every call gets `fuel_limit` fuel (wasmtime meters it and traps when it runs
out), an epoch deadline of `execution_timeout_s` (a ticker thread advances the engine's epoch,
so even a guest spinning in a loop without host calls is stopped, and host calls count), and
one memory budget (sandbox/budget.py: memory.grow and table.grow fail past their share of
memory_limit). Guest output is decoded within a bound (sandbox/decode.py). After any trap the
next call runs on a fresh instance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from time import perf_counter
from typing import Any

import blake3
import wasmtime

from sandbox import abi, limits
from sandbox.budget import MemoryBudget, ModuleShape, check_shape, module_shape
from sandbox.cryptofuncs import AEAD_IN_C, CryptoHostFunctions, answer_aead_in_c
from sandbox.decode import GUEST_BOUND
from sandbox.errors import SandboxCode, SandboxError
from sandbox.host_interface import Host
from sandbox.hostfuncs import GuestFault, HostFunctions
from sandbox.logs import LogLimiter
from sandbox.permissions import PluginConfig
from sandbox.raw import (
    FAULT,
    HOST_FAULT,
    HOST_TRAPPED,
    INVALID_OUTPUT,
    OK,
    TIMED_OUT,
    WASMTIME_VERSION,
    CallSite,
    EpochTicker,
    GuestTrap,
    RawMemory,
    StoreContext,
    define_host,
    func_address,
    trap_of,
)

log = logging.getLogger("aspen.sandbox")
TRAP_LEVEL = "trap"  # Host.log level of a failed call's report (a trap, fuel, timeout)

_VALTYPES = {abi.I32: wasmtime.ValType.i32, abi.I64: wasmtime.ValType.i64}


class PluginState(StrEnum):
    LOADING = "Loading"
    INITIALIZING = "Initializing"
    READY = "Ready"
    DEGRADED = "Degraded"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    FAILED = "Failed"


def _functype(sig: tuple[tuple[str, ...], tuple[str, ...]]) -> wasmtime.FuncType:
    params, results = sig
    return wasmtime.FuncType([_VALTYPES[p]() for p in params], [_VALTYPES[r]() for r in results])


def _sig_of(ty: wasmtime.FuncType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


_CACHE_MAGIC = b"ASPNCWS1"  # then blake3(wasm), blake3(artifact), the artifact


def _store_cached(path: Path, wasm_digest: bytes, artifact: bytes) -> None:
    """Write through a temp file of its own (concurrent compiles of one wasm each write whole
    files) and rename: a reader sees the old file, the new one, or none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_CACHE_MAGIC + wasm_digest + blake3.blake3(artifact).digest() + artifact)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Runtime:
    """One wasmtime engine for many plugins; thread-safe to load from any thread."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        # Linear memory never moves when it grows (it grows in place inside its reservation, or
        # memory.grow fails): RawMemory can keep the base address instead of asking each access.
        config.memory_may_move = False
        config.memory_reservation = 4 * 1024**3
        # One memory budget per plugin (sandbox/budget.py): wasmtime limits each memory on its
        # own, so every extra memory is a whole memory_limit more (17 memories under a 64 MiB
        # limit held 1,040 MiB). The GC heap is such a memory too (measured: 64 MiB of arrays on
        # top of a 64 MiB linear memory), and exceptions allocate in it: all three are refused
        # at compile, as an invalid module.
        config.wasm_multi_memory = False
        config.wasm_gc = False
        config.wasm_exceptions = False
        self.engine = wasmtime.Engine(config)
        self.cache_dir = cache_dir
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        self._ticker = EpochTicker(self.engine, limits.EPOCH_TICK_S)
        self._ftypes = {name: _functype(sig) for name, sig in abi.IMPORTS.items()}

    def close(self) -> None:
        self._ticker.stop()

    # -- modules ---------------------------------------------------------------------------

    def compile(self, wasm: bytes) -> wasmtime.Module:
        """Validate and compile (or load from the cache) a plugin module."""
        return self._compile(wasm)[0]

    def _compile(self, wasm: bytes) -> tuple[wasmtime.Module, ModuleShape]:
        if len(wasm) > limits.WASM_MAX_BYTES:
            raise SandboxError(
                SandboxCode.MODULE_TOO_LARGE, f"wasm of {len(wasm)} bytes is over {limits.WASM_MAX_BYTES}"
            )
        shape = module_shape(wasm)
        if shape is not None:  # before wasmtime's validation, whose refusal would say less
            check_shape(shape)
        module = self._cached(wasm)
        if shape is None:
            raise SandboxError(SandboxCode.INVALID_MODULE, "the module's sections could not be read")
        self._check_imports(module)
        self._check_exports(module)
        return module, shape

    def _cached(self, wasm: bytes) -> wasmtime.Module:
        digest = blake3.blake3(wasm).digest()
        path = self.cache_dir / f"{digest.hex()}-wasmtime{WASMTIME_VERSION}.cwasm" if self.cache_dir else None
        if path is not None:
            module = self._load_cached(path, digest)
            if module is not None:
                return module
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise SandboxError(SandboxCode.INVALID_MODULE, f"not a valid wasm module: {exc}") from None
        if path is not None:
            _store_cached(path, digest, module.serialize())
        return module

    def _load_cached(self, path: Path, wasm_digest: bytes) -> wasmtime.Module | None:
        """Native code from the cache, only if the file names this wasm and is whole: a cached
        artifact is machine code, so a damaged or swapped file must never reach deserialize."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        head = len(_CACHE_MAGIC)
        artifact = raw[head + 64:]
        if (raw[:head] != _CACHE_MAGIC or raw[head:head + 32] != wasm_digest
                or raw[head + 32:head + 64] != blake3.blake3(artifact).digest()):
            log.warning("compiled-module cache file %s does not match its wasm: compiling again", path.name)
            path.unlink(missing_ok=True)
            return None
        try:
            return wasmtime.Module.deserialize(self.engine, artifact)
        except wasmtime.WasmtimeError:
            path.unlink(missing_ok=True)  # another wasmtime's artifact: compile again
            return None

    def _check_imports(self, module: wasmtime.Module) -> None:
        for imp in module.imports:
            where = f"{imp.module}.{imp.name}"
            if imp.module != abi.IMPORT_MODULE or imp.name not in abi.IMPORTS:
                raise SandboxError(
                    SandboxCode.UNKNOWN_IMPORT,
                    f"module imports {where}, which is not in the Aspen host API (no WASI, no other modules)",
                )
            ty = imp.type
            if not isinstance(ty, wasmtime.FuncType) or _sig_of(ty) != abi.IMPORTS[imp.name]:
                raise SandboxError(SandboxCode.UNKNOWN_IMPORT, f"import {where} has the wrong signature")

    def _check_exports(self, module: wasmtime.Module) -> None:
        exports = {e.name: e.type for e in module.exports}
        for name in abi.REQUIRED_EXPORTS:
            if name not in exports:
                raise SandboxError(SandboxCode.MISSING_EXPORT, f"module does not export {name!r}")
        if not isinstance(exports["memory"], wasmtime.MemoryType):
            raise SandboxError(SandboxCode.MISSING_EXPORT, "export 'memory' is not a memory")
        expected = {**abi.LIFECYCLE_EXPORTS, abi.EXPORT_ALLOC: ((abi.I32,), (abi.I32,)),
                    abi.EXPORT_FREE: ((abi.I32, abi.I32), ())}
        for name, sig in expected.items():
            ty = exports.get(name)
            if ty is not None and (not isinstance(ty, wasmtime.FuncType) or _sig_of(ty) != sig):
                raise SandboxError(SandboxCode.MISSING_EXPORT, f"export {name!r} has the wrong signature")

    def load(self, wasm: bytes, config: PluginConfig, host: Host) -> PluginInstance:
        """Compile, instantiate and return a plugin (state Loading; call init() next)."""
        module, shape = self._compile(wasm)
        return PluginInstance(
            self, module, config, host, MemoryBudget.split(config.memory_limit_bytes, shape.globals)
        )


@dataclass
class PluginStats:
    calls: int = 0
    errors: int = 0
    traps: int = 0
    timeouts: int = 0
    fuel_exhausted: int = 0
    fuel_used: int = 0
    instantiations: int = 0
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=limits.LATENCY_SAMPLES))
    logs: LogLimiter = field(default_factory=LogLimiter)  # its lines dropped by the rate limit

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "errors": self.errors, "traps": self.traps, "timeouts": self.timeouts,
            "fuel_exhausted": self.fuel_exhausted, "fuel_used": self.fuel_used,
            "instantiations": self.instantiations,
            "log_lines_dropped": self.logs.dropped_lines, "log_bytes_dropped": self.logs.dropped_bytes,
            "p50_ms": round(self.percentile_ms(0.5), 3), "p99_ms": round(self.percentile_ms(0.99), 3),
        }


class _Instance:
    """One wasmtime store + instance; replaced after a trap."""

    def __init__(self, runtime: Runtime, module: wasmtime.Module, config: PluginConfig, funcs: HostFunctions,
                 budget: MemoryBudget) -> None:
        self.store = wasmtime.Store(runtime.engine)
        self.store.set_limits(memory_size=budget.memory_bytes, table_elements=budget.table_elements,
                              instances=1, tables=limits.TABLES_MAX, memories=1)
        self.store_context = StoreContext(self.store)
        # Instantiation runs data initializers and any start function: bounded like a call.
        self.store_context.set_fuel(config.fuel_limit)
        self.store_context.set_epoch_deadline(max(1, int(config.execution_timeout_s / limits.EPOCH_TICK_S)))
        linker = wasmtime.Linker(runtime.engine)
        me = weakref.ref(self)
        hosts = {
            name: define_host(linker, abi.IMPORT_MODULE, name, runtime._ftypes[name], getattr(funcs, name),
                              _host_failure(me, name))
            for name in abi.IMPORTS
        }
        if config.permissions.crypto:
            for name in AEAD_IN_C:
                # Only the stock methods: the C path does what they do, and nothing a subclass adds.
                if getattr(type(funcs), name) is getattr(CryptoHostFunctions, name):
                    answer_aead_in_c(name, hosts[name].address)
        try:
            instance = linker.instantiate(self.store, module)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise SandboxError(SandboxCode.INVALID_MODULE, f"instantiation failed: {exc}") from None
        self.instance = instance
        exports = instance.exports(self.store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.memory = RawMemory(memory, self.store_context)
        funcs.memory = self.memory
        funcs.store = self.store_context  # host functions that do a guest's work charge its fuel
        # Export name -> the address CallSite.call takes; the Func objects stay alive with the store.
        self.funcs: dict[str, int] = {}
        self._exports: list[wasmtime.Func] = []
        for name in abi.LIFECYCLE_EXPORTS:
            f = exports.get(name)
            if isinstance(f, wasmtime.Func):
                self._exports.append(f)
                self.funcs[name] = func_address(f)
        alloc, free = exports[abi.EXPORT_ALLOC], exports.get(abi.EXPORT_FREE)
        assert isinstance(alloc, wasmtime.Func)
        self.inner_trap_code: object | None = None  # a host function's allocator trap (_host_failure)
        self.site = CallSite(
            self.store,
            self.store_context,
            memory,
            alloc,
            free if isinstance(free, wasmtime.Func) else None,
            limits.GUEST_OUTPUT_MAX_BYTES,
            GUEST_BOUND.as_tuple(),
            runtime._ticker,
        )
        self.site.bind(list(hosts.values()))


def _host_failure(inst: weakref.ref[_Instance], name: str) -> Callable[[int, Any], str]:
    """The trap message for a failed call of host function `name` (sandbox/_guestcall.c).

    It holds its instance weakly: the instance's CallSite holds it, and a strong reference back
    would leave every dropped instance (and its 4 GiB memory reservation) to the cycle
    collector instead of freeing it at once."""

    def failed(kind: int, value: Any) -> str:
        if kind == HOST_FAULT:  # the allocator returned a pointer outside memory
            return f"{name}: {value}"
        if kind == HOST_TRAPPED:  # the guest's allocator trapped (fuel, timeout, bug) under us
            exc = trap_of(value)
            # The trap we return carries no code: remember it, so running out of fuel or time
            # inside the allocator is still reported as FUEL_EXHAUSTED or TIMEOUT.
            owner = inst()
            if owner is not None:
                owner.inner_trap_code = exc.trap_code
            return f"{name}: {_trap_cause(str(exc))}"
        if isinstance(value, GuestFault):  # the guest passed memory it does not own
            return f"{name}: {value}"
        log.error("host function %s failed", name, exc_info=value)
        return f"{name}: host error {type(value).__name__}"

    return failed


class PluginInstance:
    """A plugin: its config, its current wasm instance, its lifecycle state and stats.

    Calls are serialized (one store is not thread-safe); callers from many threads are fine.
    """

    def __init__(self, runtime: Runtime, module: wasmtime.Module, config: PluginConfig, host: Host,
                 budget: MemoryBudget) -> None:
        self.runtime = runtime
        self.module = module
        self.config = config
        self.budget = budget
        self.host = host
        self.state = PluginState.LOADING
        self.stats = PluginStats()
        self.state_reason = ""
        self._lock = threading.Lock()
        self._funcs = HostFunctions(config, host, self.stats.logs)
        self._failures: deque[float] = deque(maxlen=limits.FAILURES_TO_FAIL)
        self._inst: _Instance | None = None
        self._timeout_ticks = max(1, int(config.execution_timeout_s / limits.EPOCH_TICK_S))
        self._fuel_limit = config.fuel_limit
        self._instantiate()

    # -- public ----------------------------------------------------------------------------

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return tuple(self._funcs.subscriptions)

    @property
    def timers(self) -> dict[str, tuple[int, bool]]:
        return dict(self._funcs.timers)

    def call_time_left_s(self) -> float:
        """How long the call running now may still take. Its timeout counts host calls too, so
        a Host that waits (for Raft, a peer) bounds the wait by this, from the plugin's thread."""
        inst = self._inst
        if inst is None:
            return self.config.execution_timeout_s
        return inst.site.ticks_left() * limits.EPOCH_TICK_S

    def info(self) -> dict[str, Any]:
        with self._lock:
            out = self._call_value("plugin_info")
        if not isinstance(out, dict):
            raise SandboxError(SandboxCode.INVALID_RESPONSE, "plugin_info must return a msgpack map")
        return out

    def init(self) -> None:
        """Run plugin_init; Ready on success, Failed (and raise) on failure."""
        with self._lock:
            self._set_state(PluginState.INITIALIZING)
            try:
                self._run_init()
            except SandboxError as exc:
                self._set_state(PluginState.FAILED, f"plugin_init failed: {exc.message}")
                raise
            self._set_state(PluginState.READY)

    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self.state not in (PluginState.READY, PluginState.DEGRADED):
                return _error_response(SandboxCode.NOT_READY, f"plugin {self.config.name} is {self.state}")
            try:
                out = self._call_value("handle_request", abi.pack(request))
            except SandboxError as exc:
                return _error_response(exc.code, exc.message)
        if not isinstance(out, dict) or not isinstance(out.get("type"), str):
            self.stats.errors += 1
            return _error_response(
                SandboxCode.INVALID_RESPONSE, "handle_request must return a map with a 'type'"
            )
        return out

    def on_timer(self, name: str) -> None:
        self._event_call("plugin_on_timer", abi.pack(name))

    def on_hook_event(self, event: dict[str, Any]) -> None:
        self._event_call("plugin_on_hook_event", abi.pack(event))

    def health(self) -> bool:
        """Run plugin_health (if exported): Ready when healthy, Degraded when not."""
        with self._lock:
            if self.state not in (PluginState.READY, PluginState.DEGRADED):
                return False
            if self._inst is None or "plugin_health" not in self._inst.funcs:
                return True
            try:
                out = self._call_value("plugin_health")
                healthy = (
                    out is None or out is True or (isinstance(out, dict) and out.get("healthy", True) is True)
                )
                reason = (
                    "" if healthy else str(out.get("message", "unhealthy") if isinstance(out, dict) else out)
                )
            except SandboxError as exc:
                healthy, reason = False, exc.message
            if self.state != PluginState.FAILED:
                self._set_state(PluginState.READY if healthy else PluginState.DEGRADED, reason)
            return healthy

    def shutdown(self) -> None:
        """Run plugin_shutdown within a bound, then release the instance."""
        with self._lock:
            if self.state in (PluginState.STOPPED,):
                return
            was_running = self.state in (PluginState.READY, PluginState.DEGRADED)
            self._set_state(PluginState.STOPPING)
            if was_running and self._inst is not None and "plugin_shutdown" in self._inst.funcs:
                try:
                    self._call_value("plugin_shutdown", timeout_s=limits.SHUTDOWN_TIMEOUT_S)
                except SandboxError as exc:
                    log.warning("plugin %s: plugin_shutdown failed: %s", self.config.name, exc.message)
            self._inst = None
            self._set_state(PluginState.STOPPED)

    # -- internals -------------------------------------------------------------------------

    def _set_state(self, state: PluginState, reason: str = "") -> None:
        if state != self.state:
            log.info("plugin %s: %s -> %s %s", self.config.name, self.state, state, reason)
            if state == PluginState.FAILED:
                self.host.log(self.config.name, TRAP_LEVEL, f"Failed: {reason}")
        self.state = state
        self.state_reason = reason

    def _instantiate(self) -> None:
        self._inst = _Instance(self.runtime, self.module, self.config, self._funcs, self.budget)
        self.stats.instantiations += 1

    def _run_init(self) -> None:
        assert self._inst is not None
        if "plugin_init" in self._inst.funcs:
            out = self._call_value("plugin_init")
            if isinstance(out, dict) and out.get("type") == "Error":
                raise SandboxError(
                    SandboxCode.PLUGIN_TRAP, str(out.get("message", "plugin_init reported an error"))
                )

    def _event_call(self, export: str, payload: bytes) -> None:
        with self._lock:
            if self.state not in (PluginState.READY, PluginState.DEGRADED):
                raise SandboxError(SandboxCode.NOT_READY, f"plugin {self.config.name} is {self.state}")
            if self._inst is not None and export not in self._inst.funcs:
                return
            self._call_value(export, payload)

    def _call_value(self, export: str, payload: bytes | None = None, timeout_s: float | None = None) -> Any:
        """Call an export (input as msgpack bytes), decode its msgpack output. Holds the lock.
        The C call path has walked the output: it decodes within sandbox/decode.py's bound."""
        raw = self._call_raw(export, payload, timeout_s)
        if raw is None:
            return None
        try:
            return abi.unpack(raw)
        except Exception:
            self.stats.errors += 1
            raise SandboxError(
                SandboxCode.INVALID_RESPONSE, f"{export} returned bytes that are not msgpack"
            ) from None

    def _call_raw(self, export: str, payload: bytes | None, timeout_s: float | None) -> bytes | None:
        if self._inst is None:
            if self.state == PluginState.FAILED:
                raise SandboxError(
                    SandboxCode.PLUGIN_FAILED, f"plugin {self.config.name} has failed: {self.state_reason}"
                )
            self._instantiate()
            if self.state != PluginState.INITIALIZING:
                self._run_init()  # a fresh instance after a trap starts as a new plugin would
        inst = self._inst
        assert inst is not None
        func = inst.funcs.get(export)
        if func is None:
            raise SandboxError(SandboxCode.MISSING_EXPORT, f"plugin does not export {export}")
        fuel = self._fuel_limit
        ticks = self._timeout_ticks if timeout_s is None else max(1, int(timeout_s / limits.EPOCH_TICK_S))
        stats = self.stats
        stats.calls += 1
        self._funcs.panic = None
        started = perf_counter()
        status, out, fuel_left = inst.site.call(func, payload, fuel, ticks)
        stats.latencies_s.append(perf_counter() - started)
        stats.fuel_used += fuel - fuel_left
        if status == INVALID_OUTPUT:  # the guest's error, not a trap: its instance is fine
            stats.errors += 1
            raise SandboxError(SandboxCode.INVALID_RESPONSE, f"{export} returned {out}")
        if status != OK:
            failure = GuestFault(out) if status == FAULT else trap_of(out)
            if status == TIMED_OUT:
                failure.trap_code = wasmtime.TrapCode.INTERRUPT
            elif isinstance(failure, GuestTrap) and inst.inner_trap_code is not None:
                failure.trap_code = inst.inner_trap_code
            self._on_trap(failure)
        return out

    def _on_trap(self, exc: Exception) -> None:
        """Classify, count, drop the instance; Failed after repeated failures. Always raises."""
        self.stats.errors += 1
        code_attr = getattr(exc, "trap_code", None)
        if code_attr == wasmtime.TrapCode.OUT_OF_FUEL:
            self.stats.fuel_exhausted += 1
            error = SandboxError(SandboxCode.FUEL_EXHAUSTED, f"plugin used all {self.config.fuel_limit} fuel")
        elif code_attr == wasmtime.TrapCode.INTERRUPT:
            self.stats.timeouts += 1
            error = SandboxError(
                SandboxCode.TIMEOUT,
                f"plugin ran past its {self.config.execution_timeout_s:g}s execution timeout",
            )
        elif code_attr == wasmtime.TrapCode.UNREACHABLE and self._funcs.panic is not None:
            # A Rust panic: the SDK's hook logged where and why just before the abort's trap.
            self.stats.traps += 1
            error = SandboxError(SandboxCode.PLUGIN_TRAP, self._funcs.panic)
        else:
            self.stats.traps += 1
            error = SandboxError(SandboxCode.PLUGIN_TRAP, f"plugin trapped: {_trap_cause(str(exc))[:500]}")
        self._inst = None  # the next call gets a clean instance
        log.warning("plugin %s: %s", self.config.name, error.message)
        # Also to the plugin's own log (a node keeps it for `aspen-cli plugin logs`): the node's
        # log line above is written already, so level "trap" is not logged again.
        self.host.log(self.config.name, TRAP_LEVEL, f"{error.code}: {error.message}")
        now = time.monotonic()
        self._failures.append(now)
        if (
            len(self._failures) >= limits.FAILURES_TO_FAIL
            and now - self._failures[0] <= limits.FAILURE_WINDOW_S
        ):
            self._set_state(
                PluginState.FAILED,
                f"{limits.FAILURES_TO_FAIL} traps or timeouts within {limits.FAILURE_WINDOW_S:g}s; last: "
                f"{error.message}",
            )
        raise error


def _trap_cause(text: str) -> str:
    """The line that says why: wasmtime puts a backtrace first and the cause after "Caused by:"."""
    lines = [line.strip() for line in text.splitlines()]
    if "Caused by:" in lines:
        cause = [line for line in lines[lines.index("Caused by:") + 1:] if line]
        if cause:
            return cause[0]
    return lines[0] if lines else "no message"


def _error_response(code: SandboxCode | str, message: str) -> dict[str, Any]:
    return {"type": "Error", "code": str(code), "message": message}
