"""Remembering platform message ids, so a retried webhook is answered once."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


class SeenKeys(Protocol):
    async def first_time(self, key: str) -> bool:
        """True the first time `key` is seen within the TTL; False for a repeat."""
        ...


class InProcessSeenKeys:
    """The embedded default; keys live in this process only."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # oldest first

    async def first_time(self, key: str) -> bool:
        now = self._clock()
        while self._seen and next(iter(self._seen.values())) < now - self._ttl:
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True
