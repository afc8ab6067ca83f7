"""Thin wrappers over wasmtime's unchecked C API: the fast path for calls both ways.

wasmtime-py's generic `Func.__call__` spends ~27 us a call looking up types in Python; the
unchecked entry points take a preallocated array of raw values. We bind the few C functions
we need once, with plain `c_void_p` argument types, so a call is one ctypes hop with integer
addresses and no per-call object construction. Type safety comes from the import and export
signature checks done once at load (sandbox/runtime.py).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from ctypes import POINTER, addressof, c_size_t, c_uint64, c_void_p
from typing import Any

import wasmtime
from wasmtime import _bindings as _b
from wasmtime import _ffi as ffi


def _bind(name: str, restype: Any, argtypes: list[Any]) -> Any:
    func = _b.dll[name]  # a fresh function object: wasmtime-py's own binding keeps its types
    func.restype = restype
    func.argtypes = argtypes
    return func


_call_unchecked = _bind("wasmtime_func_call_unchecked", c_void_p, [c_void_p, c_void_p, c_void_p, c_size_t, c_void_p])
_memory_data = _bind("wasmtime_memory_data", c_void_p, [c_void_p, c_void_p])
_memory_size = _bind("wasmtime_memory_data_size", c_size_t, [c_void_p, c_void_p])
_caller_context = _bind("wasmtime_caller_context", c_void_p, [c_void_p])
_set_fuel = _bind("wasmtime_context_set_fuel", c_void_p, [c_void_p, c_uint64])
_get_fuel = _bind("wasmtime_context_get_fuel", c_void_p, [c_void_p, c_void_p])
_set_epoch_deadline = _bind("wasmtime_context_set_epoch_deadline", None, [c_void_p, c_uint64])
# The value slots reach the callback as 64-bit integers: indexing POINTER(c_int64) yields a
# Python int directly, where a POINTER to the union would build an object per argument.
_CALLBACK = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, POINTER(ctypes.c_int64), c_size_t)
_define_unchecked = _bind(
    "wasmtime_linker_define_func_unchecked",
    c_void_p,
    [c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, c_void_p, _CALLBACK, c_void_p, c_void_p],
)

HostCallback = Callable[[int, int, Any, int], int]


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


class RawFunc:
    """A guest export called through wasmtime_func_call_unchecked with a reused value array."""

    __slots__ = ("_args", "_args_addr", "_func_addr", "_keep", "_n", "_trap", "_trap_addr")

    def __init__(self, func: wasmtime.Func, slots: int) -> None:
        self._keep = func
        self._func_addr = addressof(func._func)
        self._n = max(1, slots)
        self._args = (ffi.wasmtime_val_raw_t * self._n)()
        self._args_addr = addressof(self._args)
        self._trap = c_void_p()
        self._trap_addr = addressof(self._trap)

    def call(self, context: int, *values: int) -> int:
        """Call with i32/i64 arguments; returns the first result slot as i64 (0 when none)."""
        args = self._args
        for i, v in enumerate(values):
            args[i].i64 = v
        error = _call_unchecked(context, self._func_addr, self._args_addr, self._n, self._trap_addr)
        trap = self._trap.value
        if error or trap:
            self._trap.value = None
            _raise_failure(error, trap)
        return args[0].i64

    def call1(self, context: int, value: int) -> int:
        """call() for one argument: the allocator's shape, on every host-to-guest copy."""
        self._args[0].i64 = value
        error = _call_unchecked(context, self._func_addr, self._args_addr, self._n, self._trap_addr)
        trap = self._trap.value
        if error or trap:
            self._trap.value = None
            _raise_failure(error, trap)
        return self._args[0].i64


class RawMemory:
    """Bounds-checked reads and writes of a guest's linear memory.

    The engine is configured with `memory_may_move = False` (sandbox/runtime.py), so the base
    address never changes and is read once; memory only grows, so a cached size is a safe lower
    bound, refreshed only when an access falls beyond it. That saves two C calls per access.
    """

    __slots__ = ("_base", "_keep", "_mem_addr", "_size")

    def __init__(self, memory: wasmtime.Memory, context: int) -> None:
        self._keep = memory
        self._mem_addr = addressof(memory._memory)
        self._base = _memory_data(context, self._mem_addr) or 0
        self._size = _memory_size(context, self._mem_addr)

    def _fits(self, context: int, end: int) -> bool:
        if end <= self._size:
            return True
        self._size = _memory_size(context, self._mem_addr)
        return end <= self._size

    def read(self, context: int, ptr: int, length: int) -> bytes:
        if ptr < 0 or length < 0 or not self._fits(context, ptr + length):
            raise IndexError(f"guest range [{ptr}, {ptr}+{length}) is outside memory of {self._size} bytes")
        return ctypes.string_at(self._base + ptr, length)

    def write(self, context: int, ptr: int, data: bytes) -> None:
        if ptr <= 0 or not self._fits(context, ptr + len(data)):
            raise IndexError(f"guest buffer [{ptr}, {ptr}+{len(data)}) is outside memory of {self._size} bytes")
        ctypes.memmove(self._base + ptr, data, len(data))


def caller_context(caller: int) -> int:
    return _caller_context(caller)


def set_fuel(context: int, fuel: int) -> None:
    error = _set_fuel(context, fuel)
    if error:
        _raise_failure(error, None)


class FuelGauge:
    """Reads a store's remaining fuel into a reused cell (no allocation per call)."""

    __slots__ = ("_addr", "_cell")

    def __init__(self) -> None:
        self._cell = c_uint64()
        self._addr = addressof(self._cell)

    def left(self, context: int) -> int:
        return 0 if _get_fuel(context, self._addr) else self._cell.value


def set_epoch_deadline(context: int, ticks: int) -> None:
    _set_epoch_deadline(context, ticks)


def trap_value(message: str) -> int:
    """A trap for a host callback to return (wasmtime takes ownership)."""
    trap = wasmtime.Trap(message)._consume()
    return ctypes.cast(trap, c_void_p).value or 0


def define_unchecked(linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType,
                     callback: HostCallback) -> object:
    """Define a host function through the unchecked callback API. Keep the returned object
    alive as long as the linker: it is the C function pointer wasmtime calls."""
    cfunc = _CALLBACK(callback)
    module_b, name_b = module.encode(), name.encode()
    error = _define_unchecked(
        ctypes.cast(linker.ptr(), c_void_p), module_b, len(module_b), name_b, len(name_b),
        ctypes.cast(ty.ptr(), c_void_p), cfunc, None, None,
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, POINTER(ffi.wasmtime_error_t)))
    return cfunc
