"""The routing interface the pipeline depends on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.messages import Route, Turn


class Router(Protocol):
    """Decides which department answers a message."""

    def route(self, text: str, history: Sequence[Turn]) -> Route:
        """Route `text`, given the conversation so far (oldest first)."""
        ...
