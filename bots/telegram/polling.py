"""Long polling (getUpdates): development without a public webhook URL.

Each update is handed, as the same dict shape a webhook delivery carries, to the
handler the webhook uses, so polling exercises the production code path.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import logging
import warnings
from collections.abc import Awaitable, Callable, Sequence

from telegram import Bot, Update
from telegram.error import InvalidToken, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from bots.telegram.webhook_setup import ALLOWED_UPDATES, delete_webhook
from core.redaction import tag
from core.retry import retrying, unless_stopped

log = logging.getLogger(__name__)


async def poll(
    bot: Bot,
    on_update: Callable[[dict], Awaitable[None]],
    stop: asyncio.Event,
    *,
    timeout_s: int = 30,
    allowed_updates: Sequence[str] = ALLOWED_UPDATES,
    backoff_base_s: float = 1.0,
    backoff_max_s: float = 30.0,
) -> None:
    """Fetch updates until `stop` is set, calling `on_update(update_dict)` for each, in order.

    `bot` must be initialised. The offset moves past an update once its handler
    returns or raises (a failing handler is logged, not retried: one poison update
    must not wedge the loop). Errors talking to Telegram back off exponentially
    (at least as long as a 429 asks) and retry; an invalid token is fatal and raised.
    """
    offset: int | None = None
    webhook_deleted = False

    async def next_batch() -> tuple[Update, ...]:
        nonlocal webhook_deleted
        # Network errors, 5xx, 409 from a second poller, 429: all pass with time.
        async for attempt in retrying(
            on=TelegramError,
            except_on=InvalidToken,
            base_s=backoff_base_s,
            max_s=backoff_max_s,
            hint=_retry_after_s,
            log=log,
            what="telegram: getUpdates",
            level=logging.WARNING,
        ):
            with attempt:
                if not webhook_deleted:
                    # getUpdates answers 409 Conflict while a webhook is set.
                    await delete_webhook(bot)
                    webhook_deleted = True
                return await bot.get_updates(offset=offset, timeout=timeout_s, allowed_updates=list(allowed_updates))
        raise AssertionError("unreachable: retried until it succeeds")

    while not stop.is_set():
        # Abandoning a poll is safe: updates in a response never read are not
        # confirmed (the offset did not move) and come again on the next poll.
        updates = await unless_stopped(next_batch(), stop)
        if updates is None:  # stopped while polling or waiting to retry
            break
        for update in updates:
            offset = update.update_id + 1
            try:
                await on_update(update.to_dict())
            except Exception:
                log.exception("telegram: handler failed on update %s", tag(update.update_id))
    await _confirm(bot, offset, allowed_updates)


async def _confirm(bot: Bot, offset: int | None, allowed: Sequence[str]) -> None:
    """Tell Telegram the last batch was handled, so a restart does not get it again.

    Telegram forgets updates only when a later getUpdates asks from a higher
    offset; without this, stopping right after a batch would replay it next time.
    """
    if offset is None:
        return
    try:
        # allowed_updates is sticky on Telegram's side, so repeat ours rather than reset it.
        await bot.get_updates(offset=offset, timeout=0, limit=1, allowed_updates=list(allowed))
    except TelegramError as exc:
        log.info("telegram: could not confirm the last updates (%s)", type(exc).__name__)


def _retry_after_s(error: BaseException) -> float | None:
    """The wait a 429 (RetryAfter) asks for; None for any other error."""
    if not isinstance(error, RetryAfter):
        return None
    with warnings.catch_warnings():
        # PTB warns on reading the int form it still returns by default (PTB_TIMEDELTA unset).
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)
