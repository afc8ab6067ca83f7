"""The node's native request handlers: KV, blobs, cluster status.

Each handler takes the decoded request map (without its id) and returns the response map,
or raises AspenError. Fields are validated here, at the edge, before anything is proposed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, TypeVar

from aspen import fields as p
from aspen.server import RequestHandler
from aspen.services import NodeServices, raise_result, with_deadline  # noqa: F401 (this module's names too)
from cluster import node_registry
from storage.limits import BATCH_OPS_MAX, BLOB_MAX_BYTES, CONDITIONS_MAX, SCAN_LIMIT_DEFAULT, SCAN_LIMIT_MAX
from wire.errors import AspenError, ErrorCode

T = TypeVar("T")

# A scan page also ends by bytes: 80 values of 1 MiB made one 84 MB frame, over FRAME_MAX_BYTES,
# so scan_all could never read past them. A page holds at least one entry (at most 1 MiB of
# value and 1 KiB of key), and stops before the entry that would take it past this.
SCAN_PAGE_MAX_BYTES = 4 * 1024 * 1024
SCAN_ENTRY_OVERHEAD_BYTES = 64  # the entry map's field names, three revisions, headers

_BATCH_OPS = {"Set": "put", "Delete": "del"}
_CODES = frozenset(c.value for c in ErrorCode)
_CONDITIONS = {"ValueEquals": "eq", "KeyExists": "exists", "KeyNotExists": "absent"}


def encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AspenError(
            ErrorCode.INVALID_REQUEST, "continuation_token: not a token this cluster issued"
        ) from None


class NativeHandlers:
    def __init__(self, services: NodeServices, client_addr_of: Callable[[int], str | None],
                 metrics_addr: str | None = None):
        self.services = services
        self.replicated = services.replicated
        self.metrics_addr = metrics_addr  # this node's /metrics, /health and /ready, shown by cluster status
        self.timeout_s = services.timeout_s
        self._client_addr_of = client_addr_of
        self.table: dict[str, RequestHandler] = {
            "Ping": self.ping,
            "ReadKey": self.read_key,
            "WriteKey": self.write_key,
            "DeleteKey": self.delete_key,
            "ScanKeys": self.scan_keys,
            "CompareAndSwapKey": self.compare_and_swap,
            "CompareAndDeleteKey": self.compare_and_delete,
            "BatchWrite": self.batch_write,
            "ConditionalBatchWrite": self.conditional_batch_write,
            "PutBlob": self.put_blob,
            "GetBlob": self.get_blob,
            "HasBlob": self.has_blob,
            "ClusterStatus": self.cluster_status,
            "StateHash": self.state_hash,
        }

    # -- plumbing --------------------------------------------------------------------------

    async def commit(self, op: list[Any]) -> dict[str, Any]:
        """Validate an op, put it through the log, and return its result body."""
        return await self.services.commit(op)

    async def commit_at(self, op: list[Any]) -> tuple[dict[str, Any], int]:
        """commit, also returning the log index the op was applied at."""
        return await self.services.commit_at(op)

    async def _consistent(self, req: dict[str, Any]) -> None:
        await self.services.barrier(p.optional_bool(req, "stale", False))

    # -- KV --------------------------------------------------------------------------------

    async def ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"type": "Pong", "node_id": self.replicated.node_id}

    async def read_key(self, req: dict[str, Any]) -> dict[str, Any]:
        key = p.require_str(req, "key")
        await self._consistent(req)
        entry = self.replicated.read(lambda s: s.get(key))
        if entry is None:
            return {"type": "ReadResult", "was_found": False, "value": None, "version": 0,
                    "create_revision": 0, "mod_revision": 0}
        return {"type": "ReadResult", "was_found": True, "value": entry.value, "version": entry.version,
                "create_revision": entry.create_revision, "mod_revision": entry.mod_revision}

    async def write_key(self, req: dict[str, Any]) -> dict[str, Any]:
        key, value, lease = p.require_str(req, "key"), p.require_bytes(req, "value"), req.get("lease")
        # With a lease: the key goes when the lease does (aspen/leases.py); its check is the op's.
        op = ["put", key, value] if lease is None else ["lput", key, value, lease]
        body = await self.commit(op)
        return {"type": "WriteResult", **body}

    async def delete_key(self, req: dict[str, Any]) -> dict[str, Any]:
        body = await self.commit(["del", p.require_str(req, "key")])
        return {"type": "DeleteResult", **body}

    async def compare_and_swap(self, req: dict[str, Any]) -> dict[str, Any]:
        expected = p.optional_bytes(req, "expected")
        op = ["cas", p.require_str(req, "key"), expected, p.require_bytes(req, "new_value")]
        return {"type": "CompareAndSwapResult", **await self.commit(op)}

    async def compare_and_delete(self, req: dict[str, Any]) -> dict[str, Any]:
        op = ["cad", p.require_str(req, "key"), p.require_bytes(req, "expected")]
        return {"type": "DeleteResult", **await self.commit(op)}

    def _batch_ops(self, req: dict[str, Any]) -> list[list[Any]]:
        raw = p.require_list(req, "ops", BATCH_OPS_MAX)
        ops: list[list[Any]] = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise AspenError(ErrorCode.INVALID_REQUEST, f"ops[{i}]: must be a map")
            kind = _BATCH_OPS.get(item.get("op"))  # type: ignore[arg-type]
            if kind is None:
                raise AspenError(ErrorCode.INVALID_REQUEST, f"ops[{i}].op: must be Set or Delete")
            key = p.require_str(item, "key", where=f"ops[{i}]")
            ops.append(
                ["put", key, p.require_bytes(item, "value", where=f"ops[{i}]")]
                if kind == "put"
                else ["del", key]
            )
        return ops

    async def batch_write(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"type": "BatchWriteResult", **await self.commit(["batch", self._batch_ops(req)])}

    async def conditional_batch_write(self, req: dict[str, Any]) -> dict[str, Any]:
        raw = p.require_list(req, "conditions", CONDITIONS_MAX)
        conditions: list[list[Any]] = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise AspenError(ErrorCode.INVALID_REQUEST, f"conditions[{i}]: must be a map")
            kind = _CONDITIONS.get(item.get("kind"))  # type: ignore[arg-type]
            if kind is None:
                raise AspenError(
                    ErrorCode.INVALID_REQUEST,
                    f"conditions[{i}].kind: must be ValueEquals, KeyExists or KeyNotExists",
                )
            key = p.require_str(item, "key", where=f"conditions[{i}]")
            if kind == "eq":
                conditions.append(["eq", key, p.require_bytes(item, "value", where=f"conditions[{i}]")])
            else:
                conditions.append([kind, key])
        body = await self.commit(["cbatch", conditions, self._batch_ops(req)])
        return {"type": "ConditionalBatchWriteResult", **body}

    async def scan_keys(self, req: dict[str, Any]) -> dict[str, Any]:
        prefix = p.optional_str(req, "prefix") or ""
        limit = p.optional_int(req, "limit", SCAN_LIMIT_DEFAULT, 1, SCAN_LIMIT_MAX)
        token = p.optional_str(req, "continuation_token")
        after = decode_token(token) if token else None
        if after is not None and not after.startswith(prefix):
            raise AspenError(ErrorCode.INVALID_REQUEST, "continuation_token: belongs to another prefix")
        await self._consistent(req)
        page = self.replicated.read(lambda s: s.scan(prefix, limit, after))
        entries: list[dict[str, Any]] = []
        page_bytes = 0
        next_after = page.next_after
        for k, e in page.entries:
            entry_bytes = len(k.encode()) + len(e.value) + SCAN_ENTRY_OVERHEAD_BYTES
            if entries and page_bytes + entry_bytes > SCAN_PAGE_MAX_BYTES:
                next_after = entries[-1]["key"]  # the rest are the next page's
                break
            page_bytes += entry_bytes
            entries.append(
                {
                    "key": k,
                    "value": e.value,
                    "version": e.version,
                    "create_revision": e.create_revision,
                    "mod_revision": e.mod_revision,
                }
            )
        next_token = encode_token(next_after) if next_after is not None else None
        return {
            "type": "ScanResult",
            "entries": entries,
            "count": len(entries),
            "continuation_token": next_token,
        }

    # -- blobs -----------------------------------------------------------------------------

    async def put_blob(self, req: dict[str, Any]) -> dict[str, Any]:
        data = p.require_bytes(req, "data", max_bytes=BLOB_MAX_BYTES, code=ErrorCode.BLOB_TOO_LARGE)
        ref = await self.services.put_blob(data)
        return {"type": "BlobPutResult", "hash": ref.hash, "size": ref.size}

    async def get_blob(self, req: dict[str, Any]) -> dict[str, Any]:
        blob_hash = p.require_hash(req, "hash")
        data = await self.services.get_blob(blob_hash, local=p.optional_bool(req, "local", False))
        if data is None:
            return {"type": "BlobResult", "found": False, "data": None, "size": 0}
        return {"type": "BlobResult", "found": True, "data": data, "size": len(data)}

    async def has_blob(self, req: dict[str, Any]) -> dict[str, Any]:
        blob_hash = p.require_hash(req, "hash")
        exists = await self.services.has_blob(blob_hash, local=p.optional_bool(req, "local", False))
        return {"type": "BlobExistsResult", "exists": exists}

    # -- cluster ---------------------------------------------------------------------------

    async def cluster_status(self, req: dict[str, Any]) -> dict[str, Any]:
        st = self.replicated.status()
        registry = self.replicated.read(node_registry.records)
        nodes = []
        leader_id = st["leader_id"]
        for member in st["members"]:
            nid = member["node_id"]
            rec = registry.get(nid) if nid is not None else None
            nodes.append({
                "node_id": nid,
                "raft_addr": member["raft_addr"],
                "client_addr": (rec and rec.client_addr) or (self._client_addr_of(nid) if nid else None),
                "role": "leader" if nid is not None and nid == leader_id else "follower",
                "connected": member["connected"],
                # On the leader: its replication progress for that member (etcd's `raft status`).
                **{k: member[k] for k in ("next_index", "match_index") if k in member},
            })
        nodes.sort(key=lambda n: n["node_id"] or 0)
        return {
            "type": "ClusterStatusResult",
            "node_id": st["node_id"],
            "leader_id": leader_id,
            "role": st["role"],
            "term": st["term"],
            "commit_index": st["commit_index"],
            "applied_index": st["applied_index"],
            "has_quorum": st["has_quorum"],
            "metrics_addr": self.metrics_addr,
            "nodes": nodes,
        }

    async def state_hash(self, req: dict[str, Any]) -> dict[str, Any]:
        """This node's own state hash and the index it covers, read together under the state
        lock (so they match); local, never forwarded: the chaos suite compares nodes with it."""
        applied_index, state_hash = self.replicated.read(lambda s: (s.applied_index, s.state_hash()))
        return {"type": "StateHashResult", "node_id": self.replicated.node_id, "applied_index": applied_index,
                "state_hash": state_hash}

