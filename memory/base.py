"""The conversation-memory interface the pipeline depends on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.messages import Turn


class ConversationMemory(Protocol):
    """A bounded window of recent turns per conversation.

    Async because the production backend (Redis) does network I/O.
    """

    async def window(self, conversation_id: str) -> list[Turn]:
        """The most recent turns, oldest first; empty for unknown or expired ids."""
        ...

    async def append(self, conversation_id: str, turns: Sequence[Turn]) -> None:
        """Add turns, trim to the window, and refresh the idle timer."""
        ...

    async def clear(self, conversation_id: str) -> None:
        """Forget everything kept for the conversation."""
        ...
