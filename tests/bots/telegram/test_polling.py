import asyncio

import pytest

from bots.telegram.inbound import parse_update
from bots.telegram.outbound import TelegramSender
from bots.telegram.polling import poll
from bots.telegram.webhook_setup import set_webhook
from tests.bots.telegram import payloads as p
from tests.bots.telegram.fake_bot_api import TOKEN, FakeBotApi


def polling(api: FakeBotApi, expected: int, on_each=None, sender_options=None, **options):
    """Poll until `expected` updates arrived (or 10 s passed); the update dicts received."""
    received: list[dict] = []

    async def main():
        async with TelegramSender(
            TOKEN, base_url=api.base_url, base_file_url=api.base_file_url, **(sender_options or {})
        ) as sender:
            await set_webhook(sender.bot, "https://bots.example.com/hook", "s3cret")  # poll must remove it
            stop = asyncio.Event()

            async def handler(update: dict) -> None:
                received.append(update)
                if on_each is not None:
                    on_each(update)
                if len(received) >= expected:
                    stop.set()

            options.setdefault("timeout_s", 1)
            await asyncio.wait_for(poll(sender.bot, handler, stop, **options), timeout=10)
            return sender.identity

    identity = asyncio.run(main())
    return received, identity


def test_polling_delivers_updates_with_increasing_offsets(api):
    first = [
        p.text("hello", update_id=10),
        p.text("नमस्ते", update_id=11),
        p.my_chat_member("member", "kicked", update_id=12),
    ]
    later = p.text("/hr leave policy", update_id=13)
    for update in first:
        api.queue_update(update)

    def queue_more(update):
        if update["update_id"] == 12:
            api.queue_update(later)

    received, me = polling(api, expected=4, on_each=queue_more)

    assert [u["update_id"] for u in received] == [10, 11, 12, 13]
    for original, got in zip([*first, later], received):
        assert parse_update(got, me) == parse_update(original, me)
    assert api.calls_to("deleteWebhook")
    polls = api.calls_to("getUpdates", ok_only=True)
    offsets = [int(c.params["offset"]) for c in polls if "offset" in c.params]
    assert offsets == sorted(offsets)
    assert {13, 14} <= set(offsets)
    assert all(c.json_param("allowed_updates") for c in api.calls_to("getUpdates"))


def test_polling_backs_off_on_errors_and_survives_a_failing_handler(api):
    api.fail_next(2, status=502, method="getUpdates")
    api.queue_update(p.text("boom", update_id=20))
    api.queue_update(p.text("fine", update_id=21))

    def explode(update):
        if update["update_id"] == 20:
            raise RuntimeError("handler bug")

    received, _ = polling(api, expected=2, on_each=explode, backoff_base_s=0.05)
    assert [u["update_id"] for u in received] == [20, 21]
    statuses = [c.status for c in api.calls_to("getUpdates")]
    assert statuses[:2] == [502, 502] and 200 in statuses


# PTB itself reads the deprecated int form of retry_after while building RetryAfter's message.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_polling_waits_as_long_as_a_429_asks(api):
    # No rate-limiter retries, so the 429 reaches the poll loop, whose own backoff is tiny.
    api.rate_limit_next(1, retry_after=1, method="getUpdates")
    api.queue_update(p.text("after the flood wait", update_id=30))
    received, _ = polling(api, expected=1, sender_options={"rate_limit_retries": 0}, backoff_base_s=0.01)
    assert [u["update_id"] for u in received] == [30]
    first, second = api.calls_to("getUpdates")[:2]
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0
