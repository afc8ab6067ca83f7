"""One memory budget per plugin: its memory_limit covers the linear memory, the table and the
globals of its instance, so a plugin cannot make the node hold much more than that number.

wasmtime's store limits are per item (each memory may grow to `memory_size`, each table to
`table_elements`), not a sum, so the budget is split once at load: the table and the globals
get their share (counted at the size wasmtime stores them: 8 bytes per funcref element, 16 per
global) and the linear memory the rest, in whole 64 KiB pages. A second memory, a second table
or a GC heap would each get a full share again, so the engine refuses them (sandbox/runtime.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import limits
from sandbox.errors import SandboxCode, SandboxError

PAGE_BYTES = limits.WASM_PAGE_BYTES

# wasmtime's table storage: a funcref element is a pointer to its VMFuncRef (8 bytes), an
# externref a 32-bit GC reference (4 bytes; measured: table.grow of 100M funcref elements took
# 772 MiB, of externref 391 MiB). Every element is counted at the larger size.
TABLE_ELEMENT_BYTES = 8
# A global is a VMGlobalDefinition in the instance's context: 16 bytes (measured: 1,000,000
# i64 globals, 12 MiB per instance).
GLOBAL_BYTES = 16

_SECTION_TABLE, _SECTION_MEMORY, _SECTION_GLOBAL = 4, 5, 6


@dataclass(frozen=True, slots=True)
class ModuleShape:
    """What a module defines that an instance allocates for (imports are functions only)."""

    tables: int
    memories: int
    globals: int


def _uleb(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 35:
            raise ValueError("truncated or overlong LEB128")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def module_shape(wasm: bytes) -> ModuleShape | None:
    """The counts of the table, memory and global sections; None when the bytes are not a
    well-formed module (wasmtime's validation then says why)."""
    counts = {_SECTION_TABLE: 0, _SECTION_MEMORY: 0, _SECTION_GLOBAL: 0}
    if wasm[:8] != b"\0asm\x01\0\0\0":
        return None
    at = 8
    try:
        while at < len(wasm):
            section = wasm[at]
            size, at = _uleb(wasm, at + 1)
            if section in counts:
                counts[section], _ = _uleb(wasm, at)
            at += size
    except ValueError:
        return None
    return ModuleShape(counts[_SECTION_TABLE], counts[_SECTION_MEMORY], counts[_SECTION_GLOBAL])


def check_shape(shape: ModuleShape) -> None:
    """Refuse, at load, what the budget cannot count: a second memory or table, too many globals."""
    if shape.memories > 1:
        raise SandboxError(
            SandboxCode.INVALID_MODULE,
            f"module defines {shape.memories} memories: a plugin has one linear memory (multi-memory is not "
            "supported)",
        )
    if shape.tables > limits.TABLES_MAX:
        raise SandboxError(
            SandboxCode.INVALID_MODULE,
            f"module defines {shape.tables} tables: at most {limits.TABLES_MAX} per plugin",
        )
    if shape.globals > limits.GLOBALS_MAX:
        raise SandboxError(
            SandboxCode.INVALID_MODULE,
            f"module defines {shape.globals} globals: at most {limits.GLOBALS_MAX} per plugin",
        )


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """How one plugin's memory_limit_bytes is shared out (store limits of its instances)."""

    limit_bytes: int
    memory_bytes: int  # the linear memory's cap, whole pages
    table_elements: int  # the table's cap (one table)
    globals_bytes: int

    @property
    def table_bytes(self) -> int:
        return self.table_elements * TABLE_ELEMENT_BYTES

    @property
    def held_max_bytes(self) -> int:
        """The most the memory, table and globals can hold together."""
        return self.memory_bytes + self.table_bytes + self.globals_bytes

    @classmethod
    def split(cls, limit_bytes: int, globals_count: int) -> MemoryBudget:
        # The table gets a sixteenth (at least TABLE_BYTES_MIN, so even the smallest budget
        # holds a toolchain's function table; at most TABLE_BYTES_MAX), the globals what they
        # take, the linear memory the rest, and never less than one page: only budgets under
        # a page plus those shares can be exceeded, by at most those shares.
        table_bytes = min(limits.TABLE_BYTES_MAX, max(limits.TABLE_BYTES_MIN, limit_bytes // 16))
        globals_bytes = globals_count * GLOBAL_BYTES
        memory_bytes = max(PAGE_BYTES, (limit_bytes - table_bytes - globals_bytes) // PAGE_BYTES * PAGE_BYTES)
        return cls(limit_bytes, memory_bytes, table_bytes // TABLE_ELEMENT_BYTES, globals_bytes)
