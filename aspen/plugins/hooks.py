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

Loop rule (docs/PLUGIN_DEVELOPMENT.md): a plugin's writes are tagged in the Raft log with
its name and hook depth (a write made while handling an event of depth d has depth d + 1), so
on every node: a plugin never receives the events of its own writes (made by any node's
instance of it), and events of depth HOOK_DEPTH_MAX or more are delivered to no one: a client
write can trigger plugin writes two levels deep (A reacts, B reacts to A), no further. So a
plugin cannot feed itself, and two plugins cannot ping-pong forever. Every node delivers each
event to its own instance (handlers dedupe by index, or act only on the leader), so a chain's
fan-out is (subscribers x nodes) per level: keep hook handlers that write leader-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HOOK_DEPTH_MAX = 2

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
