"""Bounded decoding of the msgpack a guest hands over.

msgpack-python allocates as it decodes, up to ~80 times the bytes for small containers (8 MiB
of guest output peaked at 646 MiB), and its max_*_len options bound one container's length,
not how many there are. So guest msgpack is first walked in C without allocating
(sandbox/_guestcall.c, Bound): one complete value, no ext types, nested at most `depth_max`
deep, and an upper bound of the decoded objects' size of at most `bytes_per_byte` times its
length plus `slack_bytes`, and never over `max_bytes`. Call output is walked inside the call
itself (CallSite); host function arguments through `unpack_guest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox import _guestcall, abi, limits


@dataclass(frozen=True, slots=True)
class DecodeBound:
    depth_max: int = limits.DECODE_DEPTH_MAX
    bytes_per_byte: int = limits.DECODE_BYTES_PER_BYTE
    slack_bytes: int = limits.DECODE_SLACK_BYTES
    max_bytes: int = limits.DECODE_MAX_BYTES

    def as_tuple(self) -> tuple[int, int, int, int]:
        """In the order the C side's Bound has them."""
        # Field by field: dataclasses.astuple deep-copies, ~6 us on every host-function argument.
        return (self.depth_max, self.bytes_per_byte, self.slack_bytes, self.max_bytes)


GUEST_BOUND = DecodeBound()


class DecodeRefused(ValueError):
    """The bytes are not one msgpack value, or would decode past the bound."""


def unpack_guest(data: bytes, bound: DecodeBound = GUEST_BOUND) -> Any:
    """Decode msgpack from a guest; DecodeRefused (before anything is allocated) or ValueError."""
    problem = _guestcall.decode_bound(data, *bound.as_tuple())
    if problem is not None:
        raise DecodeRefused(problem)
    return abi.unpack(data)
