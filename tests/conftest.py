from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.launcher import LocalCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A fresh 3-node cluster of real node processes on 127.0.0.1."""
    with LocalCluster(tmp_path / "cluster") as c:  # down() on the way out, whatever happened
        c.up(3)
        yield c


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster for tests that do not kill nodes (they use distinct keys)."""
    with LocalCluster(tmp_path_factory.mktemp("shared") / "cluster") as c:
        c.up(3)
        yield c
