"""What the gateway needs from a chat platform to answer on it; each channel package provides one."""

from __future__ import annotations

import contextlib
from typing import Protocol

from bots.events import Inbound


class ReplyChannel(Protocol):
    """How the gateway talks back on one platform."""

    name: str

    async def send(self, to: str, text: str) -> None: ...

    def working(self, to: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Shown to the user while the model works (Telegram: "typing...")."""
        ...

    async def handle_event(self, event: Inbound) -> None:
        """Platform events that are not messages: button presses, blocks, delivery reports."""
        ...

    def parse(self, payload: dict) -> Inbound:
        """An `Unparsed` payload, as this platform's inbound parser reads it."""
        ...
