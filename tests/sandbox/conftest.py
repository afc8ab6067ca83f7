from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import InMemoryHost, Runtime


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    rt = Runtime()
    yield rt
    rt.close()


@pytest.fixture
def host() -> InMemoryHost:
    return InMemoryHost()
