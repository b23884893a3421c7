"""Parsing incoming WhatsApp webhooks into what the gateway does next."""

from __future__ import annotations

import logging

import pytest
from starlette.datastructures import FormData

from bots.events import DeliveryStatus, Ignored, Message, Notice
from bots.whatsapp.inbound import EMPTY_NOTICE, MEDIA_NOTICE, parse_message, parse_status
from tests.bots.whatsapp.conftest import load_form

SENDER = "whatsapp:+12015550123"


def test_text_message():
    result = parse_message(load_form("whatsapp_text.txt"))
    assert isinstance(result, Message)
    assert result.reply_to == SENDER
    assert result.dedupe_key == "whatsapp:SM0000000000000000000000000000a001"
    incoming = result.incoming
    assert incoming.channel == "whatsapp"
    assert incoming.conversation_id == SENDER  # one prefix, not "whatsapp:whatsapp:"
    assert incoming.text == "Hello! What are your opening hours?"
    assert incoming.message_id == "SM0000000000000000000000000000a001"


def test_starlette_form_data():
    assert parse_message(FormData(list(load_form("whatsapp_text.txt").items()))) == parse_message(
        load_form("whatsapp_text.txt")
    )


def test_media_without_caption_gets_a_notice():
    result = parse_message(load_form("whatsapp_media_image.txt"))
    assert result == Notice(
        reply_to=SENDER, text=MEDIA_NOTICE, dedupe_key="whatsapp:MM0000000000000000000000000000a002"
    )
    assert MEDIA_NOTICE == "I can only read text messages for now — please type your question."


def test_media_with_caption_is_a_message():
    form = {**load_form("whatsapp_media_image.txt"), "Body": "What does this invoice say about VAT?"}
    result = parse_message(form)
    assert isinstance(result, Message)
    assert result.incoming.text == "What does this invoice say about VAT?"
    assert result.dedupe_key == "whatsapp:MM0000000000000000000000000000a002"


@pytest.mark.parametrize("body", ["", "   \n "])
def test_empty_body_asks_for_a_question(body):
    form = {**load_form("whatsapp_text.txt"), "Body": body}
    result = parse_message(form)
    assert isinstance(result, Notice)
    assert result.text == EMPTY_NOTICE
    assert result.reply_to == SENDER


def test_location_without_body_is_not_text():
    form = {**load_form("whatsapp_text.txt"), "Body": "", "MessageType": "location", "Latitude": "12.9"}
    assert parse_message(form).text == MEDIA_NOTICE  # type: ignore[union-attr]


def test_unicode_body_kept():
    form = {**load_form("whatsapp_text.txt"), "Body": "नमस्ते 🙏 छुट्टी कितनी बची है?"}
    assert parse_message(form).incoming.text == "नमस्ते 🙏 छुट्टी कितनी बची है?"  # type: ignore[union-attr]


def test_bare_number_gets_one_prefix():
    form = {**load_form("whatsapp_text.txt"), "From": "+12015550123"}
    result = parse_message(form)
    assert result.reply_to == SENDER and result.incoming.conversation_id == SENDER  # type: ignore[union-attr]


@pytest.mark.parametrize("missing", ["From", "MessageSid"])
def test_malformed(missing):
    form = load_form("whatsapp_text.txt")
    del form[missing]
    assert parse_message(form) == Ignored("malformed")
    assert parse_message({}) == Ignored("malformed")
    assert parse_message({"From": "", "MessageSid": "", "Body": "hi"}) == Ignored("malformed")


def test_never_raises():
    odd = parse_message({"From": SENDER, "MessageSid": "SM1", "NumMedia": "lots"})
    assert odd.text == EMPTY_NOTICE  # type: ignore[union-attr]
    assert parse_message(None) == Ignored("malformed")  # type: ignore[arg-type]
    assert parse_status(None) == Ignored("malformed")  # type: ignore[arg-type]


def test_status_callback():
    assert parse_status(load_form("status_delivered.txt")) == DeliveryStatus(
        message_sid="SM0000000000000000000000000000b003",
        status="delivered",
        recipient="whatsapp:+12015550123",
        error_code=None,
    )
    failed = {**load_form("status_delivered.txt"), "MessageStatus": "failed", "ErrorCode": "63016"}
    assert parse_status(failed).error_code == "63016"  # type: ignore[union-attr]
    assert parse_status({"MessageSid": "SM1"}) == Ignored("malformed")


def test_status_callback_on_the_message_url_is_not_answered():
    # A misconfigured StatusCallback pointing at the message webhook must not make us text ourselves.
    assert isinstance(parse_message(load_form("status_delivered.txt")), DeliveryStatus)


def test_logs_never_show_numbers(caplog):
    with caplog.at_level(logging.DEBUG):
        for name in ("whatsapp_text.txt", "whatsapp_media_image.txt"):
            parse_message({**load_form(name), "Body": ""})
    assert "2015550123" not in caplog.text
