"""The knowledge interface the pipeline depends on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.messages import Grounding, Turn


class Knowledge(Protocol):
    """Finds the handbook entries that answer a question."""

    def retrieve(self, department: str, text: str, k: int, history: Sequence[Turn] = ()) -> Grounding | None:
        """The `k` best entries for `text`; None when `department` has no handbook."""
        ...
