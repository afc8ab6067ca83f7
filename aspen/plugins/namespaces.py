"""Who may claim which KV namespace: the install-time rules for kv_prefixes.

A plugin owns the keys under its prefixes: client KV requests there are routed to it
(aspen/plugins/manager.py). So a claim must not reach into what belongs to someone else:

- the cluster's internal namespaces (`__aspen/`),
- `__plugin:`, where every plugin without kv_prefixes keeps its keys (`__plugin:NAME:`): a
  plugin may claim only its own default namespace there,
- another installed plugin's prefixes (disabled ones too: enabling must not create a conflict),
  in either direction: "app/" and "app/users/" overlap, whichever is installed first.

An upgrade of the same plugin may keep (or change) its own prefixes. Two prefixes overlap when
one is a prefix of the other: then some key lies in both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sandbox.permissions import PLUGIN_NAMESPACE
from wire.errors import AspenError
from wire.limits import RESERVED_KEY_PREFIX

PREFIX_CONFLICT = "PREFIX_CONFLICT"
INTERNAL_NAMESPACES = (RESERVED_KEY_PREFIX,)
# The request types that name a key: a plugin with kv_prefixes that handles one of them is
# routed those requests whose key lies in its prefixes (PluginManager.route).
KV_TYPES = frozenset(
    {"ReadKey", "WriteKey", "DeleteKey", "ScanKeys", "CompareAndSwapKey", "CompareAndDeleteKey"}
)


def default_namespace(name: str) -> str:
    """Where a plugin without kv_prefixes keeps its keys (sandbox PluginConfig.effective_prefixes)."""
    return f"{PLUGIN_NAMESPACE}{name}:"


def effective_prefixes(name: str, prefixes: Iterable[str]) -> tuple[str, ...]:
    return tuple(prefixes) or (default_namespace(name),)


def overlap(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


@dataclass(frozen=True, slots=True)
class Conflict:
    prefix: str  # the claimed prefix
    other: str  # what it overlaps: a plugin's name, or a namespace
    other_prefix: str
    message: str

    def error(self) -> AspenError:
        return AspenError(PREFIX_CONFLICT, self.message, prefix=self.prefix, other=self.other,
                          other_prefix=self.other_prefix)


def find_conflict(
    name: str, prefixes: Iterable[str], installed: Mapping[str, tuple[str, ...]]
) -> Conflict | None:
    """The first rule `name` claiming `prefixes` breaks, or None. `installed` maps every
    registered plugin to its effective prefixes (its own entry, an upgrade's, is skipped)."""
    own = default_namespace(name)
    for prefix in prefixes:
        for internal in INTERNAL_NAMESPACES:
            if overlap(prefix, internal):
                return Conflict(
                    prefix,
                    "the cluster",
                    internal,
                    f"kv_prefixes: {prefix!r} overlaps the cluster's internal namespace {internal!r}",
                )
        if overlap(prefix, PLUGIN_NAMESPACE) and not prefix.startswith(own):
            return Conflict(
                prefix,
                "plugins' default namespaces",
                PLUGIN_NAMESPACE,
                f"kv_prefixes: {prefix!r} overlaps {PLUGIN_NAMESPACE!r}, where every plugin keeps its "
                f"keys by default; this plugin may claim only its own {own!r} there",
            )
        for other in sorted(installed):
            if other == name:
                continue
            for theirs in installed[other]:
                if overlap(prefix, theirs):
                    return Conflict(prefix, other, theirs,
                                    f"kv_prefixes: {prefix!r} overlaps {theirs!r} of plugin {other!r}")
    return None
