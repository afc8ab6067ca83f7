"""The barrier: the cluster's data key, in this node's memory only (docs/SECRETS.md).

Plugins with the `barrier` permission seal what they store under a key derived from the data
key (sandbox/cryptofuncs.py). The replicated state holds the data key only wrapped
(XChaCha20-Poly1305) by the operator's **unseal key**, in the `barrier` meta table; the unseal
key itself never enters the Raft log, a snapshot or the data dir: a node gets it from
`--seal-key-file` at start or from `aspen-cli secrets unseal`, unwraps the data key and forgets
the unseal key. A node that has not been unsealed answers `SEALED` to barrier calls (so to
secrets requests) and serves everything else.

The first unseal of a cluster creates the data key (a compare-and-swap on the keyring row, so
two nodes racing agree on one). Rotating the unseal key rewraps the same data key: nothing
sealed changes, nodes already unsealed stay so, and a node that restarts needs the new key.

Requests (aspen/credentials.py: SecretsUnseal, SecretsSeal and SecretsRotateUnsealKey are
admin-only; SecretsSealStatus is anyone's):
- SecretsUnseal {key: bin 32, all: bool = true}: unseal this node, and with `all` every other
  node it can reach (forwarding the key over the peer connections, TLS where configured).
- SecretsSeal {all: bool = true}: drop the data key from memory.
- SecretsSealStatus: {sealed, initialized, unseal_key_id, node_id}.
- SecretsRotateUnsealKey {old_key, new_key}: rewrap the data key under `new_key`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from aspen import fields as p
from aspen.server import RequestHandler
from aspen.services import NodeServices
from aspen.unseal_key import KEY_BYTES, key_id, new_unseal_key
from sandbox import HostError, SandboxCode, crypto
from wire.errors import AspenError, ErrorCode

log = logging.getLogger("aspen.barrier")

TABLE = "barrier"  # meta table, replicated
KEYRING = "keyring"
WRAP_AAD = b"aspen-barrier-keyring-v1"
KEYRING_VERSION = 1
AUTO_UNSEAL_RETRY_S = 0.5
AUTO_UNSEAL_LOG_EVERY = 20  # retries between two "still sealed" log lines
PEER_UNSEAL_TIMEOUT_S = 10.0


PeerIds = Callable[[], list[int]]
PeerRequest = Callable[..., Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Keyring:
    """The replicated row: the data key wrapped by the unseal key, and that key's fingerprint."""

    wrapped: bytes
    unseal_key_id: str
    version: int = KEYRING_VERSION

    def encode(self) -> bytes:
        return msgpack.packb({"v": self.version, "alg": crypto.XCHACHA, "wrapped": self.wrapped,
                              "unseal_key_id": self.unseal_key_id}, use_bin_type=True)

    @classmethod
    def decode(cls, raw: bytes) -> Keyring:
        try:
            rec = msgpack.unpackb(raw, raw=False)
        except (ValueError, msgpack.UnpackException):
            rec = None
        if (
            not isinstance(rec, dict)
            or rec.get("v") != KEYRING_VERSION
            or rec.get("alg") != crypto.XCHACHA
            or not isinstance(rec.get("wrapped"), bytes)
            or not isinstance(rec.get("unseal_key_id"), str)
        ):
            raise AspenError(ErrorCode.KEYRING_CORRUPT, "the barrier keyring row is not a version-1 keyring")
        return cls(rec["wrapped"], rec["unseal_key_id"])

    @classmethod
    def wrap(cls, data_key: bytes, unseal_key: bytes) -> Keyring:
        return cls(crypto.aead_seal(crypto.XCHACHA, unseal_key, data_key, WRAP_AAD), key_id(unseal_key))

    def unwrap(self, unseal_key: bytes) -> bytes:
        try:
            return crypto.aead_open(crypto.XCHACHA, unseal_key, self.wrapped, WRAP_AAD)
        except crypto.CryptoError:
            raise AspenError(
                ErrorCode.UNSEAL_KEY_WRONG,
                f"this is not the cluster's unseal key (it expects key id "
                f"{self.unseal_key_id}, this one is {key_id(unseal_key)})",
            ) from None


@dataclass
class Barrier:
    services: NodeServices
    peer_ids: PeerIds
    peer_request: PeerRequest
    # The data key, only ever in memory; None: sealed.
    data_key: bytes | None = None
    table: dict[str, RequestHandler] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.table = {
            "SecretsUnseal": self.handle_unseal,
            "SecretsSeal": self.handle_seal,
            "SecretsSealStatus": self.handle_status,
            "SecretsRotateUnsealKey": self.handle_rotate,
        }

    # -- what NodeHost calls (on a plugin's worker thread) ---------------------------------

    def key(self) -> bytes:
        key = self.data_key
        if key is None:
            raise HostError(
                SandboxCode.SEALED,
                f"node {self.services.node_id} is sealed: unseal it with "
                "`aspen-cli secrets unseal` or start it with --seal-key-file (docs/SECRETS.md)",
            )
        return key

    # -- unsealing -------------------------------------------------------------------------

    def _keyring(self) -> Keyring | None:
        raw = self.services.read(lambda s: s.meta_get(TABLE, KEYRING))
        return None if raw is None else Keyring.decode(raw)

    async def unseal(self, unseal_key: bytes) -> bool:
        """Unseal this node; True when this call created the cluster's data key."""
        if len(unseal_key) != KEY_BYTES:
            raise AspenError(ErrorCode.INVALID_REQUEST, f"an unseal key is {KEY_BYTES} bytes")
        await self.services.barrier()  # see the latest keyring row
        ring = self._keyring()
        created = False
        if ring is None:
            fresh = new_unseal_key()
            candidate = Keyring.wrap(fresh, unseal_key)
            try:
                await self.services.commit(["meta_cas", TABLE, KEYRING, None, candidate.encode()])
                ring, created = candidate, True
            except AspenError as exc:
                if exc.error.code != ErrorCode.CAS_FAILED:
                    raise
                await self.services.barrier()
                ring = self._keyring()  # another node initialized it first
                if ring is None:
                    raise AspenError(
                        ErrorCode.KEYRING_CORRUPT, "the keyring row vanished while unsealing"
                    ) from None
        self.data_key = ring.unwrap(unseal_key)
        if created:
            log.info("barrier: initialized the cluster's data key (unseal key id %s)", ring.unseal_key_id)
        log.info("barrier: node %d unsealed (unseal key id %s)", self.services.node_id, ring.unseal_key_id)
        return created

    async def auto_unseal(self, unseal_key: bytes, stop: asyncio.Event | None = None) -> None:
        """--seal-key-file: retry until unsealed (the cluster may have no leader yet), or until
        the key is known to be wrong (it will not become right)."""
        attempt = 0
        while self.data_key is None and not (stop is not None and stop.is_set()):
            attempt += 1
            try:
                await self.unseal(unseal_key)
                return
            except AspenError as exc:  # NodeServices answers in the wire's errors
                if exc.error.code in (ErrorCode.UNSEAL_KEY_WRONG, ErrorCode.KEYRING_CORRUPT):
                    log.error("barrier: --seal-key-file: %s; the node stays sealed", exc.message)
                    return
                if attempt % AUTO_UNSEAL_LOG_EVERY == 1:
                    log.info("barrier: not unsealed yet (%s); retrying", exc.message)
            await asyncio.sleep(AUTO_UNSEAL_RETRY_S)

    async def rotate(self, old_key: bytes, new_key: bytes) -> Keyring:
        if len(new_key) != KEY_BYTES or len(old_key) != KEY_BYTES:
            raise AspenError(ErrorCode.INVALID_REQUEST, f"unseal keys are {KEY_BYTES} bytes")
        if new_key == old_key:
            raise AspenError(ErrorCode.INVALID_REQUEST, "the new unseal key is the old one")
        await self.services.barrier()
        ring = self._keyring()
        if ring is None:
            raise AspenError(ErrorCode.INVALID_REQUEST, "the barrier is not initialized: unseal first")
        data_key = ring.unwrap(old_key)  # proves the caller holds the current unseal key
        rewrapped = Keyring.wrap(data_key, new_key)
        await self.services.commit(["meta_cas", TABLE, KEYRING, ring.encode(), rewrapped.encode()])
        if self.data_key is None:
            self.data_key = data_key
        log.info(
            "barrier: unseal key rotated from id %s to id %s", ring.unseal_key_id, rewrapped.unseal_key_id
        )
        return rewrapped

    def status(self) -> dict[str, Any]:
        try:
            ring = self._keyring()
        except AspenError:
            ring = None
        return {
            "node_id": self.services.node_id,
            "sealed": self.data_key is None,
            "initialized": ring is not None,
            "unseal_key_id": None if ring is None else ring.unseal_key_id,
        }

    # -- requests --------------------------------------------------------------------------

    async def _fan_out(self, rtype: str, **fields: Any) -> dict[str, dict[str, Any]]:
        """Forward to every other node (all=False there), each bounded; per-node outcome."""

        async def one(peer: int) -> tuple[int, dict[str, Any]]:
            try:
                reply = await asyncio.wait_for(
                    self.peer_request(peer, rtype, all=False, **fields), PEER_UNSEAL_TIMEOUT_S
                )
                return peer, {"ok": True, "sealed": bool(reply.get("sealed"))}
            except AspenError as exc:
                return peer, {"ok": False, "code": str(exc.error.code), "message": exc.message}
            except (OSError, TimeoutError) as exc:
                return peer, {"ok": False, "code": "UNAVAILABLE", "message": str(exc) or type(exc).__name__}

        results = await asyncio.gather(*(one(peer) for peer in self.peer_ids()))
        return {str(peer): outcome for peer, outcome in results}

    async def handle_unseal(self, req: dict[str, Any]) -> dict[str, Any]:
        key = p.require_bytes(req, "key", max_bytes=KEY_BYTES, code=ErrorCode.INVALID_REQUEST)
        created = await self.unseal(key)
        peers = await self._fan_out("SecretsUnseal", key=key) if p.optional_bool(req, "all", True) else {}
        return {"type": "SecretsUnsealed", **self.status(), "created": created, "peers": peers}

    async def handle_seal(self, req: dict[str, Any]) -> dict[str, Any]:
        self.data_key = None
        log.info("barrier: node %d sealed on request", self.services.node_id)
        peers = await self._fan_out("SecretsSeal") if p.optional_bool(req, "all", True) else {}
        return {"type": "SecretsSealed", **self.status(), "peers": peers}

    async def handle_status(self, req: dict[str, Any]) -> dict[str, Any]:
        with contextlib.suppress(AspenError):
            await self.services.barrier(p.optional_bool(req, "stale", False))
        return {"type": "SecretsSealStatusResult", **self.status()}

    async def handle_rotate(self, req: dict[str, Any]) -> dict[str, Any]:
        old = p.require_bytes(req, "old_key", max_bytes=KEY_BYTES, code=ErrorCode.INVALID_REQUEST)
        new = p.require_bytes(req, "new_key", max_bytes=KEY_BYTES, code=ErrorCode.INVALID_REQUEST)
        ring = await self.rotate(old, new)
        return {"type": "SecretsUnsealKeyRotated", **self.status(), "unseal_key_id": ring.unseal_key_id}
