"""Chat channels: accept parsed webhook events at once, answer them in the background.

Webhooks only verify, dedupe and enqueue, so a platform never waits on the
model (Twilio gives up after 15 s; Telegram retries slow answers). Where the
queue lives is the dispatcher's business: this process (the default) or a
Redis Stream shared by many workers (gateway.stream_worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from bots.events import (
    CallbackQuery,
    ChatBlocked,
    DeliveryStatus,
    Ignored,
    Inbound,
    Message,
    Notice,
    Unparsed,
)
from gateway.dedupe import SeenKeys
from gateway.pipeline import Pipeline, sources_line
from gateway.redis_queue import QueueUnavailable

log = logging.getLogger(__name__)
# Bot API unreachable at start: first retry after this, doubling up to the max.
_RECONNECT_FIRST_S = 1.0
_RECONNECT_MAX_S = 60.0


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


class TelegramChannel:
    name = "telegram"

    def __init__(self, sender) -> None:
        self.sender = sender

    async def send(self, to: str, text: str) -> None:
        await self.sender.send(to, text)

    def working(self, to: str) -> contextlib.AbstractAsyncContextManager[None]:
        self.sender.unblock(to)  # a user who blocked the bot cannot write to it: they are back
        return self.sender.keep_typing(to)

    def parse(self, payload: dict) -> Inbound:
        from bots.telegram import parse_update

        return parse_update(payload, self.sender.identity)

    async def handle_event(self, event: Inbound) -> None:
        if isinstance(event, CallbackQuery):
            await self.sender.answer_callback(event.callback_query_id)
        elif isinstance(event, ChatBlocked):
            (self.sender.block if event.blocked else self.sender.unblock)(event.reply_to)


class WhatsAppChannel:
    name = "whatsapp"

    def __init__(self, sender, status_url: str, delivery_log) -> None:
        self.sender = sender
        self.status_url = status_url
        self.delivery_log = delivery_log

    async def send(self, to: str, text: str) -> None:
        await self.sender.send(to, text, status_callback=self.status_url)

    @contextlib.asynccontextmanager
    async def working(self, to: str) -> AsyncIterator[None]:
        yield  # WhatsApp has no typing indicator for business senders

    def parse(self, payload: dict) -> Inbound:
        from bots.whatsapp import parse_message

        return parse_message(payload)

    async def handle_event(self, event: Inbound) -> None:
        if isinstance(event, DeliveryStatus):
            self.delivery_log.record(event)


class Responder:
    """Answers one event on the channel it came from: the model for messages, fixed texts, events.

    With `show_sources`, a grounded reply ends with a line naming the handbook entries it used.
    """

    def __init__(self, pipeline: Pipeline, channels: dict[str, ReplyChannel], *, show_sources: bool = True) -> None:
        self.pipeline = pipeline
        self.channels = channels
        self.show_sources = show_sources

    async def answer(self, channel_name: str, event: Inbound) -> None:
        channel = self.channels.get(channel_name)
        if channel is None:
            raise LookupError(f"channel '{channel_name}' is not configured in this process")
        if isinstance(event, Unparsed):
            event = channel.parse(event.payload)
        if isinstance(event, Message):
            async with channel.working(event.reply_to):
                reply = await self.pipeline.handle(event.incoming)
            sources = sources_line(reply.sources) if self.show_sources else ""
            await channel.send(event.reply_to, f"{reply.text}\n\n{sources}" if sources else reply.text)
        elif isinstance(event, Notice):
            await channel.send(event.reply_to, event.text)
        else:
            await channel.handle_event(event)


class Dispatcher(Protocol):
    """Takes accepted webhook events and gets them answered."""

    async def accept(self, channel: ReplyChannel, event: Inbound) -> bool:
        """Store the event for answering; False for a platform retry of one already accepted.

        Raises gateway.redis_queue.QueueUnavailable when the event cannot be stored now.
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

    One worker keeps each conversation's messages in order; the model serves one
    request at a time anyway. Single-process: shutdown answers what is queued
    (`stop`, up to a timeout), but a crash loses it.
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


class ChannelSet:
    """The configured channels, their shared dispatcher, and their start-up and shut-down."""

    def __init__(self, telegram: TelegramChannel | None, whatsapp: WhatsAppChannel | None) -> None:
        self.telegram = telegram
        self.whatsapp = whatsapp
        self.dispatcher: Dispatcher | None = None
        self.telegram_ready = False
        self.telegram_state = "connecting"
        self._telegram_polling = False
        self._tasks: list[asyncio.Task] = []
        self._stop_polling = asyncio.Event()

    @property
    def by_name(self) -> dict[str, ReplyChannel]:
        return {channel.name: channel for channel in (self.telegram, self.whatsapp) if channel is not None}

    async def start(self, dispatcher: Dispatcher, *, telegram_polling: bool = False) -> None:
        """Connect the channels; accepted events go to `dispatcher` (whose `run` the caller starts).

        A Bot API that cannot be reached at start is retried in the background with
        backoff; until then Telegram's webhook answers 503 and Telegram redelivers.
        """
        self.dispatcher = dispatcher
        if self.telegram is None:
            return
        self._telegram_polling = telegram_polling
        if not await self._connect_telegram():
            self._tasks.append(asyncio.create_task(self._keep_connecting_telegram()))

    def states(self) -> dict[str, str]:
        """Each configured channel's state, for readiness: "ready", or what it is waiting for."""
        states = {}
        if self.telegram is not None:
            states["telegram"] = self.telegram_state
        if self.whatsapp is not None:
            states["whatsapp"] = "ready"  # nothing to connect: each reply is one REST call
        return states

    async def _connect_telegram(self) -> bool:
        """getMe (learns the bot's name for group mentions); False if it should be tried again."""
        from telegram.error import InvalidToken

        assert self.telegram is not None
        try:
            await self.telegram.sender.start()
        except InvalidToken as error:  # retrying cannot fix a wrong token
            self.telegram_state = f"failed: {error}; fix SWITCHBOARD_TELEGRAM_BOT_TOKEN and restart"
            log.error("telegram: %s", self.telegram_state)
            return True
        except Exception as error:
            self.telegram_state = f"connecting: the Bot API does not answer ({type(error).__name__})"
            log.warning("telegram: cannot reach the Bot API (%s: %s); retrying", type(error).__name__, error)
            return False
        self.telegram_ready = True
        self.telegram_state = "ready"
        if self._telegram_polling:
            self._start_polling()
        return True

    async def _keep_connecting_telegram(self) -> None:
        delay = _RECONNECT_FIRST_S
        while True:
            await asyncio.sleep(delay)
            if await self._connect_telegram():
                log.info("telegram: %s", self.telegram_state)
                return
            delay = min(delay * 2, _RECONNECT_MAX_S)

    def _start_polling(self) -> None:
        from bots.telegram import peek_update, poll

        telegram, dispatcher = self.telegram, self.dispatcher
        assert telegram is not None and dispatcher is not None

        async def on_update(update: dict) -> None:
            event = peek_update(update)
            while True:  # polling has no platform retry: hold the update until it is stored
                try:
                    await dispatcher.accept(telegram, event)
                    return
                except QueueUnavailable as error:
                    log.warning("telegram: cannot queue an update yet (%s); retrying", error)
                    await asyncio.sleep(1.0)

        self._tasks.append(asyncio.create_task(poll(telegram.sender.bot, on_update, self._stop_polling)))

    async def close(self) -> None:
        self._stop_polling.set()
        for task in self._tasks:
            task.cancel()
        if self.telegram and self.telegram_ready:
            await self.telegram.sender.close()
        if self.whatsapp:
            await self.whatsapp.sender.close()
