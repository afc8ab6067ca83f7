"""Real Automerge clients converging through the plugin on a 3-node cluster."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable

from aspen import automerge
from aspen.client import Client
from deploy.launcher import LocalCluster
from tests.automerge.conftest import JsClient

Js = Callable[[], JsClient]


def node_client(cluster: LocalCluster, index: int) -> Client:
    """A client pinned to one node: its requests run in that node's copy of the plugin."""
    addrs = cluster.endpoints.split(",")
    return Client(addrs[index % len(addrs)], cluster.cookie, 30.0, discover_leader=False)


def sync(peer: JsClient, c: Client, doc: str) -> None:
    """The client loop of docs/AUTOMERGE.md: pull what we lack, then push what the server lacks."""
    mine = peer.state(doc)["heads"]
    pulled = automerge.pull_all(c, doc, mine)
    if pulled.changes:
        peer.apply(doc, pulled.changes)
    ours = peer.since(doc, pulled.heads)
    if ours:
        r = automerge.push(c, doc, ours)
        assert r["rejected"] == 0, r["errors"]


def test_concurrent_editors_through_different_nodes_converge(am_cluster: LocalCluster, js: Js) -> None:
    doc = "converge"
    peers = [js() for _ in range(3)]
    clients = [node_client(am_cluster, i) for i in range(3)]
    try:
        peers[0].call("new", doc=doc)
        peers[0].call("change", doc=doc, fn="d.title = 'notes'; d.items = []; d.text = 'hello'")
        automerge.push(clients[0], doc, peers[0].since(doc, []))
        for p in peers[1:]:
            p.call("new", doc=doc)
        for p, c in zip(peers[1:], clients[1:], strict=True):
            sync(p, c, doc)
        failures: list[BaseException] = []

        def editor(i: int) -> None:
            try:
                for round_ in range(10):
                    peers[i].call("change", doc=doc, fn=(
                        f"d.items.push('p{i}-{round_}'); d['by{i}'] = {round_}; "
                        f"A.splice(d, ['text'], 0, 0, '{i}'); d.title = 'title by {i}'"))
                    sync(peers[i], clients[i], doc)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=editor, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not failures, failures
        for _ in range(2):  # a second round brings everyone what the others pushed last
            for p, c in zip(peers, clients, strict=True):
                sync(p, c, doc)
        states = [p.state(doc) for p in peers]
        server = automerge.heads(clients[2], doc)
        assert states[0]["json"] == states[1]["json"] == states[2]["json"]
        assert states[0]["heads"] == states[1]["heads"] == states[2]["heads"] == server["heads"]
        assert len(states[0]["json"]["items"]) == 30 and len(states[0]["json"]["text"]) == 5 + 30
        assert server["pending"] == 0 and server["missing_deps"] == []
        # A fresh client loading a full pull gets the same document.
        fresh = js()
        fresh.load(doc, automerge.pull_all(clients[1], doc).changes)
        assert fresh.state(doc) == states[0]
    finally:
        for c in clients:
            c.close()


def test_pushes_in_any_order_and_twice_store_each_change_once(am_cluster: LocalCluster, js: Js) -> None:
    doc = "shuffled"
    peer = js()
    peer.call("new", doc=doc)
    peer.call("many", doc=doc, n=20, fn="d['k' + (i % 3)] = i")
    chunks = peer.each(doc)
    with am_cluster.client() as c:
        stored = duplicate = 0
        for chunk in reversed(chunks):
            r = automerge.push(c, doc, chunk + chunk)  # each one twice in the same push
            stored, duplicate = stored + r["stored"], duplicate + r["duplicate"]
        assert (stored, duplicate) == (20, 20)
        r = automerge.push(c, doc, b"".join(chunks))  # all of them again
        assert (r["stored"], r["duplicate"], r["rejected"]) == (0, 20, 0)
        assert r["heads"] == peer.state(doc)["heads"] and r["pending"] == 0
        fresh = js()
        fresh.load(doc, automerge.pull_all(c, doc).changes)
        assert fresh.state(doc) == peer.state(doc)


def test_a_change_with_missing_deps_is_held_back_until_they_arrive(am_cluster: LocalCluster, js: Js) -> None:
    doc = "held-back"
    peer = js()
    peer.call("new", doc=doc)
    peer.call("many", doc=doc, n=5, fn="d.n = i")
    chunks = peer.each(doc)
    first = peer.call("hash", changes=[base64.b64encode(chunks[0]).decode()])["hashes"][0]
    with am_cluster.client() as c:
        r = automerge.push(c, doc, b"".join(chunks[1:]))
        assert (r["stored"], r["pending"], r["heads"], r["missing_deps"]) == (4, 4, [], [first])
        pulled = automerge.pull(c, doc)
        assert (pulled["count"], pulled["changes"], pulled["heads"]) == (0, b"", [])
        r = automerge.push(c, doc, chunks[0])
        assert (r["stored"], r["pending"], r["missing_deps"]) == (1, 0, [])
        assert r["heads"] == peer.state(doc)["heads"]
        assert automerge.pull_all(c, doc).count == 5


def test_a_document_of_ten_thousand_changes(am_cluster: LocalCluster, js: Js) -> None:
    doc = "ten-thousand"
    peer = js()
    peer.call("new", doc=doc)
    peer.call("many", doc=doc, n=10_000, fn="d['k' + (i % 100)] = i")
    with am_cluster.client() as c:
        everything = peer.since(doc, [])
        r = automerge.push(c, doc, everything)
        assert (r["stored"], r["rejected"], r["pending"]) == (10_000, 0, 0)
        assert r["heads"] == peer.state(doc)["heads"]
        whole = automerge.pull_all(c, doc)
        assert whole.count == 10_000 and whole.pages == 1
        fresh = js()
        fresh.load(doc, whole.changes)
        assert fresh.state(doc) == peer.state(doc)
        # Paged: every page within its bound (but for a lone big change), chained by next_heads.
        paged = automerge.pull_all(c, doc, max_bytes=64 * 1024)
        assert paged.count == 10_000 and paged.pages > 1
        again = js()
        again.load(doc, paged.changes)
        assert again.state(doc)["heads"] == peer.state(doc)["heads"]
        # A holder of the first 9,990 changes gets the last 10.
        peer.call("new", doc="copy")
        behind = js()
        behind.load(doc, b"".join(automerge.split_chunks(everything)[:9_990]))
        lacking = automerge.pull_all(c, doc, behind.state(doc)["heads"])
        assert lacking.count == 10
        behind.apply(doc, lacking.changes)
        assert behind.state(doc) == peer.state(doc)
