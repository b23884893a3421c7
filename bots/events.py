"""What a channel's inbound parser hands the gateway: one of these per webhook delivery."""

from __future__ import annotations

from dataclasses import dataclass

from core.messages import IncomingMessage


@dataclass(frozen=True)
class Message:
    """A text to answer through the pipeline; `reply_to` is where the answer goes."""

    incoming: IncomingMessage
    reply_to: str  # Telegram chat id or WhatsApp address ("whatsapp:+91...")
    dedupe_key: str  # "telegram:<update_id>" or "whatsapp:<MessageSid>"


@dataclass(frozen=True)
class Notice:
    """Something we answer with a fixed text, without the model (e.g. a photo with no caption)."""

    reply_to: str
    text: str
    dedupe_key: str


@dataclass(frozen=True)
class Unparsed:
    """A platform payload stored as received; the channel parses it when it is answered.

    Keeps a webhook's work to verify, dedupe and enqueue: parsing a Telegram update
    costs more CPU than all the rest of the webhook, and a worker can do it later.
    """

    payload: dict
    reply_to: str  # the chat, so one chat's updates stay in order
    dedupe_key: str


@dataclass(frozen=True)
class Ignored:
    """Nothing to do (channel posts, group chatter not addressed to the bot, ...)."""

    reason: str


@dataclass(frozen=True)
class CallbackQuery:
    """A Telegram inline-button press: must be answered so the client stops spinning."""

    callback_query_id: str
    reply_to: str
    data: str
    dedupe_key: str


@dataclass(frozen=True)
class ChatBlocked:
    """The user blocked (blocked=True) or unblocked the bot in this chat."""

    reply_to: str
    blocked: bool


@dataclass(frozen=True)
class DeliveryStatus:
    """A WhatsApp delivery callback for a message we sent."""

    message_sid: str
    status: str  # queued, sent, delivered, read, undelivered, failed
    recipient: str
    error_code: str | None = None


Inbound = Message | Notice | Unparsed | Ignored | CallbackQuery | ChatBlocked | DeliveryStatus
