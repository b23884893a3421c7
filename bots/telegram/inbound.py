"""Telegram webhook deliveries -> the channel-neutral events of `bots.events`.

Parsing goes through python-telegram-bot's `Update.de_json`, so field names and
nesting follow the library, not hand-written dict lookups. Telegram retries any
webhook delivery that does not get a 2xx, so `parse_update` never raises: an
update we cannot use, or a body that is not an Update at all, becomes `Ignored`
and the gateway answers 200 instead of inviting endless redelivery.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass
from typing import Any

from telegram import Bot, Chat, Update
from telegram import Message as TgMessage
from telegram.constants import ChatMemberStatus

from bots.events import CallbackQuery, ChatBlocked, Ignored, Inbound, Message, Notice, Unparsed
from core.messages import IncomingMessage
from core.redaction import tag
from core.text import well_formed_json

log = logging.getLogger(__name__)

CHANNEL = "telegram"
MEDIA_NOTICE = "I can only read text messages for now — please type your question."

# Content we cannot read but a person clearly sent to us: answer with MEDIA_NOTICE
# rather than silence. Polls, dice, games, service messages (pins, joins, ...) are
# not in the list: those are not questions, so they are ignored.
_MEDIA_FIELDS = (
    "photo",
    "sticker",
    "voice",
    "video",
    "video_note",
    "animation",
    "audio",
    "document",
    "location",
    "venue",
    "contact",
)
_GROUP_TYPES = {Chat.GROUP, Chat.SUPERGROUP}
# Statuses in which the bot can no longer post to the chat: "kicked" is what a
# private chat reports when the user blocks the bot; "left" is a group removal.
_GONE = {ChatMemberStatus.BANNED, ChatMemberStatus.LEFT}
_PRESENT = {
    ChatMemberStatus.MEMBER,
    ChatMemberStatus.ADMINISTRATOR,
    ChatMemberStatus.OWNER,
    ChatMemberStatus.RESTRICTED,
}
# `/name` or `/name@SomeBot` at the start of a message.
_COMMAND = re.compile(r"^/[A-Za-z0-9_]+(?:@(?P<target>\w+))?(?:\s|$)")


def secret_matches(header: str | None, expected: str) -> bool:
    """Whether `X-Telegram-Bot-Api-Secret-Token` equals the secret given to setWebhook.

    Constant-time so the secret cannot be guessed byte by byte from response
    timings. Fails closed: a missing header, or an empty configured secret
    (a misconfiguration, not an "accept everything" switch), never matches.
    """
    if header is None or not expected:
        return False
    return hmac.compare_digest(header.encode("utf-8"), expected.encode("utf-8"))


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot is: needed to tell whether a group message addresses it."""

    id: int
    username: str

    @classmethod
    def of(cls, bot: Bot) -> BotIdentity:
        """From a Bot after `await bot.initialize()` (which calls getMe)."""
        return cls(id=bot.id, username=bot.username)


class _Malformed(ValueError):
    """The JSON parsed as an Update but lacks something every real one has."""


def parse_update(payload: Any, bot: BotIdentity | Bot) -> Inbound:
    """Classify one webhook body (the decoded JSON) into what the gateway should do.

    `bot` is a `BotIdentity` or an initialised `telegram.Bot`. Returned ids are raw
    (the gateway needs them to answer); ids logged here go through `core.redaction.tag`.
    """
    identity = bot if isinstance(bot, BotIdentity) else BotIdentity.of(bot)
    if not isinstance(payload, dict):
        return Ignored("malformed")
    try:
        # bot=None: parsed objects without a bot have no shortcut methods, which
        # keeps parsing free of any network side effect.
        update = Update.de_json(payload, None)
        return _classify(update, identity)
    except Exception as exc:  # noqa: BLE001 - any shape Telegram (or a forger) sends must not 5xx
        log.warning(
            "telegram: unparseable update %s (%s)", tag(payload.get("update_id")), type(exc).__name__
        )
        return Ignored("malformed")


def peek_update(payload: Any) -> Unparsed | Ignored:
    """What the gateway needs before parsing: the update id (dedupe) and the chat (ordering).

    `parse_update` runs later, when the update is answered.
    """
    if not isinstance(payload, dict):
        return Ignored("malformed")
    update_id = payload.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int):
        return Ignored("malformed")
    # Lone surrogates ("\ud800") could not be stored or tokenised: replaced here, at the edge.
    payload = well_formed_json(payload)
    return Unparsed(payload, reply_to=_peek_chat(payload), dedupe_key=f"{CHANNEL}:{update_id}")


def _peek_chat(payload: dict) -> str:
    callback = payload.get("callback_query")
    holders = [payload.get(field) for field in _CHAT_HOLDERS]
    holders.append(callback.get("message") if isinstance(callback, dict) else None)
    for holder in holders:
        chat = holder.get("chat") if isinstance(holder, dict) else None
        if isinstance(chat, dict) and isinstance(chat.get("id"), int):
            return str(chat["id"])
    return ""


_CHAT_HOLDERS = ("message", "edited_message", "channel_post", "edited_channel_post", "my_chat_member")


def _classify(update: Update, me: BotIdentity) -> Inbound:
    if isinstance(update.update_id, bool) or not isinstance(update.update_id, int):
        raise _Malformed("update_id")
    dedupe_key = f"{CHANNEL}:{update.update_id}"
    if update.message is not None:
        return _from_message(update.message, me, dedupe_key)
    if update.edited_message is not None:
        return _edited()
    if update.channel_post is not None or update.edited_channel_post is not None:
        return Ignored("channel post")
    if update.callback_query is not None:
        return _from_callback(update, dedupe_key)
    if update.my_chat_member is not None:
        return _from_membership(update)
    return Ignored("unsupported update")


def _edited() -> Ignored:
    """Edited messages are ignored, on purpose.

    The original message was already answered; answering the edit too would give
    the user a second reply to the same question (and a second turn in memory),
    and there is no way to "re-answer" in place. A user who wants a new answer
    sends a new message, which is how people use chat anyway.
    """
    return Ignored("edited")


def _from_message(message: TgMessage, me: BotIdentity, dedupe_key: str) -> Inbound:
    chat_id = _chat_id(message.chat)
    sender = message.from_user
    # Other bots (and our own echoes) are never answered: two bots answering each
    # other loop forever. Anonymous group admins post as a bot *with* sender_chat.
    if sender is not None and sender.is_bot and message.sender_chat is None:
        return Ignored("from a bot")
    text = message.text if message.text is not None else message.caption
    if text is not None and not isinstance(text, str):  # a forged update: "text": 12345
        raise _Malformed("text")
    if message.chat.type in _GROUP_TYPES:
        text, addressed = _addressed_text(message, text, me)
        if not addressed:
            return Ignored("group message not addressed to the bot")
    elif message.chat.type != Chat.PRIVATE:
        return Ignored("unsupported chat type")
    reply_to = str(chat_id)
    if text is None:
        if any(getattr(message, field) for field in _MEDIA_FIELDS):
            return Notice(reply_to=reply_to, text=MEDIA_NOTICE, dedupe_key=dedupe_key)
        return Ignored("no text")
    incoming = IncomingMessage(
        channel=CHANNEL,
        conversation_id=f"{CHANNEL}:{chat_id}",
        text=text,
        user_id=str(sender.id) if sender is not None else "",
        message_id=str(message.message_id),
    )
    return Message(incoming=incoming, reply_to=reply_to, dedupe_key=dedupe_key)


def _addressed_text(message: TgMessage, text: str | None, me: BotIdentity) -> tuple[str | None, bool]:
    """In a group only messages meant for the bot are answered: (text to answer, addressed?).

    Addressed means a command (`/hr`, or `/hr@ThisBot` but not `/hr@OtherBot`), a
    mention of `@ThisBot` (removed from the text: it is not part of the question),
    or a reply to one of the bot's own messages. Anything else is conversation
    between people and answering it would be noise.
    """
    replied = message.reply_to_message
    is_reply = bool(replied and replied.from_user and replied.from_user.id == me.id)
    if text is None:
        return None, is_reply
    command = _COMMAND.match(text)
    if command:
        target = command["target"]
        if target is None or target.lower() == me.username.lower():
            return text, True  # the pipeline's command parser accepts /cmd@Bot as is
        return None, False  # a command for another bot in the same group
    # The mention and the punctuation that usually follows it ("@Bot, ..." / "@Bot: ...").
    mention = re.compile(rf"(?<![\w@])@{re.escape(me.username)}(?!\w)[,:]?", re.IGNORECASE)
    if mention.search(text):
        stripped = re.sub(r"[ \t]{2,}", " ", mention.sub(" ", text)).strip()
        # A bare "@Bot" asks nothing; treat it as asking what the bot can do.
        return stripped or "/help", True
    return text, is_reply


def _from_callback(update: Update, dedupe_key: str) -> Inbound:
    query = update.callback_query
    assert query is not None
    # Buttons on a message we sent carry that chat; inline-mode messages have no
    # message, and the only place left to answer is the presser's private chat.
    origin = query.message
    chat_id = _chat_id(origin.chat) if origin is not None else query.from_user.id
    return CallbackQuery(
        callback_query_id=str(query.id),
        reply_to=str(chat_id),
        data=query.data or "",
        dedupe_key=dedupe_key,
    )


def _from_membership(update: Update) -> Inbound:
    change = update.my_chat_member
    assert change is not None
    chat_id = _chat_id(change.chat)
    old, new = change.old_chat_member.status, change.new_chat_member.status
    if new in _GONE:
        return ChatBlocked(reply_to=str(chat_id), blocked=True)
    if new in _PRESENT and old in _GONE:
        return ChatBlocked(reply_to=str(chat_id), blocked=False)
    return Ignored("membership change")


def _chat_id(chat: Chat) -> int:
    if isinstance(chat.id, bool) or not isinstance(chat.id, int):
        raise _Malformed("chat.id")
    return chat.id
