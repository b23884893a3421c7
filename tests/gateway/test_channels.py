"""Telegram and WhatsApp through the whole gateway: the real PTB and twilio clients
talk to loopback servers that speak the Bot API and Twilio REST shapes."""

import contextlib
import json
import logging
import time

import httpx
import pytest
from twilio.request_validator import RequestValidator

from bots.events import Message
from core.company import load_company
from core.messages import IncomingMessage
from gateway.app import create_app
from gateway.components import build_components
from gateway.responder import Responder
from pipeline.texts import help_text
from tests.bots.telegram import payloads
from tests.bots.telegram.fake_bot_api import TOKEN, FakeBotApi
from tests.bots.whatsapp.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM, load_form
from tests.bots.whatsapp.fake_twilio import FakeTwilio
from tests.conftest import FIXTURES, LiveServer, make_settings, run

SAMPLES = FIXTURES / "telegram"
SECRET = "telegram-webhook-secret-for-tests"
PUBLIC = "https://bot.example.com"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def wait_for(predicate, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fakes():
    bot_api = FakeBotApi().start()
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio:
        yield bot_api, twilio
    bot_api.stop()


def both_channels(home, tiny_model_dir, bot_api, twilio, secret=SECRET, **values):
    """Settings with Telegram and WhatsApp pointed at the loopback fakes."""
    return make_settings(
        home, tiny_model_dir, max_new_tokens=6, router="commands", public_url=PUBLIC, telegram_bot_token=TOKEN,
        telegram_webhook_secret=secret, telegram_api_url=bot_api.base_url, twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN, twilio_whatsapp_from=FROM, twilio_api_url=twilio.url, **values,
    )


@pytest.fixture(scope="module")
def server(fakes, tiny_model_dir, tmp_path_factory):
    bot_api, twilio = fakes
    settings = both_channels(tmp_path_factory.mktemp("channels"), tiny_model_dir, bot_api, twilio)
    components = build_components(settings)
    with LiveServer(create_app(components=components)) as live:
        wait_for(lambda: httpx.get(live.url + "/readyz").status_code == 200)
        yield live
    components.close()


@pytest.fixture
def bot_api(fakes):
    fakes[0].reset()
    return fakes[0]


@pytest.fixture
def twilio(fakes):
    fakes[1].messages.clear()
    fakes[1].calls.clear()
    return fakes[1]


def post_telegram(server, update, secret=SECRET):
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
    return httpx.post(server.url + "/webhooks/telegram", json=update, headers=headers)


def sent_texts(bot_api, chat_id):
    return [c.params["text"] for c in bot_api.calls_to("sendMessage", ok_only=True)
            if str(c.params["chat_id"]) == str(chat_id)]


def test_a_telegram_message_is_answered_once_even_when_delivered_three_times(server, bot_api):
    update = sample("private_text.json")
    for _ in range(3):
        assert post_telegram(server, update).status_code == 200
    wait_for(lambda: sent_texts(bot_api, 100000001))
    time.sleep(0.5)
    assert len(sent_texts(bot_api, 100000001)) == 1
    assert bot_api.calls_to("sendChatAction")  # typing while the model worked
    assert all("parse_mode" not in c.params for c in bot_api.calls_to("sendMessage"))


def test_telegram_commands_and_media(server, bot_api):
    start = sample("start_command.json")
    assert post_telegram(server, start).status_code == 200
    chat = start["message"]["chat"]["id"]
    wait_for(lambda: help_text(load_company()) in sent_texts(bot_api, chat))
    photo = sample("photo_caption.json")
    photo["update_id"] += 1000
    photo["message"].pop("caption", None)
    assert post_telegram(server, photo).status_code == 200
    wait_for(lambda: any("text" in t for t in sent_texts(bot_api, photo["message"]["chat"]["id"])))


def test_forged_or_missing_telegram_secret_is_refused_and_never_processed(server, bot_api):
    update = sample("private_text.json")
    update["update_id"] += 5000
    assert post_telegram(server, update, secret="wrong").status_code == 403
    assert post_telegram(server, update, secret=None).status_code == 403
    time.sleep(0.3)
    assert bot_api.calls_to("sendMessage") == []


def test_every_sample_update_shape_gets_a_2xx(server, bot_api):
    paths = sorted(SAMPLES.glob("*.json"))
    assert len(paths) == 5, f"sample payloads missing from {SAMPLES}"
    for path in paths:
        update = json.loads(path.read_text())
        update["update_id"] += 7000
        assert post_telegram(server, update).status_code == 200, path.name
    assert httpx.post(server.url + "/webhooks/telegram", content=b"{not json",
                      headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}).status_code == 400


def signed(form: dict, path: str) -> dict:
    return {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + path, form)}


def test_a_whatsapp_message_gets_empty_twiml_then_one_rest_reply(server, twilio):
    form = load_form("whatsapp_text.txt")
    for _ in range(3):
        response = httpx.post(server.url + "/webhooks/whatsapp", data=form, headers=signed(form, "/webhooks/whatsapp"))
        assert response.status_code == 200
        assert response.text.endswith("<Response></Response>")
    wait_for(lambda: twilio.messages)
    time.sleep(0.5)
    assert len(twilio.messages) == 1
    message = twilio.messages[0]
    assert message["To"] == form["From"] and message["From"] == FROM
    assert message["StatusCallback"] == PUBLIC + "/webhooks/whatsapp/status"


def test_forged_whatsapp_signature_is_refused(server, twilio):
    form = load_form("whatsapp_text.txt")
    headers = signed(form, "/webhooks/whatsapp")
    form["Body"] = "tampered"
    assert httpx.post(server.url + "/webhooks/whatsapp", data=form, headers=headers).status_code == 403
    assert httpx.post(server.url + "/webhooks/whatsapp", data=form).status_code == 403
    time.sleep(0.3)
    assert twilio.messages == []


def test_whatsapp_status_callbacks_are_recorded_in_any_order(server):
    sid = "SM00000000000000000000000000000042"
    for status in ("delivered", "sent"):
        form = {"MessageSid": sid, "MessageStatus": status, "To": "whatsapp:+12015550123",
                "AccountSid": ACCOUNT_SID}
        path = "/webhooks/whatsapp/status"
        assert httpx.post(server.url + path, data=form, headers=signed(form, path)).status_code == 200
    delivery_log = server.app.state.channels.whatsapp.delivery_log
    assert delivery_log.get(sid).status == "delivered"


def test_grounded_replies_end_with_their_sources(server, bot_api, twilio):
    update = payloads.text("/hr How many casual leaves do I get?", update_id=880001)
    assert post_telegram(server, update).status_code == 200
    wait_for(lambda: sent_texts(bot_api, payloads.PRIVATE["id"]))
    # hr is not trained here, so it quotes its best entry.
    sent = sent_texts(bot_api, payloads.PRIVATE["id"])[-1]
    assert sent.startswith("From the handbook: Casual leave (CL) is 8 days")
    assert sent.endswith("\n\nSources: HR-03 (Leave)")

    form = {**load_form("whatsapp_text.txt"), "Body": "/finance When is Form 16 issued?",
            "MessageSid": "SM00000000000000000000000000000880"}
    assert httpx.post(server.url + "/webhooks/whatsapp", data=form,
                      headers=signed(form, "/webhooks/whatsapp")).status_code == 200
    wait_for(lambda: twilio.messages)
    assert twilio.messages[-1]["Body"].splitlines()[-1].startswith("Sources: FIN-")


def test_the_sources_line_can_be_turned_off(tiny_components):
    class Recorder:  # a channel that keeps what it would send
        name = "test"

        def __init__(self):
            self.sent = []

        async def send(self, to, text):
            self.sent.append(text)

        def working(self, to):
            return contextlib.nullcontext()

    event = Message(IncomingMessage("test", "sources-off", "/hr How many casual leaves do I get?"), "me", "test:1")
    for show, expected in ((True, True), (False, False)):
        channel = Recorder()
        run(Responder(tiny_components.pipeline, {"test": channel}, show_sources=show).answer("test", event))
        assert ("\n\nSources: HR-03" in channel.sent[-1]) is expected


def test_shutdown_answers_the_messages_already_accepted(fakes, tiny_model_dir, tmp_path):
    bot_api = fakes[0]
    bot_api.reset()
    settings = make_settings(
        tmp_path, tiny_model_dir, max_new_tokens=48, router="commands", telegram_bot_token=TOKEN,
        telegram_webhook_secret=SECRET, telegram_api_url=bot_api.base_url, shutdown_timeout_seconds=60,
    )
    components = build_components(settings)
    update = sample("private_text.json")
    chats = [900000001 + i for i in range(6)]
    with LiveServer(create_app(components=components)) as live:
        wait_for(lambda: httpx.get(live.url + "/readyz").status_code == 200)
        for i, chat in enumerate(chats):  # 200 to Telegram: each is now ours to answer
            message = {**update["message"], "chat": {**update["message"]["chat"], "id": chat}}
            assert post_telegram(live, {"update_id": update["update_id"] + 7000 + i, "message": message}).status_code == 200
        answered_before_shutdown = sum(bool(sent_texts(bot_api, chat)) for chat in chats)
    components.close()
    assert answered_before_shutdown < len(chats)  # some were still queued when the server was told to stop
    assert all(sent_texts(bot_api, chat) for chat in chats)


def test_a_bot_api_down_at_start_is_retried_and_readiness_shows_each_channel(fakes, tiny_model_dir, tmp_path):
    bot_api, twilio = fakes
    bot_api.reset()
    bot_api.fail_next(2, status=502, method="getMe")  # down for the first two tries
    settings = both_channels(tmp_path, tiny_model_dir, bot_api, twilio)
    components = build_components(settings)
    update = sample("private_text.json")
    update["update_id"] += 9000
    with LiveServer(create_app(components=components)) as live:
        channels = httpx.get(live.url + "/readyz").json()["channels"]
        assert channels["telegram"].startswith("connecting") and channels["whatsapp"] == "ready"
        assert post_telegram(live, update).status_code == 503  # Telegram redelivers later
        wait_for(lambda: httpx.get(live.url + "/readyz").json()["channels"]["telegram"] == "ready", seconds=20)
        assert post_telegram(live, update).status_code == 200
        wait_for(lambda: sent_texts(bot_api, update["message"]["chat"]["id"]))
    components.close()
    assert len(bot_api.calls_to("getMe")) == 3


@pytest.mark.parametrize(("case", "text"), list(enumerate([12345, {"a": 1}, ["x"]])))
def test_a_forged_update_with_a_non_text_text_is_ignored_and_the_next_one_answered(server, bot_api, caplog, case, text):
    forged = sample("private_text.json")
    forged["update_id"] += 11000 + case
    forged["message"] = {**forged["message"], "text": text}
    with caplog.at_level(logging.WARNING):
        assert post_telegram(server, forged).status_code == 200
        valid = sample("private_text.json")
        valid["update_id"] += 12000 + case
        valid["message"] = {**valid["message"], "chat": {**valid["message"]["chat"], "id": 555000100 + case}}
        assert post_telegram(server, valid).status_code == 200
        wait_for(lambda: sent_texts(bot_api, 555000100 + case))
    assert sent_texts(bot_api, forged["message"]["chat"]["id"]) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_lone_surrogate_in_an_update_is_answered_and_deep_json_is_a_400(server, bot_api):
    update = sample("private_text.json")
    update["update_id"] += 13000
    update["message"] = {**update["message"], "chat": {**update["message"]["chat"], "id": 555000222}}
    body = json.dumps(update).replace(json.dumps(update["message"]["text"]), '"hi \\ud800 there"')
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "content-type": "application/json"}
    assert httpx.post(server.url + "/webhooks/telegram", content=body, headers=headers).status_code == 200
    wait_for(lambda: sent_texts(bot_api, 555000222))
    deep = "[" * 5000 + "]" * 5000
    assert httpx.post(server.url + "/webhooks/telegram", content=deep, headers=headers).status_code == 400
