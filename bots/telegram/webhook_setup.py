"""Registering (and removing) the gateway's webhook with Telegram."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from telegram import Bot
from telegram.constants import UpdateType

# Only what `parse_update` acts on. Telegram then does not even deliver the rest
# (polls, inline queries, chat_member of other users, ...), saving requests.
# edited_message and channel_post are ignored, but are listed so the decision is
# ours and visible in one place rather than an accident of this list.
ALLOWED_UPDATES: tuple[str, ...] = tuple(
    kind.value
    for kind in (
        UpdateType.MESSAGE,
        UpdateType.EDITED_MESSAGE,
        UpdateType.CHANNEL_POST,
        UpdateType.CALLBACK_QUERY,
        UpdateType.MY_CHAT_MEMBER,
    )
)


def new_secret() -> str:
    """A secret_token Telegram accepts: 1-256 characters of A-Z a-z 0-9 _ -."""
    return secrets.token_urlsafe(32)


async def set_webhook(
    bot: Bot,
    url: str,
    secret: str,
    allowed_updates: Sequence[str] = ALLOWED_UPDATES,
    *,
    drop_pending_updates: bool = False,
) -> bool:
    """Point Telegram at `url`; every delivery will carry `secret` in
    `X-Telegram-Bot-Api-Secret-Token`, which the gateway checks with `secret_matches`."""
    if not secret:
        raise ValueError("a webhook without a secret would accept forged updates")
    return await bot.set_webhook(
        url=url,
        secret_token=secret,
        allowed_updates=list(allowed_updates),
        drop_pending_updates=drop_pending_updates,
    )


async def delete_webhook(bot: Bot, *, drop_pending_updates: bool = False) -> bool:
    """Stop webhook deliveries (needed before getUpdates polling works)."""
    return await bot.delete_webhook(drop_pending_updates=drop_pending_updates)
