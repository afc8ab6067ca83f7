"""Ordered in-memory KV with etcd-style revisions.

Keys are kept in a SortedList beside a dict, so a get is one dict lookup and a prefix scan
is O(log n + limit).
"""

from __future__ import annotations

from dataclasses import dataclass

from sortedcontainers import SortedList


@dataclass(frozen=True, slots=True)
class Entry:
    value: bytes
    version: int  # writes since creation; 1 on create
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class ScanPage:
    entries: list[tuple[str, Entry]]
    next_after: str | None  # the last key returned, when more keys with the prefix remain


class KvStore:
    def __init__(self) -> None:
        self._data: dict[str, Entry] = {}
        self._keys: SortedList = SortedList()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Entry | None:
        return self._data.get(key)

    def put(self, key: str, value: bytes, revision: int) -> Entry:
        old = self._data.get(key)
        if old is None:
            entry = Entry(value, 1, revision, revision)
            self._keys.add(key)
        else:
            entry = Entry(value, old.version + 1, old.create_revision, revision)
        self._data[key] = entry
        return entry

    def delete(self, key: str) -> bool:
        if self._data.pop(key, None) is None:
            return False
        self._keys.remove(key)
        return True

    def scan(self, prefix: str, limit: int, after: str | None = None) -> ScanPage:
        assert limit > 0
        keys = self._keys
        start = keys.bisect_right(after) if after is not None and after >= prefix else keys.bisect_left(prefix)
        out: list[tuple[str, Entry]] = []
        i = start
        n = len(keys)
        while i < n and len(out) < limit:
            key = keys[i]
            if not key.startswith(prefix):
                break
            out.append((key, self._data[key]))
            i += 1
        more = i < n and keys[i].startswith(prefix)
        return ScanPage(out, out[-1][0] if more and out else None)

    def items(self) -> list[tuple[str, Entry]]:
        return [(k, self._data[k]) for k in self._keys]

    def load(self, items: list[tuple[str, Entry]]) -> None:
        self._data = dict(items)
        self._keys = SortedList(self._data)
