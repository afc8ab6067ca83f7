"""What the plugin refuses, and its other request types, with chunks from the real client."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable

import pytest

from aspen import automerge
from aspen.client import Client
from deploy.launcher import LocalCluster
from tests.automerge.conftest import JsClient
from wire.errors import AspenError

Js = Callable[[], JsClient]


def codes(r: dict) -> list[str]:
    return [e["code"] for e in r["errors"]]


def test_corrupted_chunks_are_refused(am_cluster: LocalCluster, js: Js) -> None:
    doc = "corrupt"
    peer = js()
    peer.call("new", doc=doc)
    peer.call("many", doc=doc, n=2, fn="d.x = 'some text ' + i")
    good, second = peer.each(doc)
    bad_checksum = bytearray(good)
    bad_checksum[-1] ^= 0xFF  # a body byte: the SHA-256 no longer matches the checksum
    wrong_magic = b"\x85\x6f\x4a\x84" + good[4:]
    with am_cluster.client() as c:
        r = automerge.push(c, doc, bytes(bad_checksum) + second)
        assert codes(r) == ["BAD_CHECKSUM"] and r["errors"][0]["offset"] == 0
        assert (r["stored"], r["rejected"], r["pending"]) == (1, 1, 1)  # the second waits for the first
        r = automerge.push(c, doc, good[:-3])
        assert codes(r) == ["TRUNCATED"] and r["stored"] == 0
        r = automerge.push(c, doc, wrong_magic)
        assert codes(r) == ["BAD_MAGIC"] and r["stored"] == 0
        r = automerge.push(c, doc, good + b"junk")  # a good chunk, then garbage: the chunk is kept
        assert codes(r) == ["BAD_MAGIC"] and r["errors"][0]["offset"] == len(good) and r["stored"] == 1
        saved = base64.b64decode(peer.call("save", doc=doc)["bytes"])
        r = automerge.push(c, doc, saved)
        assert codes(r) == ["DOCUMENT_CHUNK"] and r["stored"] == 0
        assert automerge.heads(c, doc)["heads"] == peer.state(doc)["heads"]


def test_a_second_change_for_an_actor_and_seq_is_refused(am_cluster: LocalCluster, js: Js) -> None:
    doc = "forked-actor"
    a, b = js(), js()
    a.call("new", doc=doc, actor="abcd")
    b.call("new", doc=doc, actor="abcd")  # the same actor making a different first change
    a.call("change", doc=doc, fn="d.who = 'a'")
    b.call("change", doc=doc, fn="d.who = 'b'")
    with am_cluster.client() as c:
        assert automerge.push(c, doc, a.since(doc, []))["stored"] == 1
        r = automerge.push(c, doc, b.since(doc, []))
        assert codes(r) == ["DUPLICATE_SEQ"] and r["stored"] == 0 and r["errors"][0]["offset"] is None
        assert r["heads"] == a.state(doc)["heads"]


def test_big_changes_are_kept_as_blobs(am_cluster: LocalCluster, js: Js) -> None:
    doc = "big"
    peer = js()
    peer.call("new", doc=doc)
    # Over the inline bound (16 KiB) and over the KV value limit (1 MiB).
    peer.call("change", doc=doc, fn="d.a = 'x'.repeat(100000)")
    peer.call("change", doc=doc, fn="d.b = 'y'.repeat(2 * 1024 * 1024)")
    with am_cluster.client() as c:
        r = automerge.push(c, doc, peer.since(doc, []))
        assert (r["stored"], r["rejected"]) == (2, 0), r["errors"]
        fresh = js()
        fresh.load(doc, automerge.pull_all(c, doc).changes)
        assert fresh.state(doc) == peer.state(doc)


def test_get_list_delete(am_cluster: LocalCluster, js: Js) -> None:
    peer = js()
    peer.call("new", doc="listed-1")
    peer.call("change", doc="listed-1", fn="d.v = 1")
    chunk = peer.each("listed-1")[0]
    head = peer.state("listed-1")["heads"][0]
    with am_cluster.client() as c:
        automerge.push(c, "listed-1", chunk)
        automerge.push(c, "listed-2", chunk)
        got = automerge.get_change(c, "listed-1", head)
        assert (got["change"], got["hash"], got["seq"], got["deps"], got["complete"]) == (
            chunk,
            head,
            1,
            [],
            True,
        )
        assert automerge.list_docs(c, "listed-")["docs"] == ["listed-1", "listed-2"]
        r = automerge.delete_doc(c, "listed-1")
        assert r["deleted"] and r["keys_deleted"] == 2
        assert automerge.list_docs(c, "listed-")["docs"] == ["listed-2"]
        assert automerge.heads(c, "listed-1")["heads"] == []
        assert automerge.delete_doc(c, "listed-1")["deleted"] is False
        with pytest.raises(AspenError) as err:
            automerge.get_change(c, "listed-1", head)
        assert err.value.code == "NOT_FOUND"


@pytest.mark.parametrize(("rtype", "fields", "needle"), [
    ("AmPush", {"doc": "a:b", "changes": b""}, "doc id"),
    ("AmPush", {"doc": "d"}, "'changes'"),
    ("AmPull", {"doc": "d", "heads": ["zz"]}, "heads"),
    ("AmPull", {"doc": "d", "heads": ["ab" * 32] * 1025}, "at most 1024"),
    ("AmPull", {"doc": "d", "max_bytes": 0}, "max_bytes"),
    ("AmPull", {"doc": "d", "max_bytes": 32 * 1024 * 1024 + 1}, "max_bytes"),
    ("AmGetChange", {"doc": "d", "hash": "nope"}, "hash"),
    ("AmHeads", {"doc": "x" * 129}, "doc id"),
])
def test_requests_are_bounded(am_cluster: LocalCluster, rtype: str, fields: dict, needle: str) -> None:
    with am_cluster.client() as c, pytest.raises(AspenError) as err:
        c.request(rtype, **fields)
    assert err.value.code == "INVALID_REQUEST" and needle in err.value.message


def test_racing_pushes_through_every_node_store_one_change_per_actor_and_seq(am_cluster: LocalCluster,
                                                                              js: Js) -> None:
    # Two clients that share an actor id each make a different first change and a long tail;
    # six pushers (two per node) send them at once. Slots are claimed by CAS: whatever the
    # interleaving, one of the two histories wins seq 1 and every change is stored once.
    doc = "racing"
    a, b = js(), js()
    for peer, who in ((a, "a"), (b, "b")):
        peer.call("new", doc=doc, actor="abcd")
        peer.call("many", doc=doc, n=40, fn=f"d.who = '{who}' + i")
    histories = [a.since(doc, []), b.since(doc, [])]
    addrs = am_cluster.endpoints.split(",")
    results: list[dict] = []
    failures: list[BaseException] = []
    start = threading.Barrier(6)

    def pusher(i: int) -> None:
        try:
            with Client(addrs[i % 3], am_cluster.cookie, 30.0, discover_leader=False) as c:
                start.wait(timeout=30)
                for _ in range(3):
                    results.append(automerge.push(c, doc, histories[i % 2]))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures
    assert sum(r["stored"] for r in results) == 40  # one history, each change once
    with am_cluster.client() as c:
        server = automerge.heads(c, doc)
        assert (server["changes"], server["pending"]) == (40, 0)
        winner = a if server["heads"] == a.state(doc)["heads"] else b
        assert server["heads"] == winner.state(doc)["heads"]
        fresh = js()
        fresh.load(doc, automerge.pull_all(c, doc).changes)
        assert fresh.state(doc) == winner.state(doc)
    loser_pushes = [r for r in results if r["stored"] == 0 and r["rejected"]]
    assert loser_pushes and all(set(codes(r)) == {"DUPLICATE_SEQ"} for r in loser_pushes)
