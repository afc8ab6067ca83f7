"""Namespace rules at install (issue 13 item 5): no claim on the cluster's or another plugin's
keys, decided against the replicated registry, so two racing installs cannot both win."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from aspen.plugins.namespaces import PREFIX_CONFLICT, find_conflict
from deploy.launcher import LocalCluster
from tests.plugins.test_plugins_cluster import install
from tests.plugins.wat import manifest, plugin
from wire.errors import AspenError

INSTALLED = {"users": ("app/users/",), "quiet": ("__plugin:quiet:",)}


@pytest.mark.parametrize(("name", "prefixes", "other"), [
    ("b", ["app/"], "users"),  # a prefix of theirs
    ("b", ["app/users/admins/"], "users"),  # inside theirs
    ("b", ["app/users/"], "users"),  # the same
    ("b", ["__plugin:"], "plugins' default namespaces"),
    ("b", ["__plugin:quiet:"], "plugins' default namespaces"),  # another plugin's default
    ("b", ["__plug"], "plugins' default namespaces"),  # would cover every default namespace
    ("b", ["__aspen/x"], "the cluster"),
    ("b", ["_"], "the cluster"),
])
def test_conflicts_are_found_in_either_direction(name: str, prefixes: list[str], other: str) -> None:
    conflict = find_conflict(name, prefixes, INSTALLED)
    assert conflict is not None and conflict.other == other, conflict
    assert conflict.error().code == PREFIX_CONFLICT


@pytest.mark.parametrize(("name", "prefixes"), [
    ("b", ["app/orders/"]), ("b", ["__plugin:b:"]), ("b", ["__plugin:b:cache/"]),
    ("users", ["app/users/", "x/"]),
    ("users", ["app/"]),  # an upgrade may widen its own claim
])
def test_allowed_claims(name: str, prefixes: list[str]) -> None:
    assert find_conflict(name, prefixes, INSTALLED) is None


def _refused(c: Any, name: str, prefixes: list[str]) -> AspenError:
    with pytest.raises(AspenError) as err:
        install(c, plugin(name, "1.0.0", {"type": "X"}), manifest(name, "1.0.0", ["X"], kv_prefixes=prefixes))
    assert err.value.code == PREFIX_CONFLICT, err.value
    return err.value


def test_install_refuses_overlaps_and_foreign_namespaces(shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as c:
        install(
            c,
            plugin("owner", "1.0.0", {"type": "X"}),
            manifest("owner", "1.0.0", ["X"], kv_prefixes=["ns/a/"]),
        )
        assert "'owner'" in _refused(c, "wider", ["ns/"]).message  # theirs lies in mine
        assert "'owner'" in _refused(c, "narrower", ["ns/a/b/"]).message  # mine lies in theirs
        assert "__plugin:" in _refused(c, "squatter", ["__plugin:"]).message
        assert "__plugin:owner:" not in _refused(c, "squatter", ["__plugin:owner:"]).message.split("own")[-1]
        assert "__aspen/" in _refused(c, "squatter", ["__aspen/plugins/"]).message
        names = [p["name"] for p in c.request("PluginList")["plugins"]]
        assert not {"wider", "narrower", "squatter"} & set(names)
        # An upgrade of the owner keeps its prefixes (and may add its own default namespace).
        r = install(c, plugin("owner", "1.1.0", {"type": "X"}),
                    manifest("owner", "1.1.0", ["X"], kv_prefixes=["ns/a/", "__plugin:owner:"]))
        assert r["upgraded"] and c.request("PluginInfo", name="owner")["manifest"]["kv_prefixes"] == [
            "ns/a/", "__plugin:owner:"]
        # Once removed, its namespace is free.
        c.request("PluginRemove", name="owner")
        assert install(c, plugin("wider", "1.0.0", {"type": "X"}),
                       manifest("wider", "1.0.0", ["X"], kv_prefixes=["ns/"]))["name"] == "wider"
        c.request("PluginRemove", name="wider")


def test_racing_installs_of_overlapping_prefixes_one_wins(shared_cluster: LocalCluster) -> None:
    """Through different nodes at once: each checks the registry it sees, but only one write
    commits against that registry; the other is re-checked and refused."""
    results: dict[str, str] = {}

    def go(nid: int, name: str, prefix: str) -> None:
        with shared_cluster.client([nid], discover_leader=False) as c:
            try:
                install(
                    c,
                    plugin(name, "1.0.0", {"type": "X"}),
                    manifest(name, "1.0.0", ["X"], kv_prefixes=[prefix]),
                )
                results[name] = "ok"
            except AspenError as exc:
                results[name] = str(exc.code)

    for round_ in range(3):
        a, b = f"race-a{round_}", f"race-b{round_}"
        threads = [threading.Thread(target=go, args=(1, a, f"race{round_}/")),
                   threading.Thread(target=go, args=(2, b, f"race{round_}/x/"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted([results[a], results[b]]) == [PREFIX_CONFLICT, "ok"], results
        with shared_cluster.client() as c:
            installed = {p["name"] for p in c.request("PluginList")["plugins"]}
            assert len({a, b} & installed) == 1
