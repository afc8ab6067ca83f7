"""One memory budget per plugin: memory_limit covers the linear memory, the table and the
globals, and what wasmtime would count per item (a second memory, a GC heap) is refused."""

from __future__ import annotations

import pytest
import wasmtime

from sandbox import InMemoryHost, PluginConfig, Runtime, SandboxError, limits
from sandbox.budget import GLOBAL_BYTES, PAGE_BYTES, MemoryBudget, ModuleShape, module_shape
from tests.sandbox.guests import ALLOC, ALLOC_TEMPLATE, info_export, int_prefix_data, int_response, module
from tests.sandbox.rss import MIB, call_in_subprocess

RESPOND_LOCALS = "(local $v i32) (local $out i32)"


def _handler(body: str, header: str = "") -> bytes:
    """A module whose handle_request answers {"type": "Int", "n": <body's i32>}."""
    return module(f"""{header}{int_prefix_data()}
  (func (export "handle_request") (param i32 i32) (result i64) {RESPOND_LOCALS}
    {int_response(body)})""")


def _table_guest(grow_by: int, ref: str = "funcref", null: str = "func") -> bytes:
    """One page of memory, so it loads under the smallest budget (64 KiB)."""
    return wasmtime.wat2wasm(f"""(module (memory (export "memory") 1) (table 1 {ref})
{ALLOC_TEMPLATE.replace("BUMP_START", "32768")}{info_export()}{int_prefix_data()}
  (func (export "handle_request") (param i32 i32) (result i64) {RESPOND_LOCALS}
    {int_response(f"(table.grow 0 (ref.null {null}) (i32.const {grow_by}))")}))""")


def test_the_split_never_holds_more_than_the_limit() -> None:
    for limit in (256 * 1024, 1 * MIB, 64 * MIB, 128 * MIB, limits.MEMORY_MAX_BYTES):
        for globals_count in (0, 3, limits.GLOBALS_MAX):
            b = MemoryBudget.split(limit, globals_count)
            assert b.held_max_bytes <= limit, (limit, globals_count, b)
            assert b.memory_bytes % PAGE_BYTES == 0 and b.table_elements > 0
    # Under a page plus the table's least share, the memory still gets its page: the overshoot
    # is bounded by that share and the globals.
    b = MemoryBudget.split(64 * 1024, limits.GLOBALS_MAX)
    assert b.memory_bytes == PAGE_BYTES
    assert b.held_max_bytes <= 64 * 1024 + limits.TABLE_BYTES_MIN + limits.GLOBALS_MAX * GLOBAL_BYTES


def test_module_shape_reads_the_counts() -> None:
    wasm = wasmtime.wat2wasm(
        "(module (memory 1) (table 2 funcref) (global i32 (i32.const 0)) (global i64 (i64.const 1)))"
    )
    assert module_shape(wasm) == ModuleShape(tables=1, memories=1, globals=2)
    assert module_shape(b"\0asm\x01\0\0\0\x05\xff") is None  # truncated: wasmtime says why
    assert module_shape(b"garbage") is None


def test_multi_memory_is_refused_at_load(runtime: Runtime, host: InMemoryHost) -> None:
    # 17 memories under a 64 MiB limit held 1,040 MiB: each memory had a limit of its own.
    memories = "".join(f"(memory $m{i} 1)" for i in range(1, 17))
    wasm = wasmtime.wat2wasm(f'(module (memory (export "memory") 1) {memories} {ALLOC} {info_export()}'
                             '(func (export "handle_request") (param i32 i32) (result i64) (i64.const 0)))')
    with pytest.raises(SandboxError) as err:
        runtime.load(wasm, PluginConfig("multi", memory_limit_bytes=64 * MIB), host)
    assert err.value.code == "INVALID_MODULE"
    assert "17 memories" in err.value.message and "multi-memory is not supported" in err.value.message


@pytest.mark.parametrize("wat", [
    # The GC heap is a second memory with a full memory_limit of its own (measured).
    '(type $a (array (mut i8))) (func (export "f") (result (ref $a)) (array.new_default $a (i32.const 100)))',
    # Exception objects live in that heap.
    '(tag $t) (func (export "f") (throw $t))',
])
def test_proposals_that_allocate_outside_the_budget_are_refused(
    runtime: Runtime, host: InMemoryHost, wat: str
) -> None:
    wasm = wasmtime.wat2wasm(
        f'(module (memory (export "memory") 1) {ALLOC} {info_export()} {wat}'
        '(func (export "handle_request") (param i32 i32) (result i64) (i64.const 0)))'
    )
    with pytest.raises(SandboxError) as err:
        runtime.load(wasm, PluginConfig("gc"), host)
    assert err.value.code == "INVALID_MODULE"


def test_a_second_table_and_too_many_globals_are_refused(runtime: Runtime, host: InMemoryHost) -> None:
    with pytest.raises(SandboxError) as err:
        runtime.load(module("(table 1 funcref) (table 1 funcref)" + _RETURN_0), PluginConfig("tables"), host)
    assert err.value.code == "INVALID_MODULE" and "2 tables" in err.value.message
    many = "".join("(global i32 (i32.const 0))" for _ in range(limits.GLOBALS_MAX))  # and ALLOC's $bump
    with pytest.raises(SandboxError) as err:
        runtime.load(module(many + _RETURN_0), PluginConfig("globals"), host)
    assert err.value.code == "INVALID_MODULE" and f"{limits.GLOBALS_MAX + 1} globals" in err.value.message


_RETURN_0 = '(func (export "handle_request") (param i32 i32) (result i64) (i64.const 0))'


def test_globals_at_the_limit_load_and_are_counted(runtime: Runtime, host: InMemoryHost) -> None:
    many = "".join("(global i32 (i32.const 0))" for _ in range(limits.GLOBALS_MAX - 1))  # and ALLOC's $bump
    plugin = runtime.load(module(many + _RETURN_0), PluginConfig("globals", memory_limit_bytes=1 * MIB), host)
    assert plugin.budget.globals_bytes == limits.GLOBALS_MAX * GLOBAL_BYTES
    assert plugin.budget.held_max_bytes <= 1 * MIB


def test_table_bomb_is_held_to_the_budget() -> None:
    # table.grow of 100M elements under a 64 KiB limit took 801 MiB before the budget.
    limit = 64 * 1024
    for ref, null in (("funcref", "func"), ("externref", "extern")):
        response, grown = call_in_subprocess(
            _table_guest(100_000_000, ref, null), {"name": "tables", "memory_limit_bytes": limit}
        )
        assert response == {"type": "Int", "n": -1}, (ref, response)  # table.grow failed
        assert grown < limit + 64 * MIB, (ref, grown)


def test_the_table_grows_to_its_share_and_no_further(runtime: Runtime, host: InMemoryHost) -> None:
    limit = 1 * MIB
    share = MemoryBudget.split(limit, 0).table_elements
    plugin = runtime.load(_table_guest(share - 1), PluginConfig("table", memory_limit_bytes=limit), host)
    plugin.init()
    assert plugin.handle_request({"type": "X"}) == {"type": "Int", "n": 1}  # the old size: it grew
    over = runtime.load(_table_guest(share), PluginConfig("table", memory_limit_bytes=limit), host)
    over.init()
    assert over.handle_request({"type": "X"}) == {"type": "Int", "n": -1}


def test_memory_grows_to_its_share_and_no_further(runtime: Runtime, host: InMemoryHost) -> None:
    limit = 1 * MIB
    pages = MemoryBudget.split(limit, 1).memory_bytes // PAGE_BYTES  # ALLOC's $bump is the one global
    grow = f"(memory.grow (i32.const {pages - 2}))"  # module() starts with 2 pages
    plugin = runtime.load(_handler(grow), PluginConfig("mem", memory_limit_bytes=limit), host)
    plugin.init()
    assert plugin.handle_request({"type": "X"}) == {"type": "Int", "n": 2}
    over = runtime.load(
        _handler(f"(memory.grow (i32.const {pages - 1}))"),
        PluginConfig("mem", memory_limit_bytes=limit),
        host,
    )
    over.init()
    assert over.handle_request({"type": "X"}) == {"type": "Int", "n": -1}
