"""Secrets and people's ids never reach a log line or an error, third-party loggers included.

Known secret values and phone numbers go through bad-settings start-ups and a whole
Telegram + WhatsApp flow (with failed sends) at DEBUG; none may appear in what was logged or printed.
"""

import json
import logging

import httpx
import pytest
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from core.redaction import hide_password, scrub, tag
from gateway.app import create_app
from gateway.cli import app as cli
from gateway.components import build_components
from tests.bots.telegram.fake_bot_api import TOKEN, FakeBotApi
from tests.bots.whatsapp.conftest import ACCOUNT_SID, AUTH_TOKEN, load_form
from tests.bots.whatsapp.fake_twilio import FakeTwilio
from tests.conftest import FIXTURES, LiveServer
from tests.gateway.test_channels import PUBLIC, both_channels, wait_for

SECRET = "webhook-secret-that-must-not-leak"
REDIS_PASSWORD = "redis-password-that-must-not-leak"
CHAT_ID = "100000001"  # the sample update's chat and sender
PHONE = "2015550123"  # the sample WhatsApp sender, +1 201 555 0123
NEVER_SHOWN = [TOKEN, TOKEN.partition(":")[2], SECRET, AUTH_TOKEN, ACCOUNT_SID, REDIS_PASSWORD, CHAT_ID, PHONE]


def leaks(text: str) -> list[str]:
    return [value for value in NEVER_SHOWN if value in text]


def test_tags_and_masks():
    assert tag(100000001) == tag("100000001") == tag("telegram:100000001")
    assert tag("whatsapp:+12015550123") == tag("+12015550123") != tag("+12015550124")
    assert len(tag(CHAT_ID)) == 12 and CHAT_ID not in tag(CHAT_ID) and tag(None) == "-"
    assert hide_password(f"redis://:{REDIS_PASSWORD}@db:6379/0") == "redis://:***@db:6379/0"
    assert hide_password("redis://user:pw@db/0") == "redis://user:***@db/0"
    assert hide_password("redis://db:6379/0") == "redis://db:6379/0"


@pytest.mark.parametrize("env", [
    # Twilio half configured: the cross-field error once printed every value, tokens included.
    {"TELEGRAM_BOT_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN},
    {"REDIS_URL": f"http://:{REDIS_PASSWORD}@localhost:6379/0", "TELEGRAM_BOT_TOKEN": TOKEN},
    {"TELEGRAM_WEBHOOK_SECRET": SECRET, "MAX_NEW_TOKENS": "lots"},
    {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_ACCOUNT_SID": "AC" + "0" * 31},
])
def test_a_settings_error_names_the_problem_and_hides_the_values(env, tmp_path):
    env = {f"SWITCHBOARD_{key}": value for key, value in env.items()} | {"SWITCHBOARD_HOME": str(tmp_path)}
    result = CliRunner().invoke(cli, ["route", "hi"], env=env)
    assert result.exit_code == 2
    assert "invalid configuration" in result.output
    assert leaks(result.output) == []


def test_an_unreachable_redis_is_named_without_its_password(tmp_path):
    env = {"SWITCHBOARD_HOME": str(tmp_path), "SWITCHBOARD_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0"}
    result = CliRunner().invoke(cli, ["queue", "status"], env=env)
    assert result.exit_code == 1
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in result.output
    assert leaks(result.output) == []


def test_a_whole_telegram_and_whatsapp_flow_at_debug_logs_no_secret_and_no_id(tiny_model_dir, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    bot_api = FakeBotApi().start()
    try:
        with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio:
            settings = both_channels(tmp_path, tiny_model_dir, bot_api, twilio, secret=SECRET, log_level="debug")
            components = build_components(settings)
            with LiveServer(create_app(components=components)) as live:
                wait_for(lambda: httpx.get(live.url + "/readyz").status_code == 200)
                update = json.loads((FIXTURES / "telegram" / "private_text.json").read_text())
                bot_api.fail_next(1, status=502)  # a failed send is logged, and retried
                headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
                assert httpx.post(live.url + "/webhooks/telegram", json=update, headers=headers).status_code == 200
                form = load_form("whatsapp_text.txt")
                signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + "/webhooks/whatsapp", form)
                twilio.fail_next(1, status=500)
                response = httpx.post(live.url + "/webhooks/whatsapp", data=form, headers={"X-Twilio-Signature": signature})
                assert response.status_code == 200
                wait_for(lambda: bot_api.calls_to("sendMessage", ok_only=True) and twilio.messages)
                readiness = httpx.get(live.url + "/readyz").text
            components.close()
    finally:
        bot_api.stop()
    assert CHAT_ID in json.dumps(update) and PHONE in form["From"]  # the flow did carry them
    # The failed sends were logged, naming the recipient by its tag.
    assert "failed (NetworkError)" in caplog.text and f"whatsapp send to {tag('+1' + PHONE)} failed" in caplog.text
    assert leaks(caplog.text) == [] and leaks(readiness) == []


def test_scrub_masks_registered_secrets_in_any_text():
    from core.redaction import hide_secrets

    hide_secrets([SECRET, f"redis://:{REDIS_PASSWORD}@db/0", "short"])
    assert scrub(f"failed: {SECRET} at redis://:{REDIS_PASSWORD}@db/0") == "failed: *** at redis://:***@db/0"
    assert scrub("short stays: too short to mask safely") == "short stays: too short to mask safely"
