"""A complete in-memory Host: the sandbox's tests and the plugin-author test kit run on it.

Real semantics, no network: KV with CAS and atomic batches, BLAKE3 blobs, Ed25519 signing with
a generated key, timers and subscriptions recorded (fired by the test), logs captured.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import blake3
import nacl.signing

if TYPE_CHECKING:
    from sandbox.permissions import PluginConfig
    from sandbox.runtime import Runtime
from sandbox.errors import HostError, SandboxCode


@dataclass
class InMemoryHost:
    node: int = 1
    leader: int | None = 1
    kv: dict[str, bytes] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    timers: dict[tuple[str, str], tuple[int, bool]] = field(default_factory=dict)
    subscriptions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    logs: list[tuple[str, str, str]] = field(default_factory=list)
    signing_key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    lock: threading.Lock = field(default_factory=threading.Lock)
    logs_max: int = 10_000
    # The barrier's data key (ABI v3); None: this host is sealed.
    data_key: bytes | None = field(default_factory=lambda: os.urandom(32))

    def kv_get(self, key: str) -> bytes | None:
        return self.kv.get(key)

    def kv_put(self, key: str, value: bytes) -> None:
        with self.lock:
            self.kv[key] = value

    def kv_delete(self, key: str) -> bool:
        with self.lock:
            return self.kv.pop(key, None) is not None

    def kv_scan(self, prefix: str, limit: int) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self.kv.items() if k.startswith(prefix))[:limit]

    def kv_cas(self, key: str, expected: bytes | None, new: bytes) -> tuple[bool, bytes | None]:
        with self.lock:
            actual = self.kv.get(key)
            if actual != expected:
                return False, actual
            self.kv[key] = new
            return True, None

    def kv_batch(self, ops: list[tuple[str, str, bytes | None]]) -> None:
        with self.lock:
            for kind, key, value in ops:
                if kind == "set":
                    assert value is not None
                    self.kv[key] = value
                else:
                    self.kv.pop(key, None)

    def blob_exists(self, blob_hash: str) -> bool:
        return blob_hash in self.blobs

    def blob_get(self, blob_hash: str) -> bytes | None:
        return self.blobs.get(blob_hash)

    def blob_put(self, data: bytes) -> str:
        h = blake3.blake3(data).hexdigest()
        self.blobs[h] = data
        return h

    def is_leader(self) -> bool:
        return self.leader == self.node

    def leader_id(self) -> int | None:
        return self.leader

    def node_id(self) -> int:
        return self.node

    def sign(self, data: bytes) -> bytes:
        return self.signing_key.sign(data).signature

    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    def schedule_timer(self, plugin: str, name: str, interval_ms: int, repeat: bool) -> None:
        self.timers[(plugin, name)] = (interval_ms, repeat)

    def cancel_timer(self, plugin: str, name: str) -> bool:
        return self.timers.pop((plugin, name), None) is not None

    def subscriptions_changed(self, plugin: str, patterns: tuple[str, ...]) -> None:
        self.subscriptions[plugin] = patterns

    def log(self, plugin: str, level: str, message: str) -> None:
        if len(self.logs) < self.logs_max:
            self.logs.append((plugin, level, message))

    def hlc_now_ms(self) -> int:
        return int(time.time() * 1000)

    def barrier_key(self) -> bytes:
        if self.data_key is None:
            raise HostError(SandboxCode.SEALED, "this node is sealed: unseal it first (docs/SECRETS.md)")
        return self.data_key


def probe_info(runtime: Runtime, wasm: bytes, config: PluginConfig) -> dict[str, Any]:
    """A module's plugin_info, loaded alone over an InMemoryHost (plugin_info must not touch the
    cluster): what an install, `cargo aspen-plugin build` and `check` compare with the manifest
    (Manifest.info_mismatches). SandboxError when a node would refuse the module."""
    return runtime.load(wasm, config, InMemoryHost()).info()
