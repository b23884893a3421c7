"""Verify and parse what Twilio POSTs for WhatsApp: incoming messages and delivery callbacks.

Everything here takes the decoded form values (`await request.form()` in FastAPI,
or any Mapping[str, str]) and never raises: a webhook must answer every shape
without a 5xx, or Twilio retries it and then falls back to the fallback URL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from twilio.request_validator import RequestValidator

from bots.events import DeliveryStatus, Ignored, Inbound, Message, Notice
from bots.whatsapp.addresses import whatsapp_address
from core.messages import IncomingMessage
from core.redaction import tag

__all__ = [
    "CHANNEL",
    "EMPTY_NOTICE",
    "MEDIA_NOTICE",
    "parse_message",
    "parse_status",
    "signature_valid",
]

log = logging.getLogger(__name__)

CHANNEL = "whatsapp"
MEDIA_NOTICE = "I can only read text messages for now — please type your question."
EMPTY_NOTICE = "I didn't get any text there — please type your question."


def signature_valid(auth_token: str, public_url: str, form: Mapping[str, str], signature: str | None) -> bool:
    """Whether `signature` (the X-Twilio-Signature header) signs this form for this URL.

    `public_url` must be the webhook URL exactly as configured in Twilio (scheme,
    host, path and any query string): Twilio signs the URL it called, and behind
    a proxy or tunnel the URL the app sees (http://10.0.0.5:8000/...) is not it.
    Twilio's own validator is used so the port and ordering rules stay theirs.
    """
    if not auth_token or not signature or not public_url:
        # An empty token would make every HMAC forgeable; no header means not Twilio.
        return False
    try:
        return bool(RequestValidator(auth_token).validate(public_url, form, signature))
    except Exception:  # odd value types in a forged request must not become a 500
        log.warning("twilio signature check failed on a malformed request", exc_info=True)
        return False


def parse_message(form: Mapping[str, str]) -> Inbound:
    """What to do with one incoming WhatsApp message webhook."""
    try:
        return _parse_message(form)
    except Exception:  # a webhook must never 500: Twilio would retry and use the fallback URL
        log.warning("unparseable whatsapp webhook", exc_info=True)
        return Ignored("malformed")


def parse_status(form: Mapping[str, str]) -> DeliveryStatus | Ignored:
    """A delivery callback (StatusCallback) for a message we sent."""
    try:
        sid = _value(form, "MessageSid") or _value(form, "SmsSid")
        status = (_value(form, "MessageStatus") or _value(form, "SmsStatus")).lower()
        if not sid or not status:
            return Ignored("malformed")
        return DeliveryStatus(
            message_sid=sid,
            status=status,
            recipient=_value(form, "To"),
            error_code=_value(form, "ErrorCode") or None,
        )
    except Exception:
        log.warning("unparseable whatsapp status callback", exc_info=True)
        return Ignored("malformed")


def _parse_message(form: Mapping[str, str]) -> Inbound:
    if _value(form, "MessageStatus"):
        # A status callback posted to the message URL (a misconfigured StatusCallback):
        # answering it as a message would text our own number.
        return parse_status(form)
    sender = _value(form, "From")
    sid = _value(form, "MessageSid")
    if not sender or not sid:
        return Ignored("malformed")

    address = whatsapp_address(sender)  # From is already "whatsapp:+91..."; keep one prefix
    dedupe_key = f"{CHANNEL}:{sid}"  # Twilio retries a webhook it got no 2xx for, same MessageSid
    body = _value(form, "Body").strip()
    if body:
        # Media with a caption: the caption is the question, the picture is dropped.
        incoming = IncomingMessage(
            channel=CHANNEL,
            conversation_id=address,
            text=body,
            user_id=address,
            message_id=sid,
        )
        return Message(incoming=incoming, reply_to=address, dedupe_key=dedupe_key)
    if _has_media(form) or _value(form, "MessageType").lower() not in ("", "text"):
        # Photos, voice notes, stickers, locations, contacts: nothing the model can read.
        return Notice(reply_to=address, text=MEDIA_NOTICE, dedupe_key=dedupe_key)
    log.info("empty whatsapp message from %s", tag(address))
    return Notice(reply_to=address, text=EMPTY_NOTICE, dedupe_key=dedupe_key)


def _has_media(form: Mapping[str, str]) -> bool:
    try:
        if int(_value(form, "NumMedia") or "0") > 0:
            return True
    except ValueError:
        pass
    return bool(_value(form, "MediaUrl0"))


def _value(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""
