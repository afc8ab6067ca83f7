"""Same ops, same state: state_hash is the cross-node comparison, so it must be canonical."""

from __future__ import annotations

import random
from typing import Any

from storage import snapshot
from storage.state import StateMachine

KEYS = [f"k/{i}" for i in range(40)] + ["a", "a/", "é/1", "z"]
VALUES = [b"", b"1", b"2", b"three"]
HASHES = [c * 64 for c in "0123abcd"]


def random_op(rng: random.Random) -> list[Any]:
    key = rng.choice(KEYS)
    value = rng.choice(VALUES)
    roll = rng.randrange(12)
    if roll < 3:
        return ["put", key, value]
    if roll == 3:
        return ["del", key]
    if roll == 4:
        return ["cas", key, rng.choice([None, *VALUES]), value]
    if roll == 5:
        return ["cad", key, value]
    if roll == 6:
        sub = [
            ["put", rng.choice(KEYS), value] if rng.random() < 0.7 else ["del", rng.choice(KEYS)]
            for _ in range(rng.randrange(5))
        ]
        return ["batch", sub]
    if roll == 7:
        kinds = [["eq", rng.choice(KEYS), value], ["exists", rng.choice(KEYS)], ["absent", rng.choice(KEYS)]]
        conditions = rng.sample(kinds, rng.randrange(3))
        return ["cbatch", conditions, [["put", rng.choice(KEYS), value], ["del", rng.choice(KEYS)]]]
    if roll == 8:
        return ["meta_put", rng.choice(["nodes", "plugins", "settings"]), rng.choice(["1", "2", "x"]), value]
    if roll == 9:
        return [
            "meta_cas",
            "plugins",
            rng.choice(["1", "2"]),
            rng.choice([None, *VALUES]),
            rng.choice([None, value]),
        ]
    if roll == 10:
        return ["blob_add", rng.choice(HASHES), 7, rng.randrange(1, 4)]
    return rng.choice(
        [["noop"], ["meta_del", "nodes", rng.choice(["1", "2", "x"])], ["bogus"], ["put", key, "str"]]
    )


def random_log(seed: int, entries: int) -> list[list[list[Any]]]:
    rng = random.Random(seed)
    return [[random_op(rng) for _ in range(rng.randrange(1, 8))] for _ in range(entries)]


def replay(log: list[list[list[Any]]]) -> tuple[StateMachine, list[Any]]:
    state = StateMachine()
    outputs: list[Any] = []
    for index, ops in enumerate(log, start=1):
        outputs.append(state.apply_ops(ops, index, 1 + index // 100))
    return state, outputs


def test_two_state_machines_fed_the_same_log_agree_on_everything() -> None:
    log = random_log(seed=7, entries=600)
    one, out_one = replay(log)
    two, out_two = replay(log)
    assert out_one == out_two
    assert one.state_hash() == two.state_hash()
    assert one.revision == two.revision > 100
    assert list(one.kv.items()) == list(two.kv.items())


def test_different_logs_give_different_hashes() -> None:
    one, _ = replay(random_log(seed=1, entries=200))
    two, _ = replay(random_log(seed=2, entries=200))
    assert one.state_hash() != two.state_hash()


def test_state_hash_sees_every_part_of_the_state() -> None:
    base = StateMachine()
    base.apply_ops([["put", "k", b"v"]], 1, 1)
    seen = {base.state_hash()}
    variants = [
        [["put", "k", b"w"]],  # value and version
        [["put", "j", b"v"]],  # another key
        [["del", "k"], ["put", "k", b"v"]],  # same value, other create revision
        [["meta_put", "nodes", "1", b""]],
        [["meta_put", "nodes2", "1", b""]],
        [["blob_add", "a" * 64, 1, 1]],
        [["blob_add", "a" * 64, 1, 2]],
    ]
    for ops in variants:
        state = snapshot.load(snapshot.dump(base))
        state.apply_ops(ops, 2, 1)
        seen.add(state.state_hash())
    assert len(seen) == len(variants) + 1


def test_state_hash_does_not_depend_on_insertion_order_or_applied_index() -> None:
    one = StateMachine()
    one.apply_ops(
        [["meta_put", "t", "a", b"1"], ["meta_put", "t", "b", b"2"], ["blob_add", "b" * 64, 1, 2]], 1, 1
    )
    one.apply_ops([["blob_add", "b" * 64, 1, 1], ["blob_add", "a" * 64, 1, 1]], 2, 1)
    two = StateMachine()
    two.apply_ops(
        [["blob_add", "a" * 64, 1, 1], ["blob_add", "b" * 64, 1, 1], ["meta_put", "t", "b", b"2"]], 10, 3
    )
    two.apply_ops([["meta_put", "t", "a", b"1"], ["blob_add", "b" * 64, 1, 2], ["noop"]], 11, 3)
    assert one.state_hash() == two.state_hash()


def test_a_table_emptied_by_deletes_hashes_like_one_never_written() -> None:
    one = StateMachine()
    one.apply_ops([["meta_put", "t", "a", b"1"], ["meta_del", "t", "a"]], 1, 1)
    assert one.state_hash() == StateMachine().state_hash()
