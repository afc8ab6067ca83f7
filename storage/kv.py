"""Ordered in-memory KV with etcd-style per-key versions and revisions.

Entries live in a dict (a get is one lookup) and the keys also in a SortedList, so a prefix
scan is a bisect plus a walk: O(log n + limit). The store does not count revisions itself;
the state machine passes the revision each write belongs to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sortedcontainers import SortedList


@dataclass(frozen=True, slots=True, init=False)
class Entry:
    value: bytes
    version: int  # writes since creation: 1 on create, restarts after a delete
    create_revision: int
    mod_revision: int

    # Hand-written because the generated frozen __init__ goes through object.__setattr__ per
    # field, which doubles the cost of the one object every write must build. The slot
    # descriptors' own setters do the same job without the lookup.
    def __init__(self, value: bytes, version: int, create_revision: int, mod_revision: int) -> None:
        _set_value(self, value)
        _set_version(self, version)
        _set_create_revision(self, create_revision)
        _set_mod_revision(self, mod_revision)


_set_value = Entry.__dict__["value"].__set__
_set_version = Entry.__dict__["version"].__set__
_set_create_revision = Entry.__dict__["create_revision"].__set__
_set_mod_revision = Entry.__dict__["mod_revision"].__set__


@dataclass(frozen=True, slots=True)
class ScanPage:
    entries: list[tuple[str, Entry]]
    next_after: str | None  # the last key returned, when more keys with the prefix remain


# (value, version, create_revision, mod_revision). Rows are plain tuples of bytes and ints, not
# Entry objects: CPython's collector stops tracking such a tuple, so a full collection no longer
# walks every key (0.28 s at 1M keys as Entry objects, a pause that held Raft heartbeats back
# and cost elections). Callers still get Entry objects.
Row = tuple[bytes, int, int, int]


class KvStore:
    __slots__ = ("_data", "_keys")

    def __init__(self) -> None:
        self._data: dict[str, Row] = {}
        self._keys: SortedList = SortedList()

    @classmethod
    def from_rows(cls, rows: dict[str, Row]) -> KvStore:
        """A store over `rows` (taken, not copied), keys in any order."""
        store = cls()
        store._data = rows
        # Sorting sorted input is linear, so loading a snapshot stays O(n).
        store._keys = SortedList(rows)
        return store

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Entry | None:
        row = self._data.get(key)
        return None if row is None else Entry(*row)

    def put(self, key: str, value: bytes, revision: int) -> Entry:
        old = self._data.get(key)
        if old is None:
            row = (value, 1, revision, revision)
            self._keys.add(key)
        else:
            row = (value, old[1] + 1, old[2], revision)
        self._data[key] = row
        return Entry(*row)

    def delete(self, key: str) -> bool:
        if self._data.pop(key, None) is None:
            return False
        self._keys.remove(key)
        return True

    def scan(self, prefix: str, limit: int, after: str | None = None) -> ScanPage:
        """Keys starting with prefix, in order, strictly after `after`, at most `limit`."""
        if limit <= 0:
            raise ValueError(f"scan limit must be positive, not {limit}")
        # Keys with a given prefix are one contiguous run of the sorted keys; `after` below the
        # run means "from its start", and `after` past it yields an empty page.
        if after is None or after < prefix:
            keys = self._keys.irange(prefix)
        else:
            keys = self._keys.irange(after, inclusive=(False, True))
        data = self._data
        entries: list[tuple[str, Entry]] = []
        for key in keys:
            if not key.startswith(prefix):
                return ScanPage(entries, None)
            if len(entries) == limit:
                return ScanPage(entries, entries[-1][0])
            entries.append((key, Entry(*data[key])))
        return ScanPage(entries, None)

    def items(self) -> Iterator[tuple[str, Entry]]:
        """Every (key, entry) in key order."""
        data = self._data
        for key in self._keys:
            yield key, Entry(*data[key])

    def rows(self) -> Iterator[tuple[str, Row]]:
        """Every (key, row) in key order, without building Entry objects (snapshots)."""
        data = self._data
        for key in self._keys:
            yield key, data[key]

    def keys(self) -> Iterator[str]:
        return iter(self._keys)
