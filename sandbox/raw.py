"""Thin wrappers over wasmtime's C API: the fast path for calls both ways.

wasmtime-py's generic `Func.__call__` spends ~27 us a call looking up types in Python. Calls
into the guest go through sandbox/_guestcall.c instead: one C call per plugin call sets the
fuel and the epoch deadline, copies the input in through aspen_alloc, runs the export through
wasmtime_func_call_unchecked, copies the output out and frees it (through ctypes those were six
foreign calls of 0.5 to 1 us each). Calls from the guest (host functions) go through a C
trampoline on the unchecked callback API, which hands it the raw value array. Type safety comes from
the import and export signature checks done once at load (sandbox/runtime.py).

Guest code holds the GIL for at most one epoch tick and then gives it up (a guest may run for
seconds; the event loop must keep going): see sandbox/_guestcall.c. The short bookkeeping calls
made from Python (fuel and epoch deadline at instantiation, memory size) go through a PyDLL
handle that keeps the GIL: releasing it costs a hand-off to whatever thread wants it next, and
on a busy node that wait, not the call, is the price.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from ctypes import POINTER, addressof, c_size_t, c_ubyte, c_uint64, c_void_p
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import wasmtime
from wasmtime import _bindings as _b
from wasmtime import _ffi as ffi

from sandbox import _guestcall

# This file is the one that reaches into wasmtime-py's private members (the library handle, its
# ctypes types, Store._context, Func._func, Memory._memory, Trap/WasmtimeError._from_ptr) and
# hands wasmtime C API addresses to sandbox/_guestcall.c; the rest of the sandbox uses the
# public API. A release that changed one would fail later, in ways that look like guest bugs:
# refuse to import instead (pyproject.toml pins the major version).
WASMTIME_WRITTEN_FOR = "50"  # major version
WASMTIME_VERSION = metadata.version("wasmtime")  # compiled modules are only valid for the same version
_PRIVATE = ((_b, "dll"), (ffi, "wasm_trap_t"), (ffi, "wasmtime_error_t"), (wasmtime.Store, "_context"),
            (wasmtime.Trap, "_from_ptr"), (wasmtime.WasmtimeError, "_from_ptr"))
if WASMTIME_VERSION.split(".")[0] != WASMTIME_WRITTEN_FOR or not all(hasattr(o, n) for o, n in _PRIVATE):
    raise ImportError(f"sandbox/raw.py relies on wasmtime-py {WASMTIME_WRITTEN_FOR}.x's internals; "
                      f"wasmtime {WASMTIME_VERSION} is installed (pyproject.toml pins the version)")

# Same library, second handle: functions from it keep the GIL during the call (see above).
_GIL_KEEPING = ctypes.PyDLL(_b.dll._name)


def _bind(name: str, restype: Any, argtypes: list[Any] | None, keep_gil: bool = False) -> Any:
    # A fresh function object: wasmtime-py's own binding keeps its types.
    func = (_GIL_KEEPING if keep_gil else _b.dll)[name]
    func.restype = restype
    func.argtypes = argtypes
    return func


# argtypes None: every caller passes ctypes instances (c_void_p, c_uint64), never bare ints,
# which ctypes would pass as 32-bit C ints.
_set_fuel = _bind("wasmtime_context_set_fuel", c_void_p, None, keep_gil=True)
_get_fuel = _bind("wasmtime_context_get_fuel", c_void_p, None, keep_gil=True)
_set_epoch_deadline = _bind("wasmtime_context_set_epoch_deadline", None, None, keep_gil=True)
_memory_data = _bind("wasmtime_memory_data", c_void_p, [c_void_p, c_void_p], keep_gil=True)
_memory_size = _bind("wasmtime_memory_data_size", c_size_t, [c_void_p, c_void_p], keep_gil=True)
# A host function's failure (sandbox/_guestcall.c, define_host): (kind, value) -> trap message.
HostFailure = Callable[[int, Any], str]
HOST_RAISED, HOST_TRAPPED, HOST_FAULT = _guestcall.HOST_RAISED, _guestcall.HOST_TRAPPED, _guestcall.HOST_FAULT


class GuestTrap(Exception):
    """The guest trapped; `trap_code` tells fuel exhaustion and interrupts from the rest."""

    def __init__(self, message: str, trap_code: object | None) -> None:
        super().__init__(message)
        self.trap_code = trap_code


def _raise_failure(error: int | None, trap: int | None) -> None:
    if trap:
        t = wasmtime.Trap._from_ptr(ctypes.cast(trap, POINTER(ffi.wasm_trap_t)))
        raise GuestTrap(t.message, t.trap_code)
    err = wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, POINTER(ffi.wasmtime_error_t)))
    raise GuestTrap(str(err), None)


def context_address(store: wasmtime.Store) -> int:
    return ctypes.cast(store._context(), c_void_p).value or 0


class StoreContext:
    """A store's context pointer as a ctypes object, with the per-call limit setters."""

    __slots__ = ("_deadline", "_fuel_in", "_fuel_out", "address", "ptr")

    def __init__(self, store: wasmtime.Store) -> None:
        self.address = context_address(store)
        self.ptr = c_void_p(self.address)
        # Reused argument and result cells: no ctypes object is made per call.
        self._fuel_in = c_uint64()
        self._fuel_out = c_uint64()
        self._deadline = c_uint64()

    def fuel(self) -> int:
        """The fuel left; inside a host call, what the running guest call has left."""
        error = _get_fuel(self.ptr, ctypes.byref(self._fuel_out))
        if error:
            _raise_failure(error, None)
        return self._fuel_out.value

    def set_fuel(self, fuel: int) -> None:
        self._fuel_in.value = fuel
        error = _set_fuel(self.ptr, self._fuel_in)
        if error:
            _raise_failure(error, None)

    def charge(self, fuel: int) -> bool:
        """Take `fuel` from the running call; False (and all it had taken) when it had less."""
        error, had_enough = _guestcall.charge_fuel(_GET_FUEL, _SET_FUEL, self.address, fuel)
        if error:
            _raise_failure(error, None)
        return bool(had_enough)

    def set_epoch_deadline(self, ticks: int) -> None:
        """`ticks` beyond the engine's current epoch."""
        self._deadline.value = ticks
        _set_epoch_deadline(self.ptr, self._deadline)


class _Site(ctypes.Structure):
    """The C fast path's view of one instance: sandbox/_guestcall.c's CallSite, field for field."""

    _fields_ = [
        ("call_unchecked", c_void_p),
        ("set_fuel", c_void_p),
        ("get_fuel", c_void_p),
        ("set_epoch_deadline", c_void_p),
        ("memory_data", c_void_p),
        ("memory_size", c_void_p),
        ("error_delete", c_void_p),
        ("error_new", c_void_p),
        ("deadline_callback", c_void_p),
        ("ctx", c_void_p),
        ("mem", c_void_p),
        ("alloc", c_void_p),
        ("free", c_void_p),
        ("out_max", c_uint64),
        ("decode", c_uint64 * 4),  # sandbox/decode.py's DecodeBound of the output
        ("now", c_void_p),  # the ticker's tick count
        ("deadline", c_uint64),
        ("timed_out", c_uint64),
        ("saved", c_void_p),  # the C side's call state
    ]


assert ctypes.sizeof(_Site) == _guestcall.SITE_BYTES, "sandbox/_guestcall.c's CallSite and _Site disagree"


def _address(func: Any) -> int:
    return ctypes.cast(func, c_void_p).value or 0


# The functions the C path calls, from wasmtime-py's own library handle: the same library.
_API = tuple(_address(_b.dll[name]) for name in (
    "wasmtime_func_call_unchecked", "wasmtime_context_set_fuel", "wasmtime_context_get_fuel",
    "wasmtime_context_set_epoch_deadline", "wasmtime_memory_data", "wasmtime_memory_data_size",
    "wasmtime_error_delete", "wasmtime_error_new", "wasmtime_store_epoch_deadline_callback",
))
_SET_FUEL, _GET_FUEL = _API[1], _API[2]
_DEFINE_UNCHECKED = _address(_b.dll["wasmtime_linker_define_func_unchecked"])
_TRAP_NEW = _address(_b.dll["wasmtime_trap_new"])
OK, TRAPPED, FAULT, TIMED_OUT = _guestcall.OK, _guestcall.TRAPPED, _guestcall.FAULT, _guestcall.TIMED_OUT
INVALID_OUTPUT = _guestcall.INVALID_OUTPUT


def func_address(func: wasmtime.Func) -> int:
    """What CallSite.call takes to name an export."""
    return addressof(func._func)


class CallSite:
    """One instance's calls into guest code, each a single C call (sandbox/_guestcall.c).

    `call` sets the fuel and the epoch deadline, copies the input into a buffer from the guest's
    aspen_alloc, runs the export, copies its output out and hands the buffer to aspen_free. It
    returns (status, value, fuel_left): OK with the output bytes (None for no output), TRAPPED
    with the (error, trap) addresses `trap_of` decodes, TIMED_OUT (the same, for a call stopped
    at its execution timeout), FAULT with a message (the guest broke the ABI: a pointer or
    length outside its memory or over `out_max`), or INVALID_OUTPUT with a message (the output
    is not one msgpack value within `decode`, sandbox/decode.py).

    Guest code starts holding the GIL and gives it up at the first epoch tick it is still
    running (see on_deadline in the C file). `ticks` is the call's whole budget, host calls
    included: the deadline is a count of `ticker`'s ticks, not of deadline callbacks.
    """

    __slots__ = ("_hosts", "_keep", "_now", "_site", "address")

    def __init__(
        self,
        store: wasmtime.Store,
        context: StoreContext,
        memory: wasmtime.Memory,
        alloc: wasmtime.Func,
        free: wasmtime.Func | None,
        out_max: int,
        decode: tuple[int, int, int, int],
        ticker: EpochTicker,
    ) -> None:
        self._keep = (store, memory, alloc, free, ticker)  # the ticker's count must outlive this site
        self._site = _Site(*_API, context.address, addressof(memory._memory), func_address(alloc),
                           func_address(free) if free is not None else None, out_max, (c_uint64 * 4)(*decode),
                           ticker.count_address)
        self._now = c_uint64.from_address(ticker.count_address)
        self.address = addressof(self._site)
        self._hosts: tuple[HostBinding, ...] = ()
        _guestcall.watch(self.address, _address(store.ptr()))

    def bind(self, hosts: list[HostBinding]) -> None:
        """The store's host functions copy their results in through this site from now on. It
        keeps their Python objects alive: guest code runs only through this site, which lives
        as long as the store (it holds it)."""
        self._hosts = tuple(hosts)
        for host in self._hosts:
            _guestcall.bind_host(host.address, self.address)

    def call(self, func: int, payload: bytes | None, fuel: int, ticks: int) -> tuple[int, Any, int]:
        return _guestcall.call(self.address, func, payload, fuel, ticks)

    def ticks_left(self) -> int:
        """Whole ticks the running call has left (for a host function deciding how long it may
        wait); 0 once it is out of time. Outside a call it says nothing useful."""
        return max(0, self._site.deadline - self._now.value - 1)


class EpochTicker:
    """Advances an engine's epoch every `period_s` from a C thread that never takes the GIL:
    deadlines must fire even while guest code holds it. `stop` is safe from any thread, once or
    many times."""

    def __init__(self, engine: wasmtime.Engine, period_s: float) -> None:
        self._stopping = threading.Lock()  # two threads must not both take the handle
        self._handle: int | None = None
        self._joined: int | None = None
        # The thread holds an engine reference of its own (wasmtime_engine_clone), so an exit
        # that frees `engine` before stopping the ticker leaves it nothing freed to tick.
        self._handle, self.count_address = _guestcall.ticker_start(
            *(_address(_b.dll[name]) for name in (
                "wasmtime_engine_increment_epoch", "wasmtime_engine_clone", "wasm_engine_delete")),
            _address(engine.ptr()), int(period_s * 1e9))

    def stop(self) -> None:
        with self._stopping:
            handle, self._handle = self._handle, None
        if handle is not None:
            _guestcall.ticker_stop(handle)
            self._joined = handle  # its tick count stays readable until this object goes

    def __del__(self) -> None:
        self.stop()
        # Call sites hold this object (CallSite), so none reads the count any more. A ticker
        # whose join failed is never freed: its thread may still write there.
        if self._joined is not None:
            _guestcall.ticker_free(self._joined)
            self._joined = None


def trap_of(addresses: tuple[int, int]) -> GuestTrap:
    """The GuestTrap for a TRAPPED result's (error, trap) addresses (takes ownership of them)."""
    error, trap = addresses
    try:
        _raise_failure(error, trap)
    except GuestTrap as exc:
        return exc
    raise AssertionError("unreachable")


class RawMemory:
    """Bounds-checked reads and writes of a guest's linear memory, through a memoryview.

    The engine is configured with `memory_may_move = False` (sandbox/runtime.py), so the base
    address never changes; memory only grows, so a view of the size seen last is a safe window,
    rebuilt only when an access falls beyond it. Slicing a memoryview costs a third of a ctypes
    string_at or memmove call.
    """

    __slots__ = ("_base", "_ctx", "_keep", "_mem", "_view")

    def __init__(self, memory: wasmtime.Memory, context: StoreContext) -> None:
        self._keep = memory
        self._ctx = context.ptr
        self._mem = c_void_p(addressof(memory._memory))
        self._base = _memory_data(self._ctx, self._mem) or 0
        self._view = self._make_view()

    def _make_view(self) -> memoryview:
        size = _memory_size(self._ctx, self._mem)
        if size == 0 or not self._base:
            return memoryview(b"")
        return memoryview((c_ubyte * size).from_address(self._base)).cast("B")

    @property
    def size(self) -> int:
        return len(self._view)

    def _fits(self, end: int) -> bool:
        if end <= len(self._view):
            return True
        self._view = self._make_view()
        return end <= len(self._view)

    def read(self, ptr: int, length: int) -> bytes:
        end = ptr + length
        view = self._view
        if ptr < 0 or length < 0 or (end > len(view) and not self._fits(end)):
            raise IndexError(
                f"guest range [{ptr}, {ptr}+{length}) is outside memory of {len(self._view)} bytes"
            )
        return self._view[ptr:end].tobytes()  # tobytes: a third cheaper than bytes(view)

    def write(self, ptr: int, data: bytes) -> None:
        end = ptr + len(data)
        view = self._view
        if ptr <= 0 or (end > len(view) and not self._fits(end)):
            raise IndexError(
                f"guest buffer [{ptr}, {ptr}+{len(data)}) is outside memory of {len(self._view)} bytes"
            )
        self._view[ptr:end] = data


@dataclass(frozen=True, slots=True)
class HostBinding:
    """A host function defined in a linker, waiting for its CallSite (`CallSite.bind`).

    The C side holds `method` and `on_error` without references of its own (a reference from C
    is invisible to the cycle collector, and a path from it back to the store would never be
    freed): this object, then the CallSite, keeps them alive."""

    address: int
    method: Callable[..., int | bytes | None]
    on_error: HostFailure


def define_host(linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType,
                method: Callable[..., int | bytes | None], on_error: HostFailure) -> HostBinding:
    """Define an import whose calls run `method` with its i32 arguments as ints, through the C
    trampoline in sandbox/_guestcall.c. `method` returns an int (an i32 or i64 result), bytes
    (copied in through the guest's allocator) or None for a function with no result; any failure
    traps with the message `on_error(kind, value)` writes. Until the binding is given to its
    instance's `CallSite.bind`, a call (only a start function can make one) traps."""
    if any(str(p) != "i32" for p in ty.params) or len(ty.results) > 1 or any(
            str(r) not in ("i32", "i64") for r in ty.results):
        raise ValueError(
            f"host function {name}: the trampoline takes i32 parameters and at most one i32 or i64 result"
        )
    error, address = _guestcall.define_host(
        _DEFINE_UNCHECKED,
        _TRAP_NEW,
        _address(linker.ptr()),
        module.encode(),
        name.encode(),
        _address(ty.ptr()),
        method,
        on_error,
        len(ty.params),
        bool(ty.results),
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, POINTER(ffi.wasmtime_error_t)))
    return HostBinding(address, method, on_error)
