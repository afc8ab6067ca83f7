"""The plugin author's test kit: a built plugin in the real sandbox, over an in-memory host.

    from aspen.testing import PluginHarness

    with PluginHarness.load("target/wasm32-unknown-unknown/release/aspen_my_plugin.wasm",
                            "plugin.json") as h:
        assert h.request("MyPluginPing")["type"] == "MyPluginPong"
        h.write("other:key", b"v")           # a committed write: subscribed hooks fire
        h.fire_timer("tick")
        assert h.kv["my-plugin:ticks:1"] == b"1"

Everything a node enforces holds here too: permissions, kv_prefixes, fuel, memory, the
execution timeout, traps and a fresh instance after one. What the harness stands in for is
the cluster: KV, blobs, timers and hook subscriptions live in memory, and the test decides
when a timer fires and which events happen. `build()` compiles a plugin project from pytest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aspen.manifest import Manifest
from aspen.toolchain import rust
from aspen.toolchain.project import Project
from sandbox import InMemoryHost, PluginInstance, PluginState, Runtime, subject_matches

WRITE_SUBJECT = "hooks.kv.write_committed"
DELETE_SUBJECT = "hooks.kv.delete_committed"


class BuildError(Exception):
    pass


def build(project_dir: str | Path, *, release: bool = True) -> Path:
    """Build a plugin project for wasm32 (as `cargo aspen-plugin build`); returns the .wasm."""
    project = Project.find(Path(project_dir))
    result = rust.cargo_build(project.root, rust.find_toolchain(), release)
    if result.returncode != 0:
        raise BuildError(f"cargo build failed in {project.root} (exit {result.returncode})")
    return project.wasm_path(release)


def _manifest(manifest: str | Path | dict[str, Any] | Manifest) -> Manifest:
    if isinstance(manifest, Manifest):
        return manifest
    if isinstance(manifest, dict):
        return Manifest.from_json(manifest)
    return Manifest.from_json(json.loads(Path(manifest).read_text()))


@dataclass
class PluginHarness:
    plugin: PluginInstance
    host: InMemoryHost
    manifest: Manifest
    runtime: Runtime
    revision: int = 0
    delivered: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, wasm: str | Path | bytes, manifest: str | Path | dict[str, Any] | Manifest, *,
             node_id: int = 1, leader_id: int | None = 1, init: bool = True) -> PluginHarness:
        """Load and (unless init=False) initialize the plugin, checking plugin_info against the
        manifest the way a node's install does."""
        m = _manifest(manifest)
        code = wasm if isinstance(wasm, bytes) else Path(wasm).read_bytes()
        runtime = Runtime()
        host = InMemoryHost(node=node_id, leader=leader_id)
        try:
            plugin = runtime.load(code, m.sandbox_config(), host)
            info = plugin.info()
            if mismatches := m.info_mismatches(info):
                name = mismatches[0]
                raise ValueError(
                    f"plugin_info {name} is {info.get(name)!r}, the manifest says {getattr(m, name)!r}"
                )
            if init:
                plugin.init()
        except BaseException:
            runtime.close()
            raise
        return cls(plugin=plugin, host=host, manifest=m, runtime=runtime)

    # -- driving the plugin --------------------------------------------------------------------

    def request(self, rtype: str, **fields: Any) -> dict[str, Any]:
        """Call handle_request with {"type": rtype, **fields}; an Error comes back as a map."""
        return self.plugin.handle_request({**fields, "type": rtype})

    def fire_timer(self, name: str) -> None:
        if name not in self.plugin.timers:
            raise KeyError(f"the plugin has no timer {name!r} (it has {sorted(self.plugin.timers)})")
        self.plugin.on_timer(name)

    def fire_event(self, subject: str, key: str | None = None, *, revision: int | None = None,
                   depth: int = 0) -> bool:
        """Deliver an event if a subscription matches, as a node does; True when delivered."""
        if not any(subject_matches(p, subject) for p in self.plugin.subscriptions):
            return False
        if revision is None:
            self.revision += 1
            revision = self.revision
        event = {
            "subject": subject,
            "key": key,
            "index": revision,
            "term": 1,
            "revision": revision,
            "depth": depth,
        }
        self.plugin.on_hook_event(event)
        self.delivered.append(event)
        return True

    def write(self, key: str, value: bytes) -> bool:
        """A client's committed write: into the KV, then the write event (if subscribed)."""
        self.host.kv_put(key, value)
        return self.fire_event(WRITE_SUBJECT, key)

    def delete(self, key: str) -> bool:
        existed = self.host.kv_delete(key)
        return self.fire_event(DELETE_SUBJECT, key) if existed else False

    def set_leader(self, leader_id: int | None) -> None:
        self.host.leader = leader_id

    def health(self) -> bool:
        return self.plugin.health()

    # -- what the plugin did -------------------------------------------------------------------

    @property
    def kv(self) -> dict[str, bytes]:
        return self.host.kv

    @property
    def blobs(self) -> dict[str, bytes]:
        return self.host.blobs

    @property
    def logs(self) -> list[tuple[str, str]]:
        """(level, message) of everything the plugin logged."""
        return [(level, message) for _, level, message in self.host.logs]

    @property
    def timers(self) -> dict[str, tuple[int, bool]]:
        """name -> (interval_ms, repeat)."""
        return self.plugin.timers

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return self.plugin.subscriptions

    @property
    def state(self) -> PluginState:
        return self.plugin.state

    @property
    def stats(self) -> dict[str, Any]:
        return self.plugin.stats.snapshot()

    def close(self) -> None:
        try:
            self.plugin.shutdown()
        finally:
            self.runtime.close()

    def __enter__(self) -> PluginHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
