"""WhatsApp addresses: one canonical spelling."""

from __future__ import annotations

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
