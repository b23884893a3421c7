"""Inbound events as JSON, so they can wait in a Redis Stream and be answered by any worker."""

from __future__ import annotations

import dataclasses
import json

from bots.events import CallbackQuery, ChatBlocked, DeliveryStatus, Inbound, Message, Notice, Unparsed
from core.messages import IncomingMessage

_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (Message, Notice, Unparsed, CallbackQuery, ChatBlocked, DeliveryStatus)
}


class UndecodableEvent(ValueError):
    """A queue entry that is not an event this version understands (never retried)."""


def encode(channel: str, event: Inbound) -> str:
    if type(event).__name__ not in _TYPES:
        raise TypeError(f"{type(event).__name__} events are not queued")
    # Shallow on purpose: dataclasses.asdict deep-copies, a third of a webhook's CPU.
    fields = {name: getattr(event, name) for name in event.__dataclass_fields__}
    if isinstance(event, Message):
        fields["incoming"] = dataclasses.asdict(event.incoming)
    return json.dumps({"channel": channel, "type": type(event).__name__, "event": fields}, ensure_ascii=False)


def decode(payload: str | bytes) -> tuple[str, Inbound]:
    """(channel name, event); UndecodableEvent if the payload is not one of ours."""
    try:
        document = json.loads(payload)
        cls = _TYPES[document["type"]]
        fields = dict(document["event"])
        if cls is Message:
            fields["incoming"] = IncomingMessage(**fields["incoming"])
        return document["channel"], cls(**fields)
    except (ValueError, KeyError, TypeError) as error:
        raise UndecodableEvent(f"cannot decode queue entry: {error!r}") from None


def conversation_of(channel: str, event: Inbound) -> str:
    """What keeps messages in order: one chat on one channel."""
    reply_to = getattr(event, "reply_to", None) or getattr(event, "recipient", "")
    return f"{channel}:{reply_to}"
