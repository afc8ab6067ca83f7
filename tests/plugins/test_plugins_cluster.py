"""Plugins on a real 3-node cluster: registry, distribution, dispatch, upgrades, timers, hooks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy.launcher import LocalCluster
from tests.plugins.wat import manifest, plugin
from wire.errors import AspenError


def install(c: Any, wasm: bytes, man: dict, **fields: Any) -> dict:
    return c.request("PluginInstall", manifest=man, wasm=wasm, **fields)


def eventually(check: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except AspenError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def each_node(cluster: LocalCluster, fn: Callable[[Any], Any]) -> list[Any]:
    out = []
    for nid in cluster.nodes:
        with cluster.client([nid], discover_leader=False) as c:
            out.append(fn(c))
    return out


def pinger(version: str) -> bytes:
    return plugin("pinger", version, {"type": "PluginPong", "version": version})


def test_install_through_a_follower_served_by_every_node(shared_cluster: LocalCluster) -> None:
    leader = shared_cluster.wait_leader()
    follower = next(n for n in shared_cluster.nodes if n != leader)
    with shared_cluster.client([follower], discover_leader=False) as c:
        r = install(c, pinger("1.0.0"), manifest("pinger", "1.0.0", ["PluginPing"]))
        assert r["name"] == "pinger" and r["upgraded"] is False
    for nid in shared_cluster.nodes:
        with shared_cluster.client([nid], discover_leader=False) as c:
            eventually(lambda c=c: c.request("PluginPing")["version"] == "1.0.0", what=f"node {nid} serving")
    regs = each_node(shared_cluster, lambda c: c.request("PluginList")["plugins"])
    assert all(r == regs[0] for r in regs) and regs[0][0]["name"] == "pinger"
    with shared_cluster.client() as c:
        info = c.request("PluginInfo", name="pinger")
        assert set(info["nodes"]) == {"1", "2", "3"}
        assert all(st["state"] == "Ready" for st in info["nodes"].values())


def test_custom_request_type_and_unknown_types(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        install(
            c,
            plugin("custom", "1.0.0", {"type": "Custom", "ok": True}),
            manifest("custom", "1.0.0", ["MyNewRequest"]),
        )
        eventually(lambda: c.request("MyNewRequest", anything=[1, 2])["ok"] is True)
        with pytest.raises(AspenError) as err:
            c.request("NobodyHandlesThis")
        assert err.value.code == "UNKNOWN_REQUEST"


@pytest.mark.parametrize("reads_kv", [False, True], ids=["plain", "kv-reading"])
def test_upgrade_under_load_never_fails_a_request(shared_cluster: LocalCluster, reads_kv: bool) -> None:
    # A KV-reading plugin's request waits for a read barrier before it reaches the plugin: an
    # upgrade that lands meanwhile must not strand it on the retired version.
    name, rtype = ("up-kv", "UpKvPing") if reads_kv else ("up", "UpPing")

    def version(v: str) -> tuple[bytes, dict]:
        if not reads_kv:
            return plugin(name, v, {"type": "V", "v": int(v[0])}), manifest(name, v, [rtype])
        wasm = plugin(name, v, {"type": "V", "v": int(v[0])}, imports=("kv_get_value",), strings=(b"upkv:k",),
                      handle="(drop (call $kv_get_value $s0))")
        return wasm, manifest(name, v, [rtype], kv_prefixes=["upkv:"], permissions={"kv_read": True})

    with shared_cluster.client() as c:
        install(c, *version("1.0.0"))
    for nid in shared_cluster.nodes:
        with shared_cluster.client([nid], discover_leader=False) as cn:
            eventually(lambda cn=cn: cn.request(rtype)["v"] == 1)
    failures: list[Exception] = []
    seen: set[int] = set()
    stop = threading.Event()

    def load(nid: int) -> None:
        with shared_cluster.client([nid], discover_leader=False) as cn:
            while not stop.is_set():
                try:
                    seen.add(cn.request(rtype)["v"])
                except Exception as exc:  # every request must be served by v1 or v2
                    failures.append(exc)

    threads = [threading.Thread(target=load, args=(nid,)) for nid in shared_cluster.nodes]
    for t in threads:
        t.start()
    time.sleep(0.5)
    with shared_cluster.client() as c:
        r = install(c, *version("2.0.0"))
        assert r["upgraded"] is True
    for nid in shared_cluster.nodes:
        with shared_cluster.client([nid], discover_leader=False) as cn:
            eventually(lambda cn=cn: cn.request(rtype)["v"] == 2)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(10)
    assert failures == [] and seen == {1, 2}


def test_disable_enable_remove(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        install(c, plugin("toggle", "1.0.0", {"type": "On"}), manifest("toggle", "1.0.0", ["TogglePing"]))
        eventually(lambda: c.request("TogglePing")["type"] == "On")
        c.request("PluginDisable", name="toggle")
        for nid in shared_cluster.nodes:
            with shared_cluster.client([nid], discover_leader=False) as cn:
                eventually(lambda cn=cn: _unknown(cn, "TogglePing"), what="disabled everywhere")
        c.request("PluginEnable", name="toggle")
        eventually(lambda: c.request("TogglePing")["type"] == "On")
        c.request("PluginRemove", name="toggle")
        for nid in shared_cluster.nodes:
            with shared_cluster.client([nid], discover_leader=False) as cn:
                eventually(lambda cn=cn: _unknown(cn, "TogglePing"), what="removed everywhere")
        assert "toggle" not in [p["name"] for p in c.request("PluginList")["plugins"]]
        with pytest.raises(AspenError) as err:
            c.request("PluginRemove", name="toggle")
        assert err.value.code == "NOT_FOUND"


def _unknown(c: Any, rtype: str) -> bool:
    try:
        c.request(rtype)
        return False
    except AspenError as exc:
        return exc.code == "UNKNOWN_REQUEST"


def test_priority_between_two_plugins(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        install(
            c,
            plugin("low", "1.0.0", {"type": "By", "who": "low"}),
            manifest("low", "1.0.0", ["Shared"], priority=920),
        )
        install(
            c,
            plugin("high", "1.0.0", {"type": "By", "who": "high"}),
            manifest("high", "1.0.0", ["Shared"], priority=910),
        )
        eventually(lambda: c.request("Shared")["who"] == "high")
        c.request("PluginDisable", name="high")
        eventually(lambda: c.request("Shared")["who"] == "low")
        # Native handlers always come before plugins: a plugin handling Ping does not take it.
        install(
            c,
            plugin("pingthief", "1.0.0", {"type": "Stolen"}),
            manifest("pingthief", "1.0.0", ["Ping"], priority=900),
        )
        time.sleep(0.5)
        assert c.request("Ping")["type"] == "Pong"


def test_kv_namespace_routes_to_the_owning_plugin(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        wasm = plugin("nsowner", "1.0.0", {"type": "WriteResult", "revision": 0, "by": "nsowner"})
        install(c, wasm, manifest("nsowner", "1.0.0", ["WriteKey"], kv_prefixes=["myprefix:"]))
        eventually(lambda: c.put("myprefix:key1", b"value1").get("by") == "nsowner")
        assert "by" not in c.put("other:key1", b"value1")  # outside the namespace: native
        assert c.get("myprefix:key1")["was_found"] is False  # ReadKey is not handled by it: native


def test_bad_installs_are_refused_with_clear_errors(shared_cluster: LocalCluster) -> None:
    good = plugin("strict", "1.0.0", {"type": "X"})
    with shared_cluster.client() as c:
        for bad, expect in (
            (manifest("bad name!", "1.0.0", ["X"]), "name"),
            (manifest("strict", "1.0.0", []), "handles"),
            (manifest("strict", "1.0.0", ["not a type"]), "handles"),
            (manifest("strict", "1.0.0", ["X"], priority=899), "priority"),
            (manifest("strict", "1.0.0", ["X"], kv_prefixes=[""]), "kv_prefixes"),
            (manifest("strict", "1.0.0", ["X"], permissions={"root": True}), "permissions"),
            (manifest("strict", "2.0.0", ["X"]), "plugin_info says strict 1.0.0"),
            (manifest("other", "1.0.0", ["X"]), "plugin_info says strict"),
        ):
            with pytest.raises(AspenError) as err:
                install(c, good, bad)
            assert err.value.code == "INVALID_REQUEST" and expect in err.value.message, (
                expect,
                err.value.message,
            )
        wasi = bytes(
            __import__("wasmtime").wat2wasm(
                '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result '
                'i32))))'
            )
        )
        with pytest.raises(AspenError) as err:
            install(c, wasi, manifest("strict", "1.0.0", ["X"]))
        assert "UNKNOWN_IMPORT" in err.value.message and "fd_write" in err.value.message
        assert "strict" not in [p["name"] for p in c.request("PluginList")["plugins"]]


def test_looping_plugin_fails_without_disturbing_others(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        spin = plugin("spinner", "1.0.0", {"type": "Never"}, handle="(loop $l (br $l))")
        install(c, spin, manifest("spinner", "1.0.0", ["Spin"], fuel_limit=2_000_000))
        install(c, plugin("calm", "1.0.0", {"type": "Calm"}), manifest("calm", "1.0.0", ["CalmPing"]))
        eventually(lambda: c.request("CalmPing")["type"] == "Calm")
        codes = []
        for _ in range(6):
            try:
                c.request("Spin")
            except AspenError as exc:
                codes.append(str(exc.code))
        # Failed on the node that ran the first five: the sixth is served by a node where it is
        # still Ready (aspen/plugins/manager.py, _forward), and runs out of fuel there too.
        assert codes == ["FUEL_EXHAUSTED"] * 6
        info = c.request("PluginInfo", name="spinner")
        leader_state = info["nodes"][str(shared_cluster.wait_leader())]["state"]
        assert leader_state == "Failed"
        assert c.request("CalmPing")["type"] == "Calm" and c.put("still/ok", b"1")["revision"] > 0


def test_timers_fire_and_cancel(shared_cluster: LocalCluster) -> None:
    timer_cfg = __import__("msgpack").packb({"name": "tick", "interval_ms": 1000, "repeat": True})
    wasm = plugin(
        "ticker", "1.0.0", {"type": "Stopped"},
        imports=("schedule_timer_on_host", "cancel_timer_on_host", "kv_put_value"),
        strings=(timer_cfg, b"tick", b"ticker:fired"),
        init="(drop (call $schedule_timer_on_host $s0))",
        on_timer="(drop (call $kv_put_value $s2 (local.get $p) (local.get $n)))",
        handle="(drop (call $cancel_timer_on_host $s1))",
    )
    with shared_cluster.client() as c:
        install(c, wasm, manifest("ticker", "1.0.0", ["StopTicker"], kv_prefixes=["ticker:"],
                                  permissions={"timers": True, "kv_write": True}))
        eventually(lambda: c.get("ticker:fired")["was_found"], what="the timer to fire")
        info = c.request("PluginInfo", name="ticker")
        assert all(st.get("timers") == ["tick"] for st in info["nodes"].values())
        # Cancel on every node (each node runs its own timers), then the key stays deleted.
        for nid in shared_cluster.nodes:
            with shared_cluster.client([nid], discover_leader=False) as cn:
                cn.request("StopTicker")
        time.sleep(1.5)
        c.delete("ticker:fired")
        time.sleep(2.5)
        assert c.get("ticker:fired")["was_found"] is False


def hook_plugin(name: str, pattern: bytes) -> bytes:
    return plugin(
        name, "1.0.0", {"type": "Ok"},
        imports=("subscribe_hook_events", "kv_put_value"),
        strings=(pattern, f"{name}:last".encode()),
        init="(drop (call $subscribe_hook_events $s0))",
        on_hook="(drop (call $kv_put_value $s1 (local.get $p) (local.get $n)))",
    )


def delivered(c: Any, name: str) -> dict[str, dict]:
    return c.request("PluginInfo", name=name)["nodes"]


def test_hook_events_delivered_once_filtered_and_never_to_their_writer(shared_cluster: LocalCluster) -> None:
    import msgpack

    perms = {"hooks": True, "kv_write": True}
    with shared_cluster.client() as c:
        install(c, hook_plugin("auditw", b"hooks.kv.write_committed"),
                manifest("auditw", "1.0.0", ["AuditW"], kv_prefixes=["auditw:"], permissions=perms))
        for nid in shared_cluster.nodes:
            eventually(
                lambda nid=nid: (
                    delivered(c, "auditw")[str(nid)].get("subscriptions") == ["hooks.kv.write_committed"]
                )
            )
        for i in range(5):
            c.put(f"hooked/{i}", b"x")
        c.delete("hooked/0")  # filtered out by the pattern
        eventually(lambda: msgpack.unpackb(c.get("auditw:last")["value"])["key"] == "hooked/4")
        time.sleep(1.5)  # let any feedback loop show itself
        for node, st in delivered(c, "auditw").items():
            # Every node's instance got each client write exactly once, and none of the
            # writes its own instances (on any node) made.
            assert st["events_delivered"] == 5, (node, st)
            assert st["events_dropped"] == 0 and st["events_suppressed"] >= 5, (node, st)
        event = msgpack.unpackb(c.get("auditw:last")["value"])
        assert event["subject"] == "hooks.kv.write_committed" and event["depth"] == 0 and event["index"] > 0


def test_two_hook_plugins_cannot_ping_pong_forever(shared_cluster: LocalCluster) -> None:
    perms = {"hooks": True, "kv_write": True}
    with shared_cluster.client() as c:
        install(c, hook_plugin("echo-a", b"hooks.kv.*"),
                manifest("echo-a", "1.0.0", ["EchoA"], kv_prefixes=["echo-a:"], permissions=perms))
        install(c, hook_plugin("echo-b", b"hooks.>"),
                manifest("echo-b", "1.0.0", ["EchoB"], kv_prefixes=["echo-b:"], permissions=perms))
        for name in ("echo-a", "echo-b"):
            for nid in shared_cluster.nodes:
                eventually(lambda name=name, nid=nid: delivered(c, name)[str(nid)].get("subscriptions"))
        c.put("pingpong/start", b"go")
        eventually(lambda: c.get("echo-b:last")["was_found"])
        time.sleep(2.0)
        r1 = c.put("pingpong/probe", b"1")["revision"]
        time.sleep(2.0)
        r2 = c.put("pingpong/probe", b"2")["revision"]
        # Each write feeds plugins at most HOOK_DEPTH_MAX (2) levels deep, then stops: with 3
        # writing subscribers on 3 nodes that is 9 + 54 writes, and then quiet.
        assert r2 - r1 < 200, f"hook handlers kept writing ({r2 - r1} revisions in 2 s): a feedback loop"
        suppressed = sum(st["events_suppressed"] for st in delivered(c, "echo-a").values())
        assert suppressed > 0


def test_node_down_during_install_serves_after_restart(cluster: LocalCluster, tmp_path: Path) -> None:
    leader = cluster.wait_leader()
    down = next(n for n in cluster.nodes if n != leader)
    cluster.kill(down)
    with cluster.client([leader], discover_leader=False) as c:
        install(c, pinger("1.0.0"), manifest("pinger", "1.0.0", ["PluginPing"]))
    cluster.start(down)
    with cluster.client([down], discover_leader=False, timeout_s=20) as c:
        eventually(
            lambda: c.request("PluginPing")["version"] == "1.0.0", timeout_s=30, what="restarted node serving"
        )
        assert c.request("PluginLocalStatus")["plugins"]["pinger"]["state"] == "Ready"


def test_leader_killed_during_install(cluster: LocalCluster) -> None:
    leader = cluster.wait_leader()
    outcome: dict[str, Any] = {}

    def do_install() -> None:
        try:
            with cluster.client(timeout_s=20) as c:
                outcome["r"] = install(c, pinger("1.0.0"), manifest("pinger", "1.0.0", ["PluginPing"]))
        except AspenError as exc:
            outcome["e"] = exc

    t = threading.Thread(target=do_install)
    t.start()
    time.sleep(0.05)
    cluster.kill(leader)
    t.join(30)
    cluster.wait_leader(exclude=leader)
    if "e" in outcome:  # a clear error; installing again works
        assert outcome["e"].code in ("UNAVAILABLE", "TIMEOUT"), outcome["e"]
        with cluster.client(timeout_s=20) as c:
            install(c, pinger("1.0.0"), manifest("pinger", "1.0.0", ["PluginPing"]))
    cluster.start(leader)
    for nid in cluster.nodes:
        with cluster.client([nid], discover_leader=False, timeout_s=20) as c:
            eventually(lambda c=c: c.request("PluginPing")["version"] == "1.0.0", timeout_s=30)
    regs = each_node(cluster, lambda c: c.request("PluginList")["plugins"])
    assert all(r == regs[0] for r in regs)
