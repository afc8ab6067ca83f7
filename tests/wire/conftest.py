from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.wire.fakes import ServerThread


@pytest.fixture
def server() -> Iterator[ServerThread]:
    """A real Server (cookie auth) over a dict-backed handler, on a background loop."""
    s = ServerThread()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def open_server() -> Iterator[ServerThread]:
    """The same without authentication (a lone loopback node without a cookie)."""
    s = ServerThread(cookie=None)
    try:
        yield s
    finally:
        s.close()
