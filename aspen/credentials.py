"""Named client credentials and their roles (etcd's users and roles; the Rust original's tokens).

The cookie stays the cluster's root secret: whoever proves it may do anything. An administrator
issues named credentials, each a role over request types and key prefixes:

- admin: everything, membership, plugins, plugin keys, settings and credentials included;
- writer: reads and writes of keys under its prefixes, blobs, and the plugin request types named;
- reader: reads of keys under its prefixes, blob reads, and the plugin request types named.

A credential is the token `aspen1.<name>.<secret>` (secret: 32 random bytes, base64url). It is
shown once, at creation; the replicated `auth` meta table keeps only SHA-256 of the secret with
the role, so the data dir, a snapshot or the Raft log never holds a usable credential. A client
sends the secret only over TLS (the node's certificate, checked against the cluster's CA, is the
node's proof), and both derive the session's frame keys from it and the handshake's nonces.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import msgpack

from wire.errors import AspenError, ErrorCode

TABLE = "auth"  # meta table: name -> record
TOKEN_PREFIX = "aspen1"
SECRET_BYTES = 32
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
PREFIXES_MAX = 64
REQUESTS_MAX = 64
PREFIX_MAX_BYTES = 1024
TTL_MAX_S = 10 * 365 * 24 * 3600
ROLES = ("admin", "writer", "reader")
ROOT = "root"  # the caller name of a cookie holder

# What each request type touches. Anything not named here is a plugin's request type: allowed
# to admin, and to a writer or reader that names it.
ADMIN_TYPES = frozenset({
    "AddNode", "RemoveNode", "PluginInstall", "PluginEnable", "PluginDisable", "PluginRemove", "PluginReload",
    "PluginKeysAdd", "PluginKeysRemove", "ClusterSetting", "AuthCreate", "AuthList", "AuthRevoke",
    "PluginLogs",  # plugins log what they handle: not for every reader
    "MoveLeader",
    # Leases are not under a prefix: a revoke deletes whatever keys were attached.
    "LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseList",
    "SnapshotBegin", "SnapshotChunk",  # a snapshot holds every key and every credential's hash
    "SecretsUnseal", "SecretsSeal", "SecretsRotateUnsealKey",  # the barrier (aspen/barrier.py)
})
ANYONE_TYPES = frozenset({"Ping", "ClusterStatus", "PluginList", "PluginInfo", "PluginKeysList", "StateHash",
                          "PluginLocalStatus", "SecretsSealStatus",
                          "CancelStream"})  # ends a stream of the caller's own connection only
READ_TYPES = frozenset({"ReadKey", "ScanKeys", "GetBlob", "HasBlob", "Watch"})
WRITE_TYPES = frozenset({"WriteKey", "DeleteKey", "CompareAndSwapKey", "CompareAndDeleteKey", "BatchWrite",
                         "ConditionalBatchWrite", "PutBlob", "DeleteRange"})


@dataclass(frozen=True, slots=True)
class Role:
    kind: str  # admin | writer | reader
    prefixes: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ROLES:
            raise AspenError(
                ErrorCode.INVALID_REQUEST, f"role: must be one of {', '.join(ROLES)}, not {self.kind!r}"
            )
        if len(self.prefixes) > PREFIXES_MAX or len(self.requests) > REQUESTS_MAX:
            raise AspenError(
                ErrorCode.INVALID_REQUEST, f"at most {PREFIXES_MAX} prefixes and {REQUESTS_MAX} request types"
            )
        for p in self.prefixes:
            if not isinstance(p, str) or len(p.encode()) > PREFIX_MAX_BYTES:
                raise AspenError(ErrorCode.INVALID_REQUEST, "prefixes: strings of at most 1 KiB")
        for r in self.requests:
            if not isinstance(r, str) or not 0 < len(r) <= 64:
                raise AspenError(
                    ErrorCode.INVALID_REQUEST, "requests: request type names of 1 to 64 characters"
                )

    def missing(self, request: dict[str, Any]) -> str | None:
        """What this role lacks for `request`, in words; None when it may."""
        rtype = request.get("type")
        if self.kind == "admin" or rtype in ANYONE_TYPES:
            return None
        if rtype in ADMIN_TYPES:
            return f"{rtype} (admin only)"
        if rtype in WRITE_TYPES:
            if self.kind != "writer":
                return f"{rtype} (writes need a writer role)"
            return self._keys_missing(rtype, request, write=True)
        if rtype in READ_TYPES:
            return self._keys_missing(rtype, request, write=False)
        if rtype in self.requests or "*" in self.requests:
            return None
        return f"{rtype} (not among this credential's request types)"

    def _keys_missing(self, rtype: str, request: dict[str, Any], *, write: bool) -> str | None:
        if rtype in ("GetBlob", "HasBlob", "PutBlob"):
            return None  # blobs are content-addressed: knowing the hash is the capability
        for key in _keys_of(rtype, request):
            if not any(key.startswith(p) for p in self.prefixes):
                verb = "write" if write else "read"
                return f"{rtype}: {verb} of {key!r} (outside prefixes {list(self.prefixes)})"
        return None


def _keys_of(rtype: str, request: dict[str, Any]) -> list[str]:
    """The keys (or, for a scan, the prefix) a request touches; malformed ones are refused
    later by the handler, here they only must not slip past the check."""
    if rtype == "Watch" and "key" not in request:
        prefix = request.get("prefix") or ""
        return [prefix if isinstance(prefix, str) else ""]
    if rtype in ("ScanKeys", "DeleteRange"):
        prefix = request.get("prefix") or ""
        return [prefix if isinstance(prefix, str) else ""]
    keys: list[Any] = []
    if rtype in ("BatchWrite", "ConditionalBatchWrite"):
        for field_name in ("ops", "conditions"):
            items = request.get(field_name)
            if isinstance(items, list):
                keys.extend(item.get("key") for item in items if isinstance(item, dict))
    else:
        keys.append(request.get("key"))
    return [k if isinstance(k, str) else "" for k in keys]


@dataclass(frozen=True, slots=True)
class Record:
    """What the `auth` table holds for a credential: its role and the secret's SHA-256."""

    role: Role
    secret_sha256: bytes = field(repr=False)
    created_ms: int = 0
    expires_ms: int = 0  # wall-clock ms since the epoch; 0: never

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "kind": self.role.kind,
                "prefixes": list(self.role.prefixes),
                "requests": list(self.role.requests),
                "sha256": self.secret_sha256,
                "created_ms": self.created_ms,
                "expires_ms": self.expires_ms,
            },
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        d = msgpack.unpackb(raw, raw=False)
        return cls(
            Role(d["kind"], tuple(d["prefixes"]), tuple(d["requests"])),
            d["sha256"],
            d.get("created_ms", 0),
            d.get("expires_ms", 0),
        )

    def matches(self, secret: bytes) -> bool:
        return hmac.compare_digest(hashlib.sha256(secret).digest(), self.secret_sha256)

    def expired(self, now_ms: int) -> bool:
        """Judged by each node's own clock: keep nodes' clocks in sync (NTP) for exact expiry."""
        return self.expires_ms != 0 and now_ms >= self.expires_ms

    def describe(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "role": self.role.kind,
            "prefixes": list(self.role.prefixes),
            "requests": list(self.role.requests),
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
        }


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    secret: bytes = field(repr=False)

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}.{self.name}.{base64.urlsafe_b64encode(self.secret).decode().rstrip('=')}"

    @property
    def session_secret(self) -> str:
        """The secret as the text the session keys are derived from (aspen.session)."""
        return base64.urlsafe_b64encode(self.secret).decode()

    @classmethod
    def parse(cls, text: str) -> Token:
        parts = text.strip().split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not NAME_RE.fullmatch(parts[1]):
            raise ValueError("not an Aspen credential (aspen1.<name>.<secret>)")
        try:
            secret = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("credential secret is not base64url") from None
        if len(secret) != SECRET_BYTES:
            raise ValueError("credential secret has the wrong length")
        return cls(parts[1], secret)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name == ROOT:
        raise AspenError(
            ErrorCode.INVALID_REQUEST,
            "name: 1 to 63 letters, digits, '_', '.', '-', starting with a letter or digit (not 'root')",
        )
    return name


def issue(name: str, role: Role, created_ms: int, ttl_s: int = 0) -> tuple[Token, Record]:
    token = Token(check_name(name), secrets.token_bytes(SECRET_BYTES))
    expires_ms = created_ms + ttl_s * 1000 if ttl_s else 0
    return token, Record(role, hashlib.sha256(token.secret).digest(), created_ms, expires_ms)
