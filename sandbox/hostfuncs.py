"""The host functions a guest imports, one method each, named as in the guide.

Each method gets the store context and its raw i32 arguments, checks the permission FIRST,
then the arguments (bounds, UTF-8, KV prefixes), then calls the Host. It returns the tagged
result bytes (sandbox/abi.py), a plain int for the scalar functions, or None for logging.
Permission and argument problems are error results, never traps; a pointer outside guest
memory is a guest bug and traps (GuestFault).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

import nacl.exceptions
import nacl.signing

from sandbox import abi, limits
from sandbox.cryptofuncs import CryptoHostFunctions
from sandbox.decode import DecodeRefused, unpack_guest
from sandbox.errors import HostError, SandboxCode
from sandbox.host_interface import Host
from sandbox.logs import LogLimiter, log_line
from sandbox.patterns import pattern_problem
from sandbox.permissions import PluginConfig
from sandbox.raw import RawMemory, StoreContext

log = logging.getLogger("aspen.sandbox")
_HASH_RE = re.compile(r"[0-9a-f]{64}\Z")
_TIMER_NAME_MAX = 128
# How the Rust SDK's panic hook begins the warn line it logs before aborting (docs/HOST_ABI.md).
PANIC_PREFIX = b"panicked at "


class GuestFault(Exception):
    """The guest passed memory it does not own: the call traps."""


def _err(code: SandboxCode, message: str) -> bytes:
    return abi.error(str(code), message)


class HostFunctions(CryptoHostFunctions):  # + ABI v3's crypto and barrier functions
    def __init__(self, config: PluginConfig, host: Host, logs: LogLimiter | None = None) -> None:
        self.config = config
        self.host = host
        self.logs = logs if logs is not None else LogLimiter()  # per plugin: it outlives traps
        self.perms = config.permissions
        self._prefixes = config.effective_prefixes  # computed once: checked on every KV call
        self.memory: RawMemory | None = None
        self.store: StoreContext | None = None
        self.timers: dict[str, tuple[int, bool]] = {}
        self.subscriptions: list[str] = []
        self.calls = 0
        # The last panic line the guest logged in the running call (PANIC_PREFIX): the message
        # of its trap, if it then aborts. Reset by the runtime before each call.
        self.panic: str | None = None

    # -- memory helpers --------------------------------------------------------------------

    def _read(self, ptr: int, length: int, limit: int) -> bytes | None:
        """Guest bytes, or None when the claimed length is over `limit` (an error result)."""
        if length < 0 or ptr < 0:
            raise GuestFault(f"negative pointer or length ({ptr}, {length})")
        if length > limit:
            return None
        assert self.memory is not None
        try:
            return self.memory.read(ptr, length)
        except IndexError as exc:
            raise GuestFault(str(exc)) from None

    def _key(self, ptr: int, length: int, what: str = "key") -> str | bytes:
        """A checked key (str), or the error result (bytes) to return."""
        raw = self._read(ptr, length, limits.KEY_MAX_BYTES)
        if raw is None:
            return _err(SandboxCode.KEY_TOO_LARGE, f"{what} is over {limits.KEY_MAX_BYTES} bytes")
        try:
            key = raw.decode()
        except UnicodeDecodeError:
            return _err(SandboxCode.INVALID_ARGUMENT, f"{what} is not valid UTF-8")
        if not key and what == "key":
            return _err(SandboxCode.INVALID_ARGUMENT, "key is empty")
        if not key.startswith(self._prefixes):
            return _err(
                SandboxCode.KV_PREFIX_DENIED,
                f"{what} {key!r} is outside this plugin's kv_prefixes {list(self._prefixes)}",
            )
        return key

    def _value(self, ptr: int, length: int) -> bytes | None:
        return self._read(ptr, length, limits.VALUE_MAX_BYTES)

    def _str(self, ptr: int, length: int, limit: int) -> str | None:
        raw = self._read(ptr, length, limit)
        if raw is None:
            return None
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return None

    def _charge_fuel(self, fuel: int) -> bool:
        """Take `fuel` from the running call; False (and no fuel left, so the guest traps with
        FUEL_EXHAUSTED at its next instruction) when it has less."""
        if self.store is None:  # no instance yet: nothing to charge
            return True
        return self.store.charge(fuel)

    def _call_host(self, fn: Callable[[], Any], wrap: Callable[[Any], bytes]) -> bytes:
        try:
            return wrap(fn())
        except HostError as exc:
            return abi.error(exc.code, exc.message)

    def _denied(self, permission: str) -> bytes:
        return _err(
            SandboxCode.PERMISSION_DENIED, f"plugin {self.config.name!r} lacks the {permission} permission"
        )

    # -- KV --------------------------------------------------------------------------------

    def kv_get_value(self, key_ptr: int, key_len: int) -> bytes:
        if not self.perms.kv_read:
            return self._denied("kv_read")
        key = self._key(key_ptr, key_len)
        if isinstance(key, bytes):
            return key
        try:  # the hottest host function: no closures on this path
            value = self.host.kv_get(key)
        except HostError as exc:
            return abi.error(exc.code, exc.message)
        return abi.not_found() if value is None else abi.ok(value)

    def kv_put_value(self, key_ptr: int, key_len: int, value_ptr: int, value_len: int) -> bytes:
        if not self.perms.kv_write:
            return self._denied("kv_write")
        key = self._key(key_ptr, key_len)
        if isinstance(key, bytes):
            return key
        value = self._value(value_ptr, value_len)
        if value is None:
            return _err(SandboxCode.VALUE_TOO_LARGE, f"value is over {limits.VALUE_MAX_BYTES} bytes")
        return self._call_host(lambda: self.host.kv_put(key, value), lambda _: abi.ok())

    def kv_delete_key(self, key_ptr: int, key_len: int) -> bytes:
        if not self.perms.kv_write:
            return self._denied("kv_write")
        key = self._key(key_ptr, key_len)
        if isinstance(key, bytes):
            return key
        return self._call_host(lambda: self.host.kv_delete(key), abi.ok)

    def kv_scan_prefix(self, prefix_ptr: int, prefix_len: int, limit: int) -> bytes:
        if not self.perms.kv_read:
            return self._denied("kv_read")
        prefix = self._key(prefix_ptr, prefix_len, "prefix")
        if isinstance(prefix, bytes):
            return prefix
        if limit <= 0:
            limit = limits.SCAN_LIMIT_DEFAULT
        if limit > limits.SCAN_LIMIT_MAX:
            return _err(SandboxCode.LIMIT_EXCEEDED, f"scan limit {limit} is over {limits.SCAN_LIMIT_MAX}")
        return self._call_host(
            lambda: self.host.kv_scan(prefix, limit), lambda rows: abi.ok([[k, v] for k, v in rows])
        )

    def kv_compare_and_swap(self, key_ptr: int, key_len: int, expected_ptr: int, expected_len: int,
                            new_ptr: int, new_len: int) -> bytes:
        if not self.perms.kv_write:
            return self._denied("kv_write")
        key = self._key(key_ptr, key_len)
        if isinstance(key, bytes):
            return key
        expected = None if expected_len == abi.CAS_EXPECT_ABSENT else self._value(expected_ptr, expected_len)
        new = self._value(new_ptr, new_len)
        if new is None or (expected_len != abi.CAS_EXPECT_ABSENT and expected is None):
            return _err(SandboxCode.VALUE_TOO_LARGE, f"value is over {limits.VALUE_MAX_BYTES} bytes")

        def wrap(result: tuple[bool, bytes | None]) -> bytes:
            swapped, actual = result
            return abi.ok({"swapped": swapped, "actual": None if swapped else actual})

        return self._call_host(lambda: self.host.kv_cas(key, expected, new), wrap)

    def kv_batch_write(self, ops_ptr: int, ops_len: int) -> bytes:
        if not self.perms.kv_write:
            return self._denied("kv_write")
        raw = self._read(ops_ptr, ops_len, limits.BATCH_MAX_BYTES)
        if raw is None:
            return _err(SandboxCode.LIMIT_EXCEEDED, f"batch is over {limits.BATCH_MAX_BYTES} bytes")
        try:
            ops = unpack_guest(raw)
        except DecodeRefused as exc:
            return _err(SandboxCode.INVALID_ARGUMENT, f"batch: {exc}")
        except Exception:
            return _err(SandboxCode.INVALID_ARGUMENT, "batch is not msgpack")
        if not isinstance(ops, list) or len(ops) > limits.BATCH_OPS_MAX:
            return _err(
                SandboxCode.INVALID_ARGUMENT, f"batch must be a list of at most {limits.BATCH_OPS_MAX} ops"
            )
        checked: list[tuple[str, str, bytes | None]] = []
        # Every key is checked before anything is written: one denied key writes nothing.
        for i, item in enumerate(ops):
            if not isinstance(item, list) or not item or not isinstance(item[0], str):
                return _err(
                    SandboxCode.INVALID_ARGUMENT, f'op {i}: must be ["set", key, value] or ["delete", key]'
                )
            kind = item[0].lower()
            if kind == "set" and len(item) == 3 and isinstance(item[1], str) and isinstance(item[2], bytes):
                value: bytes | None = item[2]
                if len(item[2]) > limits.VALUE_MAX_BYTES:
                    return _err(
                        SandboxCode.VALUE_TOO_LARGE, f"op {i}: value is over {limits.VALUE_MAX_BYTES} bytes"
                    )
            elif kind == "delete" and len(item) == 2 and isinstance(item[1], str):
                value = None
            else:
                return _err(
                    SandboxCode.INVALID_ARGUMENT, f'op {i}: must be ["set", key, value] or ["delete", key]'
                )
            key = item[1]
            if not key or len(key.encode()) > limits.KEY_MAX_BYTES:
                return _err(
                    SandboxCode.KEY_TOO_LARGE, f"op {i}: key must be 1 to {limits.KEY_MAX_BYTES} bytes"
                )
            if not key.startswith(self._prefixes):
                return _err(
                    SandboxCode.KV_PREFIX_DENIED, f"op {i}: key {key!r} is outside this plugin's kv_prefixes"
                )
            checked.append((kind, key, value))
        return self._call_host(lambda: self.host.kv_batch(checked), lambda _: abi.ok(len(checked)))

    # -- blobs -----------------------------------------------------------------------------

    def _hash(self, hash_ptr: int, hash_len: int) -> str | None:
        h = self._str(hash_ptr, hash_len, 64)
        return h if h is not None and _HASH_RE.match(h) else None

    def blob_exists(self, hash_ptr: int, hash_len: int) -> bytes:
        if not self.perms.blob_read:
            return self._denied("blob_read")
        h = self._hash(hash_ptr, hash_len)
        if h is None:
            return _err(SandboxCode.INVALID_ARGUMENT, "hash must be 64 lowercase hex characters (BLAKE3)")
        return self._call_host(lambda: self.host.blob_exists(h), abi.ok)

    def blob_get_data(self, hash_ptr: int, hash_len: int) -> bytes:
        if not self.perms.blob_read:
            return self._denied("blob_read")
        h = self._hash(hash_ptr, hash_len)
        if h is None:
            return _err(SandboxCode.INVALID_ARGUMENT, "hash must be 64 lowercase hex characters (BLAKE3)")
        return self._call_host(
            lambda: self.host.blob_get(h), lambda d: abi.not_found() if d is None else abi.ok(d)
        )

    def blob_put_data(self, data_ptr: int, data_len: int) -> bytes:
        if not self.perms.blob_write:
            return self._denied("blob_write")
        data = self._read(data_ptr, data_len, limits.BLOB_MAX_BYTES)
        if data is None:
            return _err(SandboxCode.LIMIT_EXCEEDED, f"blob is over {limits.BLOB_MAX_BYTES} bytes")
        return self._call_host(lambda: self.host.blob_put(data), abi.ok)

    # -- cluster ---------------------------------------------------------------------------

    def is_current_leader(self) -> bytes:
        if not self.perms.cluster_info:
            return self._denied("cluster_info")
        return self._call_host(self.host.is_leader, abi.ok)

    def get_leader_id(self) -> bytes:
        if not self.perms.cluster_info:
            return self._denied("cluster_info")
        return self._call_host(self.host.leader_id, lambda v: abi.not_found() if v is None else abi.ok(v))

    def get_node_id(self) -> int:
        return self.host.node_id()

    # -- crypto ----------------------------------------------------------------------------

    def sign_data(self, data_ptr: int, data_len: int) -> bytes:
        if not self.perms.signing:
            return self._denied("signing")
        data = self._read(data_ptr, data_len, limits.VALUE_MAX_BYTES)
        if data is None:
            return _err(SandboxCode.LIMIT_EXCEEDED, f"data to sign is over {limits.VALUE_MAX_BYTES} bytes")
        return self._call_host(lambda: self.host.sign(data), abi.ok)

    def verify_signature(self, key_ptr: int, key_len: int, data_ptr: int, data_len: int,
                         sig_ptr: int, sig_len: int) -> bytes:
        if not self.perms.signing:
            return self._denied("signing")
        key = self._read(key_ptr, key_len, 64)
        data = self._read(data_ptr, data_len, limits.VALUE_MAX_BYTES)
        sig = self._read(sig_ptr, sig_len, 128)
        if key is None or data is None or sig is None:
            return _err(SandboxCode.LIMIT_EXCEEDED, "key, data or signature is too long")
        try:
            key = bytes.fromhex(key.decode()) if len(key) == 64 else key
            sig = bytes.fromhex(sig.decode()) if len(sig) == 128 else sig
            if len(key) != 32 or len(sig) != 64:
                raise ValueError
            verify_key = nacl.signing.VerifyKey(key)
        except (ValueError, UnicodeDecodeError, nacl.exceptions.CryptoError):
            return _err(
                SandboxCode.INVALID_ARGUMENT,
                "public key must be 32 bytes (or 64 hex), signature 64 bytes (or 128 hex)",
            )
        try:
            verify_key.verify(data, sig)
            return abi.ok(True)
        except nacl.exceptions.BadSignatureError:
            return abi.ok(False)

    def public_key(self) -> bytes:
        if not self.perms.signing:
            return self._denied("signing")
        return self._call_host(self.host.public_key, lambda k: abi.ok(k.hex()))

    def get_random_bytes(self, count: int) -> bytes:
        if not self.perms.randomness:
            return self._denied("randomness")
        if not 0 < count <= limits.RANDOM_MAX_BYTES:
            return _err(SandboxCode.LIMIT_EXCEEDED, f"count must be from 1 to {limits.RANDOM_MAX_BYTES}")
        return abi.ok(os.urandom(count))

    def sha256_digest(self, data_ptr: int, data_len: int) -> bytes:
        # A pure function of the guest's own bytes: no permission, but bounded and paid for in
        # fuel, so hashing cannot outrun the call's budget. The wall clock counts it as always.
        data = self._read(data_ptr, data_len, limits.SHA256_MAX_BYTES)
        if data is None:
            return _err(SandboxCode.LIMIT_EXCEEDED, f"data to hash is over {limits.SHA256_MAX_BYTES} bytes")
        if not self._charge_fuel(limits.SHA256_FUEL_BASE + limits.SHA256_FUEL_PER_BYTE * len(data)):
            return _err(SandboxCode.LIMIT_EXCEEDED, "not enough fuel left to hash this much")
        return abi.ok(hashlib.sha256(data).digest())

    # -- timers and hooks ------------------------------------------------------------------

    def schedule_timer_on_host(self, config_ptr: int, config_len: int) -> bytes:
        if not self.perms.timers:
            return self._denied("timers")
        raw = self._read(config_ptr, config_len, 4096)
        try:
            cfg = unpack_guest(raw) if raw is not None else None
        except Exception:
            cfg = None
        if not isinstance(cfg, dict):
            return _err(
                SandboxCode.INVALID_ARGUMENT, "timer config must be a msgpack map {name, interval_ms, repeat}"
            )
        name, interval_ms, repeat = cfg.get("name"), cfg.get("interval_ms"), cfg.get("repeat", True)
        if not isinstance(name, str) or not 0 < len(name) <= _TIMER_NAME_MAX:
            return _err(SandboxCode.INVALID_ARGUMENT, f"timer name must be 1 to {_TIMER_NAME_MAX} characters")
        if not isinstance(interval_ms, int) or not limits.TIMER_MIN_MS <= interval_ms <= limits.TIMER_MAX_MS:
            return _err(
                SandboxCode.LIMIT_EXCEEDED, "timer interval must be from 1 s to 24 h (1000 to 86400000 ms)"
            )
        if not isinstance(repeat, bool):
            return _err(SandboxCode.INVALID_ARGUMENT, "repeat must be a boolean")
        if name not in self.timers and len(self.timers) >= limits.TIMERS_MAX:
            return _err(SandboxCode.LIMIT_EXCEEDED, f"at most {limits.TIMERS_MAX} timers per plugin")

        def schedule() -> None:
            self.host.schedule_timer(self.config.name, name, interval_ms, repeat)
            self.timers[name] = (interval_ms, repeat)

        return self._call_host(schedule, lambda _: abi.ok())

    def cancel_timer_on_host(self, name_ptr: int, name_len: int) -> bytes:
        if not self.perms.timers:
            return self._denied("timers")
        name = self._str(name_ptr, name_len, _TIMER_NAME_MAX)
        if name is None:
            return _err(
                SandboxCode.INVALID_ARGUMENT, f"timer name must be UTF-8 of at most {_TIMER_NAME_MAX} bytes"
            )
        if name not in self.timers:
            return abi.not_found()
        del self.timers[name]
        return self._call_host(lambda: self.host.cancel_timer(self.config.name, name), lambda _: abi.ok())

    def subscribe_hook_events(self, pattern_ptr: int, pattern_len: int) -> bytes:
        if not self.perms.hooks:
            return self._denied("hooks")
        pattern = self._str(pattern_ptr, pattern_len, limits.PATTERN_MAX_CHARS * 4)
        problem = pattern_problem(pattern)
        if problem is not None:
            return _err(SandboxCode.INVALID_ARGUMENT, problem)
        assert pattern is not None
        if pattern in self.subscriptions:
            return abi.ok()
        if len(self.subscriptions) >= limits.SUBSCRIPTIONS_MAX:
            return _err(
                SandboxCode.LIMIT_EXCEEDED, f"at most {limits.SUBSCRIPTIONS_MAX} subscriptions per plugin"
            )
        self.subscriptions.append(pattern)
        return self._call_host(
            lambda: self.host.subscriptions_changed(self.config.name, tuple(self.subscriptions)),
            lambda _: abi.ok(),
        )

    def unsubscribe_hook_events(self, pattern_ptr: int, pattern_len: int) -> bytes:
        if not self.perms.hooks:
            return self._denied("hooks")
        pattern = self._str(pattern_ptr, pattern_len, limits.PATTERN_MAX_CHARS * 4)
        if pattern is None or pattern not in self.subscriptions:
            return abi.not_found()
        self.subscriptions.remove(pattern)
        return self._call_host(
            lambda: self.host.subscriptions_changed(self.config.name, tuple(self.subscriptions)),
            lambda _: abi.ok(),
        )

    # -- logging and clocks ----------------------------------------------------------------

    def _log(self, level: str, msg_ptr: int, msg_len: int) -> None:
        # Only the first LOG_LINE_MAX_BYTES are read: a line is cut there anyway.
        raw = self._read(msg_ptr, min(msg_len, limits.LOG_LINE_MAX_BYTES), limits.LOG_LINE_MAX_BYTES)
        assert raw is not None  # within the limit by construction
        if level == "warn" and raw.startswith(PANIC_PREFIX):
            self.panic = log_line(raw, msg_len)  # even when the rate limit drops the line
        admitted, report = self.logs.admit(len(raw))
        if report is not None:  # the node's own line, which no plugin line can imitate (escaped)
            rate = self.logs.rate
            log.warning(
                "plugin %r: log rate limit (%g lines/s, %g bytes/s) dropped %d lines (%d bytes) in %.1fs",
                self.config.name,
                rate.lines_per_s,
                rate.bytes_per_s,
                report.lines,
                report.bytes,
                self.logs.since_s(report),
            )
        if admitted:
            self.host.log(self.config.name, level, log_line(raw, msg_len))

    def log_info_msg(self, msg_ptr: int, msg_len: int) -> None:
        self._log("info", msg_ptr, msg_len)

    def log_debug_msg(self, msg_ptr: int, msg_len: int) -> None:
        self._log("debug", msg_ptr, msg_len)

    def log_warn_msg(self, msg_ptr: int, msg_len: int) -> None:
        self._log("warn", msg_ptr, msg_len)

    def current_time_ms(self) -> int:
        return int(time.time() * 1000)

    def hlc_now_ms(self) -> int:
        return self.host.hlc_now_ms()
