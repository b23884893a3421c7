"""Accept parsed webhook events at once, answer them in the background.

Webhooks only verify, dedupe and enqueue, so a platform never waits on the
model (Twilio gives up after 15 s; Telegram retries slow answers). Where the
queue lives is the dispatcher's business: this process (the default) or a
Redis Stream shared by many workers (gateway.stream_worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Protocol

from bots.channel import ReplyChannel
from bots.events import Ignored, Inbound
from gateway.dedupe import SeenKeys

if TYPE_CHECKING:
    from gateway.responder import Responder

log = logging.getLogger(__name__)


class QueueUnavailable(RuntimeError):
    """The queue cannot take the event now (Redis down or slow): the webhook answers 503 so the platform retries."""


class Dispatcher(Protocol):
    """Takes accepted webhook events and gets them answered."""

    async def accept(self, channel: ReplyChannel, event: Inbound) -> bool:
        """Store the event for answering; False for a platform retry of one already accepted.

        Raises QueueUnavailable when the event cannot be stored now.
        """
        ...

    async def run(self) -> None:
        """Answer accepted events until cancelled or stopped (a no-op where other processes do it)."""
        ...

    async def stop(self, timeout: float) -> int:
        """Finish accepted work for up to `timeout` seconds, then let `run` end.

        Returns how many accepted events were left unanswered in this process.
        """
        ...

    async def ready(self) -> bool: ...


class InProcessDispatcher:
    """The embedded default: dedupe and queue in this process, one worker draining in order.

    One worker keeps each conversation's messages in order (concurrent requests
    are the HTTP API's). Single-process: shutdown answers what is queued (`stop`,
    up to a timeout), but a crash loses it.
    """

    def __init__(self, responder: Responder, seen: SeenKeys) -> None:
        self.responder = responder
        self.seen = seen
        self._queue: asyncio.Queue[tuple[str, Inbound]] = asyncio.Queue()
        self._running = False

    async def accept(self, channel: ReplyChannel, event: Inbound) -> bool:
        if isinstance(event, Ignored):
            return True
        key = getattr(event, "dedupe_key", None)
        if key is not None and not await self.seen.first_time(key):
            return False
        self._queue.put_nowait((channel.name, event))
        return True

    async def run(self) -> None:
        self._running = True
        try:
            while True:
                channel_name, event = await self._queue.get()
                try:
                    await self.responder.answer(channel_name, event)
                except Exception:  # one failed reply must not stop the others
                    log.exception("%s: could not handle a %s", channel_name, type(event).__name__)
                finally:
                    self._queue.task_done()
        finally:
            self._running = False

    async def stop(self, timeout: float) -> int:
        if self._running and self._queue.qsize():
            log.info("answering %d queued message(s) before stopping (up to %.0f s)", self._queue.qsize(), timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
        left = self._queue.qsize()
        if left:
            log.warning("%d accepted message(s) were not answered before shutdown", left)
        return left

    async def ready(self) -> bool:
        return True
