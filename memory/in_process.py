"""Conversation memory in this process: the embedded default (single process only)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.messages import Turn


@dataclass
class _Conversation:
    turns: deque[Turn]
    last_used: float


class InProcessMemory:
    """Keeps the last `window_turns` turns per conversation, forgets idle ones.

    A turn is one message (user or assistant). Expiry is checked lazily on
    access and swept on append, so no background task is needed.
    """

    def __init__(
        self,
        window_turns: int = 8,
        ttl_seconds: float = 86_400,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_turns < 1:
            raise ValueError("window_turns must be at least 1")
        self._window = window_turns
        self._ttl = ttl_seconds
        self._clock = clock
        self._conversations: dict[str, _Conversation] = {}
        self._last_sweep = clock()
        # One instance may serve event loops on several threads (a server's, a console's).
        self._lock = threading.Lock()

    async def window(self, conversation_id: str) -> list[Turn]:
        with self._lock:
            conversation = self._live(conversation_id)
            return list(conversation.turns) if conversation else []

    async def append(self, conversation_id: str, turns: Sequence[Turn]) -> None:
        now = self._clock()
        with self._lock:
            self._sweep(now)
            conversation = self._conversations.get(conversation_id)
            if conversation is None:
                conversation = _Conversation(deque(maxlen=self._window), now)
                self._conversations[conversation_id] = conversation
            conversation.turns.extend(turns)
            conversation.last_used = now

    async def clear(self, conversation_id: str) -> None:
        with self._lock:
            self._conversations.pop(conversation_id, None)

    def _live(self, conversation_id: str) -> _Conversation | None:
        conversation = self._conversations.get(conversation_id)
        if conversation and self._clock() - conversation.last_used > self._ttl:
            del self._conversations[conversation_id]
            return None
        return conversation

    def _sweep(self, now: float) -> None:
        # A full scan per append would make appends O(conversations).
        if now - self._last_sweep < min(self._ttl, 60.0):
            return
        self._last_sweep = now
        expired = [cid for cid, c in self._conversations.items() if now - c.last_used > self._ttl]
        for cid in expired:
            del self._conversations[cid]
