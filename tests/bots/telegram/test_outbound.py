import asyncio
import logging
import time

import pytest
from telegram.error import BadRequest, NetworkError

from bots.chunking import utf16_length
from bots.telegram.inbound import BotIdentity, parse_update
from bots.telegram.outbound import TelegramSender
from tests.bots.telegram import payloads as p
from tests.bots.telegram.fake_bot_api import TOKEN, FakeBotApi

CHAT = 100000001


def sender_for(api: FakeBotApi, **options) -> TelegramSender:
    options = {"per_chat_interval_s": 0, "backoff_base_s": 0.01, **options}
    return TelegramSender(TOKEN, base_url=api.base_url, base_file_url=api.base_file_url, **options)


def run_with(api: FakeBotApi, scenario, **options):
    """Run `scenario(sender)` against the fake API inside a started sender."""

    async def main():
        async with sender_for(api, **options) as sender:
            return await scenario(sender)

    return asyncio.run(main())


def test_start_learns_the_bot_identity(api):
    async def scenario(sender):
        return sender.identity

    identity = run_with(api, scenario)
    assert identity == BotIdentity(7000000001, "example_test_bot")
    assert [c.method for c in api.calls] == ["getMe"]


def test_parse_update_accepts_the_started_bot_itself(api):
    async def scenario(sender):
        return parse_update(p.text("@example_test_bot hi", chat=p.GROUP), sender.bot)

    assert run_with(api, scenario).incoming.text == "hi"


def test_short_reply_is_one_plain_text_message(api):
    reply = "Use *bold* or _italics_? [click](http://evil.example) <b>no</b> — sent verbatim."
    ids = run_with(api, lambda s: s.send(CHAT, reply))
    (call,) = api.calls_to("sendMessage")
    assert call.params["text"] == reply
    assert int(call.params["chat_id"]) == CHAT
    assert "parse_mode" not in call.params and "entities" not in call.params
    assert len(ids) == 1


@pytest.mark.parametrize(
    "reply",
    [
        ("मेरी छुट्टी नीति के बारे में बताइए। " * 200 + "\n\n") * 2,  # Devanagari, sentence ends with ।
        "😀🇮🇳 " * 1500 + "😀" * 3000,  # surrogate pairs: 2 UTF-16 units per emoji
    ],
)
def test_long_reply_is_split_under_telegrams_utf16_limit(api, reply):
    ids = run_with(api, lambda s: s.send(CHAT, reply))
    calls = api.calls_to("sendMessage")
    assert len(calls) >= 2
    assert len(ids) == len(calls)
    for call in calls:
        assert 0 < utf16_length(call.params["text"]) <= 4096
        assert "parse_mode" not in call.params
    sent = "".join(call.params["text"] for call in calls)
    assert "".join(sent.split()) == "".join(reply.split())


# PTB itself reads the deprecated int form of retry_after while building RetryAfter's message.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_429_retry_after_is_honoured(api):
    api.rate_limit_next(1, retry_after=1)
    started = time.monotonic()
    ids = run_with(api, lambda s: s.send(CHAT, "hello after the flood wait"))
    elapsed = time.monotonic() - started
    first, second = api.calls_to("sendMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0
    assert elapsed >= 1.0
    assert len(ids) == 1


def test_transient_server_errors_are_retried_with_backoff(api):
    api.fail_next(2, status=502)
    ids = run_with(api, lambda s: s.send(CHAT, "eventually"))
    assert [c.status for c in api.calls_to("sendMessage")] == [502, 502, 200]
    assert len(ids) == 1


def test_persistent_network_failure_gives_up(api):
    api.fail_next(10, status=502)
    with pytest.raises(NetworkError):
        run_with(api, lambda s: s.send(CHAT, "never"), network_retries=2)
    assert len(api.calls_to("sendMessage")) == 3


def test_bad_request_is_not_retried(api):
    api.fail_next(5, status=400)
    with pytest.raises(BadRequest):
        run_with(api, lambda s: s.send(CHAT, "rejected"))
    assert len(api.calls_to("sendMessage")) == 1


def test_a_blocked_chat_gets_nothing(api):
    async def scenario(sender):
        sender.block(CHAT)
        sent_blocked = await sender.send(CHAT, "hello?")
        await sender.typing(CHAT)
        sender.unblock(CHAT)
        sent_unblocked = await sender.send(CHAT, "hello again")
        return sent_blocked, sent_unblocked

    blocked, unblocked = run_with(api, scenario)
    assert blocked == [] and len(unblocked) == 1
    assert [c.params["text"] for c in api.calls_to("sendMessage")] == ["hello again"]
    assert api.calls_to("sendChatAction") == []


def test_403_from_telegram_marks_the_chat_blocked(api, caplog):
    api.block_chat(CHAT)

    async def scenario(sender):
        first = await sender.send(CHAT, "one\n\n" + "x" * 5000)
        blocked = sender.is_blocked(CHAT)
        second = await sender.send(CHAT, "two")
        return first, blocked, second

    with caplog.at_level(logging.INFO, logger="bots.telegram"):
        first, blocked, second = run_with(api, scenario)
    assert first == [] and second == [] and blocked
    assert [c.status for c in api.calls_to("sendMessage")] == [403]  # no retry, nothing after
    assert str(CHAT) not in caplog.text  # logs carry redacted ids only


def test_typing_is_sent(api):
    run_with(api, lambda s: s.typing(CHAT))
    (call,) = api.calls_to("sendChatAction")
    assert call.params["action"] == "typing"
    assert int(call.params["chat_id"]) == CHAT


def test_keep_typing_renews_until_the_block_exits(api):
    async def scenario(sender):
        async with sender.keep_typing(CHAT):
            await asyncio.sleep(0.35)
        count = len(api.calls_to("sendChatAction"))
        await asyncio.sleep(0.25)
        return count

    during = run_with(api, scenario, typing_interval_s=0.1)
    assert during >= 3
    assert len(api.calls_to("sendChatAction")) == during  # nothing after the block


def test_answer_callback(api):
    ok = run_with(api, lambda s: s.answer_callback("430000000000000001", text="हिन्दी चुनी गई"))
    (call,) = api.calls_to("answerCallbackQuery")
    assert ok is True
    assert call.params["callback_query_id"] == "430000000000000001"
    assert call.params["text"] == "हिन्दी चुनी गई"


def test_messages_in_one_chat_are_paced(api):
    reply = "\n\n".join(["a" * 4000] * 3)
    run_with(api, lambda s: s.send(CHAT, reply), per_chat_interval_s=0.3)
    times = [c.at for c in api.calls_to("sendMessage")]
    assert len(times) == 3
    assert all(later - earlier >= 0.25 for earlier, later in zip(times, times[1:]))
