"""WhatsApp through Twilio: verify and parse webhooks, send replies, track delivery.

The gateway calls, per webhook:
    signature_valid(auth_token, public_url, form, signature)  -> reject with 403 if False
    parse_message(form) / parse_status(form)                   -> Message | Notice | Ignored | DeliveryStatus
    EMPTY_TWIML (TWIML_CONTENT_TYPE)                           -> answered at once, reply goes out later
and later, off the request:
    await WhatsAppSender(...).send(reply_to, text, status_callback=...) -> message SIDs
    DeliveryLog().record(status)
"""

from bots.whatsapp.addresses import whatsapp_address
from bots.whatsapp.inbound import parse_message, parse_status, signature_valid
from bots.whatsapp.outbound import (
    MAX_BODY_CHARS,
    DeliveryError,
    DeliveryRefused,
    DeliveryUnavailable,
    WhatsAppSender,
)
from bots.whatsapp.status import DeliveryLog
from bots.whatsapp.twiml import EMPTY_TWIML, TWIML_CONTENT_TYPE, empty_response

__all__ = [
    "EMPTY_TWIML",
    "MAX_BODY_CHARS",
    "TWIML_CONTENT_TYPE",
    "DeliveryError",
    "DeliveryLog",
    "DeliveryRefused",
    "DeliveryUnavailable",
    "WhatsAppSender",
    "empty_response",
    "parse_message",
    "parse_status",
    "signature_valid",
    "whatsapp_address",
]
