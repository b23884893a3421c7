"""WhatsApp as a reply channel (bots.channel.ReplyChannel) over a WhatsAppSender."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bots.events import DeliveryStatus, Inbound
from bots.whatsapp.inbound import parse_message
from bots.whatsapp.outbound import WhatsAppSender
from bots.whatsapp.status import DeliveryLog


class WhatsAppChannel:
    name = "whatsapp"

    def __init__(self, sender: WhatsAppSender, status_url: str, delivery_log: DeliveryLog) -> None:
        self.sender = sender
        self.status_url = status_url
        self.delivery_log = delivery_log

    async def send(self, to: str, text: str) -> None:
        await self.sender.send(to, text, status_callback=self.status_url)

    @contextlib.asynccontextmanager
    async def working(self, to: str) -> AsyncIterator[None]:
        yield  # WhatsApp has no typing indicator for business senders

    def parse(self, payload: dict) -> Inbound:
        return parse_message(payload)

    async def handle_event(self, event: Inbound) -> None:
        if isinstance(event, DeliveryStatus):
            self.delivery_log.record(event)

    async def close(self) -> None:
        await self.sender.close()
