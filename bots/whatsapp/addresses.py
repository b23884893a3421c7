"""WhatsApp addresses: one canonical spelling, and a log-safe stand-in for them."""

from __future__ import annotations

import hashlib

PREFIX = "whatsapp:"


def whatsapp_address(value: str) -> str:
    """`value` as Twilio's WhatsApp channel address, with exactly one "whatsapp:" prefix.

    Twilio sends `From=whatsapp:+91...` and expects the same spelling back in `To`;
    a bare "+91..." would go out as an SMS, so the prefix is added, never doubled.
    """
    value = value.strip()
    while value.lower().startswith(PREFIX):
        value = value[len(PREFIX) :]
    return PREFIX + value


def redact(value: str | None) -> str:
    """A short, stable tag for a phone number or address, so logs never hold it raw.

    The "whatsapp:" prefix is dropped first so a conversation id, a `To` and a bare
    number of the same person get the same tag and log lines can be correlated.
    Twelve hex digits of an unsalted SHA-256: enough to tell people apart in logs,
    but not a secret (the number space is small), so logs still deserve care.
    """
    if not value:
        return "-"
    bare = value.strip()
    if bare.lower().startswith(PREFIX):
        bare = bare[len(PREFIX) :]
    return hashlib.sha256(bare.encode("utf-8")).hexdigest()[:12]
