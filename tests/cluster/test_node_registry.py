"""The `nodes` meta table's typed view (cluster/node_registry.py): rows round-trip, and what the
node wrote before it existed (the same msgpack map) reads the same."""

from __future__ import annotations

import msgpack

from cluster import node_registry
from cluster.node_registry import NodeRecord
from storage.state import StateMachine


def test_a_row_is_the_map_the_node_always_wrote() -> None:
    rec = NodeRecord(raft_addr="10.0.0.1:7801", client_addr="10.0.0.1:7701")
    assert rec.encode() == msgpack.packb({"raft_addr": "10.0.0.1:7801", "client_addr": "10.0.0.1:7701"},
                                         use_bin_type=True)
    assert NodeRecord.decode(rec.encode()) == rec


def test_rows_that_are_not_maps_or_hold_other_types_read_safely() -> None:
    assert NodeRecord.decode(b"\xc1") is None
    assert NodeRecord.decode(msgpack.packb([1, 2])) is None
    assert NodeRecord.decode(msgpack.packb({"raft_addr": 5})) == NodeRecord(None, None)


def test_ops_name_the_table_and_the_id() -> None:
    rec = NodeRecord("a:1", "b:2")
    assert node_registry.put_op(3, rec) == ["meta_put", "nodes", "3", rec.encode()]
    assert node_registry.delete_op(3) == ["meta_del", "nodes", "3"]


def test_the_state_machine_reads_back_what_the_ops_wrote() -> None:
    state = StateMachine()
    state.apply_ops(
        [
            node_registry.put_op(1, NodeRecord("h:1", "h:2")),
            node_registry.put_op(2, NodeRecord("g:1", None)),
            ["meta_put", "nodes", "3", b"not msgpack \xc1"],
        ],
        1,
        1,
    )
    assert node_registry.node_ids(state) == {1, 2, 3}
    assert node_registry.records(state) == {1: NodeRecord("h:1", "h:2"), 2: NodeRecord("g:1", None)}
    assert node_registry.record(state, 2) == NodeRecord("g:1", None)
    assert node_registry.node_id_of(state, "g:1") == 2 and node_registry.node_id_of(state, "x:1") is None
    state.apply_ops([node_registry.delete_op(2)], 2, 1)
    assert node_registry.record(state, 2) is None
