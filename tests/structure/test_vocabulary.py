"""One home per vocabulary: every bound and every code that one layer repeats of another's is
derived from it or mapped to it, and these tests hold each relation (as TigerBeetle asserts
its constants').
"""

from __future__ import annotations

import re
from pathlib import Path

from aspen import codes, manifest
from aspen import native_handlers as handlers
from aspen import protocol as p
from cluster.config import RaftConfig
from cluster.errors import ClusterCode
from sandbox import budget, permissions
from sandbox import limits as sl
from sandbox.errors import SandboxCode
from storage import limits as stl
from storage.errors import StorageCode
from wire import limits as wl
from wire.errors import ErrorCode

ROOT = Path(__file__).resolve().parents[2]
SHARED = ("KEY_MAX_BYTES", "VALUE_MAX_BYTES", "SCAN_LIMIT_DEFAULT", "SCAN_LIMIT_MAX", "BATCH_OPS_MAX",
          "BLOB_MAX_BYTES")


def test_storage_and_sandbox_take_the_wire_bounds_not_copies() -> None:
    for name in (*SHARED, "CONDITIONS_MAX", "RESERVED_KEY_PREFIX"):
        assert getattr(stl, name) is getattr(wl, name), name
    for name in SHARED:
        assert getattr(sl, name) is getattr(wl, name), name
    assert p.FRAME_MAX_BYTES is wl.FRAME_MAX_BYTES and p.PREAUTH_FRAME_MAX_BYTES is wl.PREAUTH_FRAME_MAX_BYTES


def test_what_must_fit_in_a_frame_fits() -> None:
    assert wl.PREAUTH_FRAME_MAX_BYTES < wl.FRAME_MAX_BYTES
    # A PutBlob request and a GetBlob answer carry a whole blob plus a few fields.
    assert wl.BLOB_MAX_BYTES + 4096 <= wl.FRAME_MAX_BYTES
    # A scan page stops before SCAN_PAGE_MAX_BYTES but holds at least one entry.
    largest_entry = wl.KEY_MAX_BYTES + wl.VALUE_MAX_BYTES + handlers.SCAN_ENTRY_OVERHEAD_BYTES
    assert handlers.SCAN_PAGE_MAX_BYTES + largest_entry + 4096 <= wl.FRAME_MAX_BYTES
    # A plugin's answer and a plugin's batch (one log entry) are at most a frame.
    assert sl.GUEST_OUTPUT_MAX_BYTES == wl.FRAME_MAX_BYTES
    assert sl.BATCH_MAX_BYTES == wl.FRAME_MAX_BYTES
    # The largest log entry holds the largest op one frame can carry.
    raft = RaftConfig(node_id=1, raft_addr="127.0.0.1:1", peers={}, data_dir=Path("/nonexistent"), cookie="c")
    assert raft.entry_max_bytes > wl.FRAME_MAX_BYTES
    assert 0 < raft.entry_bytes_max <= raft.entry_max_bytes


def test_sandbox_bounds_are_consistent() -> None:
    assert budget.PAGE_BYTES == sl.WASM_PAGE_BYTES == sl.MEMORY_MIN_BYTES
    assert sl.MEMORY_MIN_BYTES <= sl.MEMORY_DEFAULT_BYTES <= sl.MEMORY_MAX_BYTES
    assert 0 < sl.FUEL_DEFAULT <= sl.FUEL_MAX
    assert 0 < sl.TIMEOUT_DEFAULT_S <= sl.TIMEOUT_MAX_S
    assert sl.TABLE_BYTES_MIN <= sl.TABLE_BYTES_MAX <= sl.MEMORY_MAX_BYTES
    assert sl.TIMER_MIN_MS < sl.TIMER_MAX_MS
    assert sl.WASM_MAX_BYTES <= wl.BLOB_MAX_BYTES  # a module is installed as a blob
    assert sl.EPOCH_TICK_S < sl.TIMEOUT_DEFAULT_S
    assert sl.DECODE_BYTES_PER_BYTE * 1 + sl.DECODE_SLACK_BYTES <= sl.DECODE_MAX_BYTES


def test_manifest_checks_what_the_sandbox_checks() -> None:
    # The manifest's name is stricter than the sandbox's; its defaults are the sandbox's.
    assert int(re.search(r"\{1,(\d+)\}", manifest.NAME_RE.pattern).group(1)) <= sl.NAME_MAX_CHARS
    default = manifest.Manifest(name="n", version="1", handles=("T",)).sandbox_config()
    assert default == permissions.PluginConfig(name="n")
    low = manifest.Manifest.from_json({"name": "n", "version": "1", "handles": ["T"],
                                       "memory_limit": sl.MEMORY_MIN_BYTES})
    assert low.sandbox_config().memory_limit_bytes == sl.MEMORY_MIN_BYTES


def test_every_layer_code_has_its_wire_code() -> None:
    assert set(codes.STORAGE_TO_WIRE) == set(StorageCode)
    assert set(codes.CLUSTER_TO_WIRE) == set(ClusterCode)
    # Results sit in every node's log and state by their strings: a mapping never renames one.
    for table in (codes.STORAGE_TO_WIRE, codes.CLUSTER_TO_WIRE):
        for layer_code, wire_code in table.items():
            assert isinstance(wire_code, ErrorCode) and wire_code.value == layer_code.value
    assert frozenset(SandboxCode) == codes.SANDBOX_PASSED_ON
    assert {"ok", *ErrorCode, *SandboxCode} == codes.OUTCOMES


def test_every_wire_code_is_documented() -> None:
    table = (ROOT / "docs" / "PROTOCOL.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", table, re.M))
    assert set(ErrorCode) <= documented
