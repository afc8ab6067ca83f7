from __future__ import annotations

from typing import Any

import pytest

from storage.state import CommitEvent, StateMachine


class Applier:
    """Applies ops one log entry at a time, numbering entries like Raft would."""

    def __init__(self, state: StateMachine | None = None) -> None:
        self.state = state if state is not None else StateMachine()
        self.index = 0
        self.events: list[CommitEvent] = []

    def apply(self, *ops: Any, term: int = 1) -> list[Any]:
        self.index += 1
        results, events = self.state.apply_ops(list(ops), self.index, term)
        self.events.extend(events)
        return results

    def one(self, op: Any) -> Any:
        (result,) = self.apply(op)
        return result

    def ok(self, op: Any) -> dict[str, Any]:
        result = self.one(op)
        assert result[0] == "ok", result
        return result[1]

    def err(self, op: Any) -> tuple[str, str, dict[str, Any]]:
        result = self.one(op)
        assert result[0] == "err", result
        assert len(result) == 4 and isinstance(result[2], str) and isinstance(result[3], dict)
        return result[1], result[2], result[3]


@pytest.fixture
def app() -> Applier:
    return Applier()
