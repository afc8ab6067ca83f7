"""Talking to the automerge plugin (plugins/automerge, docs/AUTOMERGE.md) from Python.

Thin: each function is one request type, except `pull_all`, which follows `next_heads`
page by page. Used by `aspen-cli automerge`, the tests and the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parent.parent
PLUGIN_DIR = REPO / "plugins" / "automerge"
MANIFEST = PLUGIN_DIR / "plugin.json"
WASM = PLUGIN_DIR / "target" / "wasm32-unknown-unknown" / "release" / "aspen_automerge.wasm"
MAGIC = b"\x85\x6f\x4a\x83"
# A full pull stops after this many pages: 10,000 pages of the 8 MiB default is far past any
# document a node can hold, so reaching it means the server is not making progress.
PULL_PAGES_MAX = 10_000


class Requester(Protocol):
    def request(self, rtype: str, **fields: Any) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Pulled:
    changes: bytes
    count: int
    pages: int
    heads: list[str]


def push(client: Requester, doc: str, changes: bytes) -> dict[str, Any]:
    return client.request("AmPush", doc=doc, changes=changes)


def pull(
    client: Requester, doc: str, heads: Sequence[str] = (), max_bytes: int | None = None
) -> dict[str, Any]:
    fields: dict[str, Any] = {"doc": doc, "heads": list(heads)}
    if max_bytes is not None:
        fields["max_bytes"] = max_bytes
    return client.request("AmPull", **fields)


def pull_all(client: Requester, doc: str, heads: Sequence[str] = (), max_bytes: int | None = None) -> Pulled:
    """Every change the holder of `heads` lacks, following `next_heads` across pages."""
    out = bytearray()
    count = 0
    for page in range(1, PULL_PAGES_MAX + 1):
        r = pull(client, doc, heads, max_bytes)
        out += r["changes"]
        count += r["count"]
        if not r["more"]:
            return Pulled(bytes(out), count, page, r["heads"])
        heads = r["next_heads"]
    raise RuntimeError(f"AmPull of {doc}: still more after {PULL_PAGES_MAX} pages")


def heads(client: Requester, doc: str) -> dict[str, Any]:
    return client.request("AmHeads", doc=doc)


def get_change(client: Requester, doc: str, change_hash: str) -> dict[str, Any]:
    return client.request("AmGetChange", doc=doc, hash=change_hash)


def list_docs(client: Requester, prefix: str = "") -> dict[str, Any]:
    return client.request("AmListDocs", prefix=prefix)


def delete_doc(client: Requester, doc: str) -> dict[str, Any]:
    return client.request("AmDeleteDoc", doc=doc)


def split_chunks(data: bytes) -> list[bytes]:
    """Concatenated chunks, one by one (framing only: the plugin checks the rest)."""
    chunks, pos = [], 0
    while pos < len(data):
        if data[pos:pos + 4] != MAGIC:
            raise ValueError(f"no chunk at byte {pos}")
        length, shift, i = 0, 0, pos + 9
        while True:
            if i >= len(data):
                raise ValueError(f"chunk at byte {pos} is cut off")
            byte = data[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        end = i + length
        if end > len(data):
            raise ValueError(f"chunk at byte {pos} is cut off")
        chunks.append(data[pos:end])
        pos = end
    return chunks
