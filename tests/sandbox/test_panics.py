"""A Rust panic reaches the caller with its message (issue 13 item 7): the SDK's panic hook logs
"panicked at FILE:LINE:COL: MESSAGE" at warn, then aborts (`unreachable`); the sandbox makes
that line the PLUGIN_TRAP's message and hands the trap to the plugin's log."""

from __future__ import annotations

from sandbox import InMemoryHost, PluginConfig, Runtime
from tests.sandbox.guests import module, wat_bytes

PANIC = b"panicked at src/lib.rs:43:72: index out of bounds: the len is 3 but the index is 7"


def _guest(line: bytes, level: str = "warn", trap: bool = True) -> bytes:
    """handle_request logs `line` at `level`, then traps with unreachable (or answers nothing)."""
    end = "unreachable" if trap else "(i64.const 0)"
    return module(f"""
  (data (i32.const 2048) "{wat_bytes(line)}")
  (func (export "handle_request") (param i32 i32) (result i64)
    (call $log_{level}_msg (i32.const 2048) (i32.const {len(line)}))
    {end})""", imports=(f"log_{level}_msg",))


def test_a_panic_message_is_the_trap_message_and_goes_to_the_plugin_log(runtime: Runtime) -> None:
    host = InMemoryHost()
    plugin = runtime.load(_guest(PANIC + b"\nsecond line"), PluginConfig("panicky"), host)
    plugin.init()
    out = plugin.handle_request({"type": "X"})
    assert out["code"] == "PLUGIN_TRAP"
    assert out["message"] == PANIC.decode() + "\\nsecond line"  # escaped like any log line
    assert ("panicky", "trap", f"PLUGIN_TRAP: {out['message']}") in host.logs
    assert plugin.stats.traps == 1


def test_only_a_warn_line_of_the_same_call_counts(runtime: Runtime) -> None:
    # At info level, it is only a log line: the trap is reported as wasmtime says.
    host = InMemoryHost()
    plugin = runtime.load(_guest(PANIC, level="info"), PluginConfig("quiet"), host)
    plugin.init()
    out = plugin.handle_request({"type": "X"})
    assert (
        out["code"] == "PLUGIN_TRAP" and "panicked" not in out["message"] and "unreachable" in out["message"]
    )


def test_a_panic_line_without_a_trap_is_forgotten_by_the_next_call(runtime: Runtime) -> None:
    logs_then_answers = runtime.load(_guest(PANIC, trap=False), PluginConfig("p"), InMemoryHost())
    logs_then_answers.init()
    logs_then_answers.handle_request({"type": "X"})
    assert logs_then_answers._funcs.panic is not None
    # The runtime clears it before each call: a later plain trap is not blamed on it.
    plain = runtime.load(
        module("""
  (func (export "handle_request") (param i32 i32) (result i64) unreachable)"""),
        PluginConfig("q"),
        InMemoryHost(),
    )
    plain._funcs.panic = PANIC.decode()
    plain.init()
    out = plain.handle_request({"type": "X"})
    assert "panicked" not in out["message"]


def test_going_failed_is_in_the_plugin_log(runtime: Runtime) -> None:
    host = InMemoryHost()
    plugin = runtime.load(_guest(PANIC), PluginConfig("fails"), host)
    plugin.init()
    for _ in range(5):
        plugin.handle_request({"type": "X"})
    assert str(plugin.state) == "Failed"
    fails = [m for _, level, m in host.logs if level == "trap" and m.startswith("Failed: ")]
    assert len(fails) == 1 and PANIC.decode() in fails[0]
