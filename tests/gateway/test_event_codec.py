"""Queue entries: every queued event type survives the round trip through JSON; anything else is refused."""

import json

import pytest

from bots.events import CallbackQuery, ChatBlocked, DeliveryStatus, Ignored, Message, Notice, Unparsed
from core.messages import IncomingMessage
from gateway.event_codec import UndecodableEvent, conversation_of, decode, encode

EVENTS = [
    Message(IncomingMessage("telegram", "telegram:42", "छुट्टी कितनी है?", "7", "9"), "42", "telegram:1001"),
    Notice("whatsapp:+919800000000", "Please send text.", "whatsapp:SM1"),
    Unparsed({"update_id": 5, "message": {"text": "hi", "chat": {"id": 42}}}, "42", "telegram:5"),
    CallbackQuery("cb-1", "42", "hr", "telegram:6"),
    ChatBlocked("42", True),
    DeliveryStatus("SM2", "undelivered", "whatsapp:+919800000000", "63016"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_each_queued_event_decodes_to_what_was_encoded(event) -> None:
    assert decode(encode("telegram", event)) == ("telegram", event)
    assert decode(encode("telegram", event).encode()) == ("telegram", event)  # Redis hands back bytes


def test_ignored_events_are_not_queued() -> None:
    with pytest.raises(TypeError, match="Ignored events are not queued"):
        encode("telegram", Ignored("channel post"))


@pytest.mark.parametrize("payload", [
    "not json",
    json.dumps({"channel": "telegram", "type": "Exploit", "event": {}}),
    json.dumps({"channel": "telegram", "type": "Notice", "event": {"reply_to": "42"}}),
    json.dumps({"type": "Notice", "event": {"reply_to": "42", "text": "x", "dedupe_key": "k"}}),
    json.dumps(["a", "list"]),
])
def test_a_payload_that_is_not_one_of_ours_is_undecodable(payload) -> None:
    with pytest.raises(UndecodableEvent, match="cannot decode queue entry"):
        decode(payload)


def test_one_chat_on_one_channel_is_one_conversation() -> None:
    message, notice = EVENTS[0], EVENTS[1]
    assert conversation_of("telegram", message) == "telegram:42"
    assert conversation_of("whatsapp", notice) == "whatsapp:whatsapp:+919800000000"
    assert conversation_of("whatsapp", EVENTS[5]) == "whatsapp:whatsapp:+919800000000"  # its recipient's chat
