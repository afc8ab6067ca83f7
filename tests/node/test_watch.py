"""Watch (issue 16, item 6) against real node processes on 127.0.0.1: ordered events with
revisions, key and prefix, resuming from a revision, from the future, from any node; every
bound crossed: the retained history (COMPACTED), a connection that does not read (the node's
WATCH_OVERFLOW), a caller that does not take events (the client's), streams per connection;
cancel; bad requests; the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import pytest

from aspen.client import STREAM_EVENTS_MAX, AsyncClient
from aspen.server import STREAMS_MAX
from aspen.watch import HISTORY_MAX_EVENTS
from deploy.launcher import LocalCluster
from tests.node.test_cli import cli
from wire.errors import AspenError


def run(coro: Coroutine[Any, Any, Any], timeout_s: float = 120) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def aclient(cluster: LocalCluster, node_ids: list[int] | None = None, **kwargs: Any) -> AsyncClient:
    ids = node_ids or list(cluster.nodes)
    return AsyncClient([cluster.nodes[i].client_addr for i in ids], cluster.cookie, 10.0, **kwargs)


async def take(events: Any, count: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        async for event in events:
            if event["type"] != "PROGRESS":
                out.append(event)
                if len(out) == count:
                    break
    return out


def test_events_in_order_key_prefix_resume_future_any_node(shared_cluster: LocalCluster) -> None:
    async def go() -> None:
        async with aclient(shared_cluster) as c:
            live = c.watch(prefix="wa/")
            first = asyncio.ensure_future(take(live, 6))
            await asyncio.sleep(0.5)  # the watch is in place (WatchCreated has come)
            w1 = await c.put("wa/1", b"one")
            await c.put("wb/x", b"not watched")
            w2 = await c.put("wa/2", b"two")
            w3 = await c.put("wa/1", b"uno")
            b = await c.batch(
                [{"op": "Set", "key": "wa/3", "value": b"three"}, {"op": "Delete", "key": "wa/2"}]
            )
            d = await c.delete("wa/1")
            got = await first
            await live.aclose()
            assert got == [
                {
                    "type": "PUT",
                    "key": "wa/1",
                    "value": b"one",
                    "mod_revision": w1["revision"],
                    "version": 1,
                    "create_revision": w1["revision"],
                },
                {
                    "type": "PUT",
                    "key": "wa/2",
                    "value": b"two",
                    "mod_revision": w2["revision"],
                    "version": 1,
                    "create_revision": w2["revision"],
                },
                {
                    "type": "PUT",
                    "key": "wa/1",
                    "value": b"uno",
                    "mod_revision": w3["revision"],
                    "version": 2,
                    "create_revision": w1["revision"],
                },
                {
                    "type": "PUT",
                    "key": "wa/3",
                    "value": b"three",
                    "mod_revision": b["revision"],
                    "version": 1,
                    "create_revision": b["revision"],
                },
                {"type": "DELETE", "key": "wa/2", "mod_revision": b["revision"]},
                {"type": "DELETE", "key": "wa/1", "mod_revision": d["revision"]},
            ]
            # The same history again from a past revision, one key only, on each node alone.
            for node_id in shared_cluster.nodes:
                async with aclient(shared_cluster, [node_id], pin=True) as one:
                    again = await take(one.watch("wa/1", start_revision=w2["revision"]), 2)
                    assert [(e["type"], e["mod_revision"]) for e in again] == [
                        ("PUT", w3["revision"]),
                        ("DELETE", d["revision"]),
                    ]
            # From a revision still to come: nothing before it.
            future = asyncio.ensure_future(take(c.watch(prefix="wa/", start_revision=d["revision"] + 2), 1))
            await c.put("wa/early", b"at revision d+1: not shown")
            late = await c.put("wa/late", b"shown")
            assert [e["key"] for e in await future] == ["wa/late"] and late["revision"] == d["revision"] + 2

    run(go())


def test_progress_notifications(shared_cluster: LocalCluster) -> None:
    async def go() -> None:
        async with aclient(shared_cluster) as c:
            before = (await c.put("wp/x", b"1"))["revision"]
            events = c.watch(prefix="wp/", progress_ms=100)
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(30):
                async for event in events:
                    seen.append(event)
                    if len(seen) == 3:
                        break
            await events.aclose()
            assert all(e["type"] == "PROGRESS" and e["revision"] >= before for e in seen), seen
            with pytest.raises(AspenError) as err:
                await take(c.watch(prefix="wp/", progress_ms=10), 1)
            assert err.value.code == "INVALID_REQUEST"

    run(go())


def test_history_bound_gives_compacted_with_the_oldest_revision(shared_cluster: LocalCluster) -> None:
    async def go() -> int:
        async with aclient(shared_cluster) as c:
            start = (await c.put("wh/first", b"x"))["revision"]
            batches = HISTORY_MAX_EVENTS // 1000 + 1  # one more batch than the history holds
            for n in range(batches):
                await c.batch([{"op": "Set", "key": f"wh/{n}/{i}", "value": b"v"} for i in range(1000)])
            with pytest.raises(AspenError) as err:
                await take(c.watch(prefix="wh/", start_revision=start), 1)
            oldest = err.value.error.details["oldest_revision"]
            assert err.value.code == "COMPACTED" and oldest > start + 1
            # From the oldest revision kept: every event from there on, in order.
            got = await take(c.watch(prefix="wh/", start_revision=oldest), 1000)
            assert {e["mod_revision"] for e in got} == {oldest}
            return start

    start = run(go())
    r = cli(shared_cluster, "kv", "watch", "wh/", "--rev", str(start))
    assert (
        r.returncode == 1
        and r.stderr.startswith("error: COMPACTED: ")
        and "(watch again with --rev " in r.stderr
    ), r.stderr


def test_a_connection_that_does_not_read_is_ended_with_overflow(shared_cluster: LocalCluster) -> None:
    async def go() -> None:
        async with aclient(shared_cluster) as c, aclient(shared_cluster) as writer:
            events = c.watch(prefix="wo/")
            task = asyncio.ensure_future(take(events, 1))
            await asyncio.sleep(0.5)
            await writer.put("wo/start", b"s")
            await task
            conn = next(conn for conn in c._conns.values() if conn.streams)  # the watch's, not discovery's
            conn.transport.pause_reading()  # a peer that stops reading
            big = b"v" * (1024 * 1024)
            revisions = [(await writer.put(f"wo/{i}", big))["revision"] for i in range(48)]
            conn.transport.resume_reading()
            got: list[dict[str, Any]] = []
            with pytest.raises(AspenError) as err:
                async with asyncio.timeout(60):
                    async for event in events:
                        got.append(event)
            assert err.value.code == "WATCH_OVERFLOW", err.value
            resume = err.value.error.details["resume_revision"]
            # Nothing skipped: what came is a prefix of the writes, and the resume revision is
            # the first write that did not come.
            assert [e["mod_revision"] for e in got] == revisions[: len(got)] and len(got) < len(revisions)
            assert resume == revisions[len(got)]
            rest = await take(c.watch(prefix="wo/", start_revision=resume), len(revisions) - len(got))
            assert [e["mod_revision"] for e in rest] == revisions[len(got) :]

    run(go())


def test_a_caller_that_does_not_take_events_is_ended_with_overflow(shared_cluster: LocalCluster) -> None:
    async def go() -> None:
        async with aclient(shared_cluster) as c, aclient(shared_cluster) as writer:
            events = c.watch(prefix="wc/")
            task = asyncio.ensure_future(take(events, 1))
            await asyncio.sleep(0.5)
            first = (await writer.put("wc/start", b"s"))["revision"]
            await task
            # More events than the client buffers, one revision per batch.
            for n in range(STREAM_EVENTS_MAX // 1000 + 1):
                await writer.batch(
                    [{"op": "Set", "key": f"wc/{n}/{i:04d}", "value": b"v"} for i in range(1000)]
                )
            await asyncio.sleep(2)
            got: list[int] = []
            with pytest.raises(AspenError) as err:
                async with asyncio.timeout(30):
                    async for event in events:
                        got.append(event["mod_revision"])
            assert err.value.code == "WATCH_OVERFLOW"
            resume = err.value.error.details["resume_revision"]
            # Whole revisions (batches) came, in order. The client cannot know whether the last
            # one was whole (the frame it dropped may have held more of it), so it resumes there:
            # a resume repeats events of that revision, it never skips one.
            revisions = sorted(set(got))
            assert revisions == list(range(first + 1, first + 1 + len(revisions)))
            assert all(got.count(r) == 1000 for r in revisions[:-1]) and resume == revisions[-1]
            again = await take(c.watch(prefix="wc/", start_revision=resume), 1000)
            assert {e["mod_revision"] for e in again} == {resume}
            assert len(got) <= STREAM_EVENTS_MAX

    run(go())


def test_cancel_and_streams_per_connection(shared_cluster: LocalCluster) -> None:
    async def go() -> None:
        async with aclient(shared_cluster, [1], pin=True) as c:
            await c.ping()
            conn = next(iter(c._conns.values()))
            frames: dict[int, list[Any]] = {}
            ids = [
                conn.open_stream({"type": "Watch", "prefix": "ws/"}, frames.setdefault(i, []).append)
                for i in range(STREAMS_MAX + 1)
            ]
            await asyncio.sleep(1)
            over = frames[STREAMS_MAX]
            assert len(over) == 1 and over[0]["type"] == "Error" and over[0]["code"] == "OVERLOADED"
            assert all(frames[i][0]["type"] == "WatchCreated" for i in range(STREAMS_MAX))
            reply = await c.request("CancelStream", request_id=ids[0])
            assert reply == {"type": "CancelStreamResult", "canceled": True}
            await asyncio.sleep(0.5)
            assert frames[0][-1]["type"] == "StreamCanceled"
            assert (await c.request("CancelStream", request_id=ids[0]))["canceled"] is False
            # The slot is free again.
            again: list[Any] = []
            conn.open_stream({"type": "Watch", "prefix": "ws/"}, again.append)
            await asyncio.sleep(0.5)
            assert again and again[0]["type"] == "WatchCreated"

    run(go())


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, "INVALID_REQUEST"),
        ({"key": "a", "prefix": "a"}, "INVALID_REQUEST"),
        ({"prefix": 5}, "INVALID_REQUEST"),
        ({"prefix": "p" * 1025}, "KEY_TOO_LARGE"),
        ({"key": "__aspen/x"}, "RESERVED_KEY"),
        ({"key": ""}, "INVALID_REQUEST"),
        ({"prefix": "", "start_revision": -1}, "INVALID_REQUEST"),
        ({"prefix": "", "start_revision": "1"}, "INVALID_REQUEST"),
        ({"prefix": "", "progress_ms": 49}, "INVALID_REQUEST"),
        ({"prefix": "", "progress_ms": 600_001}, "INVALID_REQUEST"),
    ],
)
def test_bad_watches_are_refused(shared_cluster: LocalCluster, fields: dict[str, Any], code: str) -> None:
    async def go() -> None:
        async with aclient(shared_cluster, [1], pin=True) as c:
            await c.ping()
            conn = next(iter(c._conns.values()))
            got: list[Any] = []
            conn.open_stream({"type": "Watch", **fields}, got.append)
            async with asyncio.timeout(10):
                while not got:
                    await asyncio.sleep(0.02)
            assert got[0]["type"] == "Error" and got[0]["code"] == code, got

    run(go())


def test_cli_watch(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        r1 = c.put("wcli/a", "1")["revision"]
        c.put("wcli/b", bytes([0xFF]))
        r3 = c.delete("wcli/a")["revision"]
    r = cli(shared_cluster, "kv", "watch", "wcli/", "--rev", str(r1), "--count", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"PUT wcli/a 1 revision={r1}" and lines[2] == f"DELETE wcli/a revision={r3}", lines
    r = cli(shared_cluster, "kv", "watch", "wcli/a", "--exact", "--rev", str(r1), "--count", "2", "--json")
    assert [json.loads(line)["type"] for line in r.stdout.splitlines()] == ["PUT", "DELETE"]
    r = cli(shared_cluster, "kv", "watch", "wcli/", "--rev", str(r1), "--count", "1", "--node", "2")
    assert (r.returncode, r.stdout) == (0, f"PUT wcli/a 1 revision={r1}\n"), r.stderr
    for bad in (["--rev", "-1"], ["--count", "0"], ["--progress-ms", "10"]):
        r = cli(shared_cluster, "kv", "watch", "wcli/", *bad)
        assert r.returncode == 2 and r.stderr.startswith("error: INVALID_REQUEST: "), r.stderr


def test_watches_per_node_bound(shared_cluster: LocalCluster) -> None:
    from aspen.watch import WATCHERS_MAX

    async def go() -> None:
        per_conn = STREAMS_MAX
        clients = [aclient(shared_cluster, [2], pin=True) for _ in range(WATCHERS_MAX // per_conn + 1)]
        try:
            frames: list[list[Any]] = []
            for c in clients:
                await c.ping()
            for n in range(WATCHERS_MAX + 1):
                conn = next(iter(clients[n // per_conn]._conns.values()))
                got: list[Any] = []
                frames.append(got)
                conn.open_stream({"type": "Watch", "prefix": "wn/"}, got.append)
                if n % per_conn == per_conn - 1:
                    await asyncio.sleep(0.2)  # let the node take these before the next connection's
            async with asyncio.timeout(30):
                while not all(frames):
                    await asyncio.sleep(0.05)
            kinds = [f[0]["type"] for f in frames]
            assert kinds.count("WatchCreated") == WATCHERS_MAX, kinds.count("WatchCreated")
            refused = [f[0] for f in frames if f[0]["type"] == "Error"]
            assert [e["code"] for e in refused] == ["OVERLOADED"] and "watches already run" in refused[0][
                "message"
            ]
        finally:
            for c in clients:
                await c.close()
        # Closed connections end their watches: the node takes new ones again.
        async with aclient(shared_cluster, [2], pin=True) as c:
            w = c.watch(prefix="wn/")
            writer = asyncio.ensure_future(take(w, 1))
            await asyncio.sleep(0.5)
            async with aclient(shared_cluster) as other:
                await other.put("wn/x", b"1")
            assert [e["key"] for e in await writer] == ["wn/x"]

    run(go())
