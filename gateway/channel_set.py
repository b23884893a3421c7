"""The configured chat channels: connecting them at start, polling Telegram in development, closing them."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bots.channel import ReplyChannel
from core.retry import backoff_delay
from gateway.dispatch import Dispatcher, QueueUnavailable

if TYPE_CHECKING:
    from bots.telegram.channel import TelegramChannel
    from bots.whatsapp.channel import WhatsAppChannel

log = logging.getLogger(__name__)
# Bot API unreachable at start: retried with backoff (core.retry) from the first to the longest pause.
_RECONNECT_FIRST_S = 1.0
_RECONNECT_MAX_S = 60.0
# Polling with the Redis queue down: an update is held and offered again, with backoff.
_REQUEUE_FIRST_S = 1.0
_REQUEUE_MAX_S = 30.0


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
        attempt = 1
        while True:
            await asyncio.sleep(backoff_delay(attempt, _RECONNECT_FIRST_S, _RECONNECT_MAX_S))
            if await self._connect_telegram():
                log.info("telegram: %s", self.telegram_state)
                return
            attempt += 1

    def _start_polling(self) -> None:
        from bots.telegram import peek_update, poll

        telegram, dispatcher = self.telegram, self.dispatcher
        assert telegram is not None and dispatcher is not None

        async def on_update(update: dict) -> None:
            event = peek_update(update)
            attempt = 1
            while True:  # polling has no platform retry: hold the update until it is stored
                try:
                    await dispatcher.accept(telegram, event)
                    return
                except QueueUnavailable as error:
                    delay = backoff_delay(attempt, _REQUEUE_FIRST_S, _REQUEUE_MAX_S)
                    log.warning("telegram: cannot queue an update yet (%s); retrying in %.1fs", error, delay)
                    await asyncio.sleep(delay)
                    attempt += 1

        self._tasks.append(asyncio.create_task(poll(telegram.sender.bot, on_update, self._stop_polling)))

    async def close(self) -> None:
        self._stop_polling.set()
        for task in self._tasks:
            task.cancel()
        if self.telegram and self.telegram_ready:
            await self.telegram.sender.close()
        if self.whatsapp:
            await self.whatsapp.close()
