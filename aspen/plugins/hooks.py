"""Hook events for plugins: subjects, and the rule that stops event feedback loops.

Commit events (storage, cluster) become hook events with NATS-style subjects:

| commit event                         | hook subject                       |
|--------------------------------------|------------------------------------|
| kv.write_committed                   | hooks.kv.write_committed           |
| kv.delete_committed                  | hooks.kv.delete_committed          |
| cluster.leader_elected               | hooks.cluster.leader_elected       |
| cluster.membership_changed           | hooks.cluster.membership_changed   |
| meta.put of plugins/NAME             | hooks.plugin.installed             |
| meta.delete of plugins/NAME          | hooks.plugin.removed               |

Loop rule (docs/PLUGIN_DEVELOPMENT.md): a plugin never receives the events of its own
writes, and a write made by a hook handler carries the depth of the event it handled plus
one; events deeper than HOOK_DEPTH_MAX are not delivered to anyone. So a plugin cannot feed
itself, and two plugins cannot ping-pong forever.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

HOOK_DEPTH_MAX = 4
OWN_WRITES_REMEMBERED = 4096

_KIND_TO_SUBJECT = {
    "kv.write_committed": "hooks.kv.write_committed",
    "kv.delete_committed": "hooks.kv.delete_committed",
    "cluster.leader_elected": "hooks.cluster.leader_elected",
    "cluster.membership_changed": "hooks.cluster.membership_changed",
}


@dataclass(frozen=True, slots=True)
class HookEvent:
    subject: str
    key: str | None
    index: int
    term: int
    revision: int
    depth: int

    def to_guest(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "key": self.key,
            "index": self.index,
            "term": self.term,
            "revision": self.revision,
            "depth": self.depth,
        }


def subject_of(kind: str, key: str | None) -> tuple[str, str | None] | None:
    """The hook subject and key for a commit event, or None when plugins never see it."""
    subject = _KIND_TO_SUBJECT.get(kind)
    if subject is not None:
        return subject, key
    if kind in ("meta.put", "meta.delete") and key is not None and key.startswith("plugins/"):
        name = key[len("plugins/") :]
        return ("hooks.plugin.installed" if kind == "meta.put" else "hooks.plugin.removed"), name
    return None


class WriteOrigins:
    """Remembers, per (log index, key), which plugin wrote it and at what hook depth.

    Bounded: the oldest records go first. Written from the event loop when a plugin's write
    commits; read by the delivery loop, which runs after the write's commit callback because
    a plugin's calls are serialized (its handler is blocked until its write has committed).
    """

    def __init__(self, limit: int = OWN_WRITES_REMEMBERED) -> None:
        self._limit = limit
        self._origins: OrderedDict[tuple[int, str], tuple[str, int]] = OrderedDict()

    def record(self, index: int, keys: list[str], plugin: str, depth: int) -> None:
        for key in keys:
            self._origins[(index, key)] = (plugin, depth)
        while len(self._origins) > self._limit:
            self._origins.popitem(last=False)

    def origin(self, index: int, key: str | None) -> tuple[str, int] | None:
        if key is None:
            return None
        return self._origins.get((index, key))
