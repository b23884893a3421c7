"""Conversation memory in Redis: shared by every gateway process, survives restarts.

Each conversation is one Redis list of compact-JSON turns at f"{prefix}{conversation_id}",
oldest first, with a TTL that every append refreshes. Same semantics as InProcessMemory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from core.messages import Turn
from core.redaction import tag

log = logging.getLogger(__name__)

# RPUSH + LTRIM + PEXPIRE in one script: Redis runs scripts atomically, so two
# processes appending to one conversation cannot interleave between the push and
# the trim (a reader never sees more than N turns, and the list ends with exactly
# the last N), and the whole append is one network round trip.
# KEYS[1] = list key; ARGV[1] = window (turns); ARGV[2] = TTL (ms); ARGV[3..] = turns.
_APPEND_LUA = """
if #ARGV > 2 then
    redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
    redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

_ROLES = frozenset({"system", "user", "assistant"})


class RedisMemory:
    """Keeps the last `window_turns` turns per conversation in Redis, forgets idle ones.

    A turn is one message (user or assistant). Idle conversations expire through
    Redis's own key TTL, so nothing needs sweeping.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        window_turns: int = 8,
        ttl_seconds: float = 86_400,
        max_turn_chars: int = 8_000,
        prefix: str = "switchboard:memory:",
    ) -> None:
        if window_turns < 1:
            raise ValueError("window_turns must be at least 1")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        if max_turn_chars < 1:
            raise ValueError("max_turn_chars must be at least 1")
        self.client = client
        self._window = window_turns
        # Milliseconds (PEXPIRE) so fractional TTLs behave as in InProcessMemory.
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._max_chars = max_turn_chars
        self._prefix = prefix
        # redis-py runs it with EVALSHA and loads it itself on NOSCRIPT (e.g. after a
        # server restart), so steady-state appends send exactly one command.
        self._append = client.register_script(_APPEND_LUA)

    def key(self, conversation_id: str) -> str:
        return f"{self._prefix}{conversation_id}"

    async def window(self, conversation_id: str) -> list[Turn]:
        # Ask for the last N only: a list written under a larger window (before a
        # config change) is still read as the window this instance promises.
        raw = await self.client.lrange(self.key(conversation_id), -self._window, -1)
        turns = []
        for entry in raw:
            turn = _decode(entry)
            if turn is None:
                # Foreign or damaged data must not take the conversation down; the
                # content is not logged because it is user text.
                log.warning("skipping an unreadable turn in conversation %s", tag(conversation_id))
                continue
            turns.append(turn)
        return turns

    async def append(self, conversation_id: str, turns: Sequence[Turn]) -> None:
        # Only the last N can survive the trim, so don't ship (or unpack in Lua,
        # whose stack is limited) more than that.
        encoded = [self._encode(turn) for turn in list(turns)[-self._window :]]
        await self._append(keys=[self.key(conversation_id)], args=[self._window, self._ttl_ms, *encoded])

    async def clear(self, conversation_id: str) -> None:
        # The list is the only key kept per conversation.
        await self.client.delete(self.key(conversation_id))

    def _encode(self, turn: Turn) -> str:
        # Cut over-long turns: N turns per conversation times max_turn_chars bounds
        # what one conversation can hold in Redis (a pasted document would otherwise
        # be stored, and re-sent as history, in full until it leaves the window).
        content = turn.content[: self._max_chars]
        document = {
            "role": turn.role,
            "content": content,
            "department": turn.department,
            "pinned": turn.pinned,
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _decode(entry: bytes | str) -> Turn | None:
    """A turn from our JSON, or None for anything else."""
    try:
        document: Any = json.loads(entry)
    except (ValueError, TypeError):  # includes UnicodeDecodeError
        return None
    if not isinstance(document, dict):
        return None
    role, content = document.get("role"), document.get("content")
    department, pinned = document.get("department"), document.get("pinned", False)
    if (
        role not in _ROLES
        or not isinstance(content, str)
        or not (department is None or isinstance(department, str))
        or not isinstance(pinned, bool)
    ):
        return None
    return Turn(role=role, content=content, department=department, pinned=pinned)
