"""Sending through the real twilio client to a loopback fake Twilio."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bots.chunking import utf16_length
from bots.whatsapp.outbound import MAX_BODY_CHARS, DeliveryRefused, DeliveryUnavailable, WhatsAppSender
from tests.bots.whatsapp.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM
from tests.bots.whatsapp.fake_twilio import FakeTwilio

# twilio's async client still uses aiohttp's BasicAuth and `auth=`, which aiohttp 3.14 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:twilio")

TO = "whatsapp:+12015550123"


def send(sender: WhatsAppSender, *args, **kwargs) -> list[str]:
    """`sender.send(...)` in a fresh event loop, closing the sender's session in that same loop."""

    async def main() -> list[str]:
        async with sender:
            return await sender.send(*args, **kwargs)

    return asyncio.run(main())


def test_sends_plain_text(sender: WhatsAppSender, fake_twilio: FakeTwilio):
    callback = "https://bot.example.com/s"
    sids = send(sender, TO, "Opening hours are 9 to 5.", status_callback=callback)
    assert len(sids) == 1 and sids[0].startswith("SM")
    [message] = fake_twilio.messages
    assert message == {
        "To": TO,
        "From": FROM,
        "Body": "Opening hours are 9 to 5.",
        "StatusCallback": callback,
        "Sid": sids[0],
    }
    assert fake_twilio.calls[0].account_sid == ACCOUNT_SID


def test_prefix_added_once_and_no_callback_when_unset(sender: WhatsAppSender, fake_twilio: FakeTwilio):
    send(sender, "+12015550123", "hi")
    assert fake_twilio.messages[0]["To"] == TO
    assert "StatusCallback" not in fake_twilio.messages[0]


def test_empty_text_sends_nothing(sender: WhatsAppSender, fake_twilio: FakeTwilio):
    assert send(sender, TO, "  \n ") == []
    assert fake_twilio.calls == []


def test_long_reply_split_in_order(sender: WhatsAppSender, fake_twilio: FakeTwilio):
    paragraphs = [
        f"अनुच्छेद {i}: छुट्टी की नीति के अनुसार हर कर्मचारी को साल में अठारह दिन मिलते हैं। 🎉🇮🇳 " * 6
        for i in range(12)
    ]
    text = "\n\n".join(p.strip() for p in paragraphs)
    assert len(text) > 3 * MAX_BODY_CHARS
    sids = send(sender, TO, text)
    bodies = [m["Body"] for m in fake_twilio.messages]
    assert len(sids) == len(bodies) >= 4
    assert sids == [m["Sid"] for m in fake_twilio.messages]
    assert all(0 < len(b) <= MAX_BODY_CHARS and utf16_length(b) <= MAX_BODY_CHARS for b in bodies)
    assert "".join("".join(b.split()) for b in bodies) == "".join(text.split())  # every word, in order
    joined = "\n\n".join(bodies)
    positions = [joined.index(f"अनुच्छेद {i}:") for i in range(12)]
    assert positions == sorted(positions)


def test_emoji_run_split_without_cutting_a_character(sender: WhatsAppSender, fake_twilio: FakeTwilio):
    text = "😀" * 2000  # 2000 characters, 4000 UTF-16 units
    send(sender, TO, text)
    bodies = [m["Body"] for m in fake_twilio.messages]
    assert "".join(bodies) == text and all(utf16_length(b) <= MAX_BODY_CHARS for b in bodies)


@pytest.mark.parametrize(("status", "code"), [(500, 20500), (503, 20500), (429, 20429)])
def test_transient_error_retried_then_succeeds(sender: WhatsAppSender, fake_twilio: FakeTwilio, status, code):
    fake_twilio.fail_next(2, status, code)
    sids = send(sender, TO, "hello")
    assert [c.status for c in fake_twilio.calls] == [status, status, 201]
    assert len(sids) == 1 and [m["Body"] for m in fake_twilio.messages] == ["hello"]


def test_dropped_connection_retried(sender: WhatsAppSender, fake_twilio: FakeTwilio):
    fake_twilio.drop_next(1)
    assert len(send(sender, TO, "hello")) == 1
    assert [c.status for c in fake_twilio.calls] == [0, 201]


def test_retries_are_bounded(sender: WhatsAppSender, fake_twilio: FakeTwilio):
    fake_twilio.fail_next(10, 500, 20500)
    with pytest.raises(DeliveryUnavailable) as raised:
        send(sender, TO, "hello")
    assert len(fake_twilio.calls) == sender.max_attempts == 4
    assert raised.value.code == 20500 and raised.value.sent == []


def test_outside_24h_window_not_retried(sender: WhatsAppSender, fake_twilio: FakeTwilio, caplog):
    fake_twilio.fail_next(1, 400, 63016)
    with caplog.at_level(logging.WARNING, logger="bots.whatsapp.outbound"):
        with pytest.raises(DeliveryRefused) as raised:
            send(sender, TO, "hello")
    assert len(fake_twilio.calls) == 1
    assert raised.value.code == 63016 and "outside the allowed window" in raised.value.message
    assert "63016" in caplog.text and "24-hour" in caplog.text
    assert "2015550123" not in caplog.text  # recipient logged redacted


def test_invalid_number_not_retried(sender: WhatsAppSender, fake_twilio: FakeTwilio):
    fake_twilio.fail_next(1, 400, 21211)
    with pytest.raises(DeliveryRefused) as raised:
        send(sender, TO, "hello")
    assert raised.value.code == 21211 and len(fake_twilio.calls) == 1


def test_wrong_credentials_refused(fake_twilio: FakeTwilio):
    bad = WhatsAppSender(ACCOUNT_SID, "wrong", FROM, api_base_url=fake_twilio.url, backoff_base=0.01)
    with pytest.raises(DeliveryRefused) as raised:
        send(bad, TO, "hello")
    assert raised.value.code == 20003 and len(fake_twilio.calls) == 1


def test_refusal_midway_reports_what_was_sent(sender: WhatsAppSender, fake_twilio: FakeTwilio):
    text = "\n\n".join(["a" * 1500, "b" * 1500, "c" * 1500])

    async def scenario() -> None:
        async with sender:
            task = asyncio.create_task(sender.send(TO, text))
            while len(fake_twilio.calls) < 1:  # first piece accepted, then the window closes
                await asyncio.sleep(0.001)
            fake_twilio.fail_next(5, 400, 63016)
            await task

    with pytest.raises(DeliveryRefused) as raised:
        asyncio.run(scenario())
    assert raised.value.sent == [m["Sid"] for m in fake_twilio.messages]
    assert len(raised.value.sent) >= 1


def test_sending_does_not_block_the_event_loop(sender: WhatsAppSender, fake_twilio: FakeTwilio):
    fake_twilio.delay = 0.3  # a slow Twilio

    async def scenario() -> tuple[float, int, float]:
        ticks = 0
        largest_gap = 0.0

        async def ticker() -> None:
            nonlocal ticks, largest_gap
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                largest_gap, last, ticks = max(largest_gap, now - last), now, ticks + 1

        # No worker threads: a send that reached for one would fail here.
        asyncio.get_running_loop().set_default_executor(_NoThreads())
        ticking = asyncio.create_task(ticker())
        start = time.perf_counter()
        # Two conversations at once, both waiting on Twilio on the event loop itself.
        async with sender:
            await asyncio.gather(sender.send(TO, "one"), sender.send("whatsapp:+12015550124", "two"))
        elapsed = time.perf_counter() - start
        ticking.cancel()
        return elapsed, ticks, largest_gap

    elapsed, ticks, largest_gap = asyncio.run(scenario())
    assert len(fake_twilio.messages) == 2
    assert ticks >= 15 and largest_gap < 0.15
    assert elapsed < 0.55  # concurrent, not 2 × 0.3 s back to back


class _NoThreads(ThreadPoolExecutor):
    def submit(self, *args, **kwargs):
        raise AssertionError("a send ran in a worker thread")


def _unclosed_sessions(warnings) -> list:
    gc.collect()  # aiohttp warns from a session's __del__
    return [w for w in warnings if "Unclosed client session" in str(w.message)]


def test_close_releases_the_http_session(fake_twilio: FakeTwilio, recwarn):
    def new_sender() -> WhatsAppSender:
        return WhatsAppSender(ACCOUNT_SID, AUTH_TOKEN, FROM, api_base_url=fake_twilio.url)

    send(new_sender(), TO, "closed after use")
    assert _unclosed_sessions(recwarn) == []

    async def without_close() -> None:  # the check above would notice a leak
        await new_sender().send(TO, "left open")

    asyncio.run(without_close())
    assert len(_unclosed_sessions(recwarn)) == 1
    assert len(fake_twilio.messages) == 2


def test_a_hung_twilio_times_out_and_counts_as_unavailable(fake_twilio: FakeTwilio):
    fake_twilio.delay = 2.0  # the SDK's aiohttp client sets no timeout; the sender's own bound must fire
    slow = WhatsAppSender(
        ACCOUNT_SID, AUTH_TOKEN, FROM, api_base_url=fake_twilio.url, max_attempts=2, backoff_base=0.01, timeout=0.2
    )
    started = time.monotonic()
    with pytest.raises(DeliveryUnavailable) as raised:
        send(slow, TO, "hello")
    assert raised.value.code is None and raised.value.message == "network: TimeoutError"
    assert time.monotonic() - started < 1.5
