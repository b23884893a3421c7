"""Telegram as a reply channel (bots.channel.ReplyChannel) over a TelegramSender."""

from __future__ import annotations

import contextlib

from bots.events import CallbackQuery, ChatBlocked, Inbound
from bots.telegram.inbound import parse_update
from bots.telegram.outbound import TelegramSender


class TelegramChannel:
    name = "telegram"

    def __init__(self, sender: TelegramSender) -> None:
        self.sender = sender

    async def send(self, to: str, text: str) -> None:
        await self.sender.send(to, text)

    def working(self, to: str) -> contextlib.AbstractAsyncContextManager[None]:
        self.sender.unblock(to)  # a user who blocked the bot cannot write to it: they are back
        return self.sender.keep_typing(to)

    def parse(self, payload: dict) -> Inbound:
        return parse_update(payload, self.sender.identity)

    async def handle_event(self, event: Inbound) -> None:
        if isinstance(event, CallbackQuery):
            await self.sender.answer_callback(event.callback_query_id)
        elif isinstance(event, ChatBlocked):
            (self.sender.block if event.blocked else self.sender.unblock)(event.reply_to)
