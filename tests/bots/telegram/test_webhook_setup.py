import asyncio
import re

import pytest

from bots.telegram.outbound import TelegramSender
from bots.telegram.webhook_setup import ALLOWED_UPDATES, delete_webhook, new_secret, set_webhook
from tests.bots.telegram.fake_bot_api import TOKEN, FakeBotApi


def with_bot(api: FakeBotApi, scenario):
    async def main():
        async with TelegramSender(TOKEN, base_url=api.base_url, base_file_url=api.base_file_url) as sender:
            return await scenario(sender.bot)

    return asyncio.run(main())


def test_set_webhook_sends_url_secret_and_allowed_updates(api):
    secret = new_secret()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret)
    ok = with_bot(api, lambda bot: set_webhook(bot, "https://bots.example.com/telegram/webhook", secret))
    (call,) = api.calls_to("setWebhook")
    assert ok is True
    assert call.params["url"] == "https://bots.example.com/telegram/webhook"
    assert call.params["secret_token"] == secret
    assert call.json_param("allowed_updates") == [
        "message", "edited_message", "channel_post", "callback_query", "my_chat_member"
    ]
    assert list(ALLOWED_UPDATES) == call.json_param("allowed_updates")


def test_set_webhook_refuses_an_empty_secret(api):
    with pytest.raises(ValueError):
        with_bot(api, lambda bot: set_webhook(bot, "https://bots.example.com/hook", ""))
    assert api.calls_to("setWebhook") == []


def test_delete_webhook(api):
    async def scenario(bot):
        await set_webhook(bot, "https://bots.example.com/hook", "s3cret")
        return await delete_webhook(bot, drop_pending_updates=True)

    assert with_bot(api, scenario) is True
    (call,) = api.calls_to("deleteWebhook")
    assert call.json_param("drop_pending_updates") is True
    assert api.webhook is None
