"""The webhook's immediate answer: empty TwiML, so Twilio sends nothing by itself.

Twilio gives a webhook 15 s before it tries the fallback URL; the model can take
longer, so the webhook acknowledges at once and the reply goes out later through
the REST API (outbound.WhatsAppSender).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from twilio.twiml.messaging_response import MessagingResponse

TWIML_CONTENT_TYPE = "text/xml"


def empty_response() -> str:
    """`<?xml ...?><Response></Response>`: MessagingResponse, written with an explicit end tag."""
    # str(MessagingResponse()) gives the equivalent "<Response />"; the long form is
    # what Twilio's docs show and what a byte-for-byte check expects.
    body = ET.tostring(MessagingResponse().xml(), encoding="unicode", short_empty_elements=False)
    return f'<?xml version="1.0" encoding="UTF-8"?>{body}'


EMPTY_TWIML = empty_response()
