"""Long polling (getUpdates): development without a public webhook URL.

Each update is handed, as the same dict shape a webhook delivery carries, to the
handler the webhook uses, so polling exercises the production code path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from telegram import Bot, Update
from telegram.error import InvalidToken, TelegramError

from bots.telegram.webhook_setup import ALLOWED_UPDATES, delete_webhook
from core.redaction import tag

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
    and retry; an invalid token is fatal and raised.
    """
    offset: int | None = None
    webhook_deleted = False
    failures = 0
    while not stop.is_set():
        try:
            if not webhook_deleted:
                # getUpdates answers 409 Conflict while a webhook is set.
                await delete_webhook(bot)
                webhook_deleted = True
            updates = await _get_updates(bot, offset, timeout_s, allowed_updates, stop)
        except InvalidToken:
            raise
        except TelegramError as exc:  # network errors, 5xx, 409 from a second poller, 429
            failures += 1
            delay = min(backoff_max_s, backoff_base_s * 2 ** (failures - 1))
            log.warning("telegram: getUpdates failed (%s); retrying in %.1fs", type(exc).__name__, delay)
            await _sleep_unless_stopped(delay, stop)
            continue
        if updates is None:  # stopped while waiting
            break
        failures = 0
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


async def _get_updates(
    bot: Bot, offset: int | None, timeout_s: int, allowed: Sequence[str], stop: asyncio.Event
) -> tuple[Update, ...] | None:
    """One long poll, abandoned as soon as `stop` is set (None then).

    Abandoning is safe: updates in a response we never read are not confirmed
    (the offset did not move) and come again on the next poll.
    """
    fetch = asyncio.ensure_future(
        bot.get_updates(offset=offset, timeout=timeout_s, allowed_updates=list(allowed))
    )
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        pending = [task for task in (fetch, stopped) if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    if not fetch.done() or fetch.cancelled():
        return None
    return fetch.result()


async def _sleep_unless_stopped(delay: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        pass
