"""The Telegram channel: webhook parsing (`inbound`), replies (`outbound`),
webhook registration (`webhook_setup`) and long polling for development (`polling`)."""

from bots.telegram.inbound import BotIdentity, parse_update, peek_update, secret_matches
from bots.telegram.outbound import TelegramSender
from bots.telegram.polling import poll
from bots.telegram.webhook_setup import ALLOWED_UPDATES, delete_webhook, new_secret, set_webhook

__all__ = [
    "ALLOWED_UPDATES",
    "BotIdentity",
    "TelegramSender",
    "delete_webhook",
    "new_secret",
    "parse_update",
    "peek_update",
    "poll",
    "secret_matches",
    "set_webhook",
]
