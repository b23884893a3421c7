"""Sending replies to Telegram: chunked, plain text, rate limited, retried, block-aware."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from telegram.constants import ChatAction, MessageLimit
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.ext import AIORateLimiter, ExtBot

from bots.chunking import split_text, utf16_length
from bots.telegram.inbound import BotIdentity
from core.redaction import tag
from core.retry import retrying

log = logging.getLogger(__name__)

T = TypeVar("T")

API_URL = "https://api.telegram.org/bot"
FILE_URL = "https://api.telegram.org/file/bot"
MAX_MESSAGE = MessageLimit.MAX_TEXT_LENGTH  # 4096, counted in UTF-16 code units
# "typing" shows for 5 s or until our next message; renewing at 4 s leaves no gap.
TYPING_EVERY_S = 4.0


class _ChatPacer:
    """At most one message per `interval` in any one chat (Telegram's ~1 msg/s per chat).

    PTB's AIORateLimiter limits the bot overall and per *group*, but not per private
    chat, so a long reply split into pieces is paced here. Each caller reserves the
    next free slot of its chat before sleeping, so concurrent senders queue up
    instead of bursting together.
    """

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next: dict[str, float] = {}

    async def wait(self, chat: str) -> None:
        if self._interval <= 0:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next.get(chat, now))
        self._next[chat] = slot + self._interval
        if len(self._next) > 4096:  # forget idle chats so the map does not grow forever
            self._next = {c: t for c, t in self._next.items() if t > now}
        if slot > now:
            await asyncio.sleep(slot - now)


class TelegramSender:
    """Everything the gateway sends to Telegram, over one PTB `ExtBot`.

    Rate limits: PTB's `AIORateLimiter` keeps the bot under ~30 msg/s overall and
    20 msg/min per group, and on a 429 pauses *all* requests for
    `parameters.retry_after` (+0.1 s) before retrying (`rate_limit_retries` times);
    `_ChatPacer` adds ~1 msg/s per chat. Network failures are retried
    `network_retries` times with the project's backoff (core.retry).

    Blocked chats live in an in-process set (to move to shared storage later): a
    `ChatBlocked` event or a 403 from Telegram puts a chat there, and nothing is
    sent to it until `unblock`.
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str = API_URL,
        base_file_url: str = FILE_URL,
        rate_limit_retries: int = 3,
        network_retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        per_chat_interval_s: float = 1.0,
        overall_per_second: float = 30.0,
        typing_interval_s: float = TYPING_EVERY_S,
    ) -> None:
        self.bot: ExtBot = ExtBot(
            token,
            base_url=base_url,
            base_file_url=base_file_url,
            rate_limiter=AIORateLimiter(
                overall_max_rate=overall_per_second, overall_time_period=1, max_retries=rate_limit_retries
            ),
        )
        self._network_retries = network_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._pacer = _ChatPacer(per_chat_interval_s)
        self._typing_interval_s = typing_interval_s
        self._blocked: set[str] = set()

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session and learn who we are (getMe)."""
        try:
            await self.bot.initialize()
        except InvalidToken:
            # PTB's message quotes the token; do not let it reach logs.
            raise InvalidToken("the Telegram bot token was rejected") from None

    async def close(self) -> None:
        await self.bot.shutdown()

    async def __aenter__(self) -> TelegramSender:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def identity(self) -> BotIdentity:
        """The bot's id and username, for `parse_update` (after `start`)."""
        return BotIdentity.of(self.bot)

    # -- blocked chats ---------------------------------------------------------

    def block(self, chat_id: int | str) -> None:
        self._blocked.add(str(chat_id))

    def unblock(self, chat_id: int | str) -> None:
        self._blocked.discard(str(chat_id))

    def is_blocked(self, chat_id: int | str) -> bool:
        return str(chat_id) in self._blocked

    # -- sending ---------------------------------------------------------------

    async def send(self, chat_id: int | str, text: str) -> list[int]:
        """Send `text` as one or more plain-text messages; the ids of those sent.

        No parse_mode: model output goes out verbatim, so a stray `*` or `_` can
        neither break the request (MarkdownV2 rejects unescaped characters) nor be
        used to inject links or formatting. Stops early, returning what was sent,
        if the chat turns out to be blocked. Raises `TelegramError` for what
        retrying cannot fix (bad request, persistent 429 or network failure).
        """
        sent: list[int] = []
        for piece in split_text(text, MAX_MESSAGE, utf16_length):
            if self.is_blocked(chat_id):
                log.info("telegram: not sending to blocked chat %s", tag(chat_id))
                break
            await self._pacer.wait(str(chat_id))
            try:
                message = await self._retrying(
                    f"sendMessage to {tag(chat_id)}", lambda p=piece: self.bot.send_message(chat_id, p)
                )
            except Forbidden as exc:
                self._blocked_by_telegram(chat_id, exc)
                break
            sent.append(message.message_id)
        return sent

    async def typing(self, chat_id: int | str) -> None:
        """Show "typing…" in the chat (about 5 s). Best effort: failures are only logged."""
        if self.is_blocked(chat_id):
            return
        try:
            await self.bot.send_chat_action(chat_id, ChatAction.TYPING)
        except Forbidden as exc:
            self._blocked_by_telegram(chat_id, exc)
        except TelegramError as exc:
            log.info("telegram: typing to %s failed: %s", tag(chat_id), type(exc).__name__)

    @contextlib.asynccontextmanager
    async def keep_typing(self, chat_id: int | str) -> AsyncIterator[None]:
        """Show "typing…" for as long as the block runs (e.g. while the model generates)."""

        async def renew() -> None:
            while True:
                await self.typing(chat_id)
                await asyncio.sleep(self._typing_interval_s)

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            # The indicator is cosmetic: whatever ended the renewal task must not
            # replace the block's own outcome.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def answer_callback(self, callback_query_id: str, text: str | None = None) -> bool:
        """Stop the button's spinner. False if Telegram refused (e.g. the query is too old)."""
        try:
            return await self._retrying(
                "answerCallbackQuery", lambda: self.bot.answer_callback_query(callback_query_id, text=text)
            )
        except TelegramError as exc:
            log.info("telegram: answerCallbackQuery failed: %s", type(exc).__name__)
            return False

    # -- internals -------------------------------------------------------------

    def _blocked_by_telegram(self, chat_id: int | str, exc: Forbidden) -> None:
        # Every 403 on a chat ("bot was blocked by the user", "user is deactivated",
        # "bot was kicked from the group chat") means messages there cannot arrive.
        log.info("telegram: chat %s refuses messages (%s); marking blocked", tag(chat_id), exc.message)
        self.block(chat_id)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call`, retrying transient network failures (`network_retries` times) with backoff.

        BadRequest subclasses NetworkError in PTB but is our fault, not the
        network's, so it is not retried. A 429 is the rate limiter's to wait out; the
        RetryAfter it raises once its own retries are spent is no NetworkError and
        passes through. A timed-out send may in fact have been delivered; a rare
        duplicate is preferred over a lost reply.
        """
        async for attempt in retrying(
            on=NetworkError,
            except_on=BadRequest,
            attempts=self._network_retries + 1,
            base_s=self._backoff_base_s,
            max_s=self._backoff_max_s,
            log=log,
            what=f"telegram: {what}",
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable: the last failure is re-raised")
