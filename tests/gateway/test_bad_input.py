"""Hostile and broken requests (from an outside adversarial run): each gets a clear 4xx, never a 5xx,
and never costs the server more than the request is worth."""

import json
import logging
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from core.messages import Turn
from gateway.app import MAX_BODY_BYTES, create_app
from gateway.openai_api import MAX_MESSAGES
from inference import local
from tests.bots.telegram.fake_bot_api import TOKEN, FakeBotApi
from tests.conftest import LiveServer, make_settings, started

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def client(tiny_components):
    with TestClient(create_app(components=tiny_components)) as test_client:
        yield test_client


def hi(count: int) -> dict:
    return {"model": "base", "messages": [{"role": "user", "content": "hi"}] * count}


def test_too_many_messages_is_a_400_before_any_work(client):
    for count in (MAX_MESSAGES + 1, 1_000, 20_000):  # 20,000 once kept a core busy for minutes
        response = client.post(CHAT, json=hi(count))
        assert response.status_code == 400
        assert f"at most {MAX_MESSAGES} items" in response.json()["error"]["message"]
    assert client.post(CHAT, json=hi(MAX_MESSAGES)).status_code == 200


def test_a_body_over_the_limit_is_413_declared_or_streamed(client):
    big = json.dumps({"model": "base", "messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]})
    response = client.post(CHAT, content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than" in response.json()["error"]["message"]
    chunks = (big[i:i + 65536].encode() for i in range(0, len(big), 65536))  # no Content-Length
    response = client.post(CHAT, content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_trimming_a_long_history_encodes_it_a_logarithmic_number_of_times(tiny_components, monkeypatch):
    backend = tiny_components.backend
    entry = backend._entry("base")
    turns = [Turn("user" if i % 2 == 0 else "assistant", f"message number {i} " * 6) for i in range(MAX_MESSAGES - 1)]
    calls = []
    real = local.encode_chat
    monkeypatch.setattr(local, "encode_chat", lambda *a, **k: calls.append(1) or real(*a, **k))
    ids = backend._fit_prompt(entry, "base", turns, 8)
    limit = entry.context_length - 8
    # The fewest oldest turns are dropped: one more turn would not fit.
    kept = next(n for n in range(len(turns), 0, -1) if len(ids) == len(real(
        entry.tokenizer, backend._prompts["base"], turns[-n:], add_generation_prompt=True)))
    longer = real(entry.tokenizer, backend._prompts["base"], turns[-kept - 1:], add_generation_prompt=True)
    assert len(ids) <= limit < len(longer)
    assert len(calls) <= 2 + (len(turns) - 1).bit_length()  # was one per dropped turn


def test_a_lone_surrogate_is_replaced_not_a_500(client):
    body = '{"model": "base", "messages": [{"role": "user", "content": "hi \\ud800 there"}]}'
    response = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


def test_json_nested_too_deep_is_a_400(client):
    deep = "[" * 5000 + "]" * 5000
    response = client.post(CHAT, content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 400


@pytest.fixture(scope="module")
def keyed(tiny_model_dir, tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("keyed"), tiny_model_dir, max_new_tokens=4, router="commands",
                             api_key="the-right-key-0123")
    components = started(settings)
    with TestClient(create_app(components=components)) as test_client:
        yield test_client
    components.close()


def test_with_an_api_key_v1_needs_it_and_health_does_not(keyed):
    assert keyed.post(CHAT, json=hi(1)).status_code == 401
    wrong = keyed.post(CHAT, json=hi(1), headers={"Authorization": "Bearer the-wrong-key"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert keyed.get("/v1/models", headers={"Authorization": "Bearer the-right-key-0123"}).status_code == 200
    assert keyed.post(CHAT, json=hi(1), headers={"Authorization": "Bearer the-right-key-0123"}).status_code == 200
    assert keyed.get("/healthz").status_code == 200 and keyed.get("/readyz").status_code == 200


@pytest.mark.slow
def test_a_non_streaming_request_stops_generating_when_its_client_leaves(smollm2_components):
    backend = smollm2_components.backend
    before = backend.batch_stats("base").cancelled
    with LiveServer(create_app(components=smollm2_components)) as live:
        request = {"model": "base", "max_tokens": 400, "temperature": 0,
                   "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(live.url + CHAT, json=request, timeout=1.5)
        deadline = time.monotonic() + 10
        while backend.batch_stats("base").cancelled == before:
            assert time.monotonic() < deadline, "the request kept generating after its client left"
            time.sleep(0.05)


# --- fuzzing: anything at all, and nothing answers 5xx or logs an unhandled error ----------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
contents = st.one_of(st.text(max_size=40), st.integers(), st.none(), st.lists(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", 3]), "text": st.text(max_size=20) | st.integers()})
))
messages = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "wizard", 7]), "content": contents}
), max_size=5)
chat_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["base", "hr", "auto", "nope", 5]), "messages": messages},
    optional={"stream": st.booleans(), "max_tokens": st.integers(-5, 6) | st.text(max_size=3),
              "temperature": st.floats(-1, 3) | st.none(), "top_p": st.floats(-1, 2), "n": st.integers(0, 2)},
)


@pytest.fixture(scope="module")
def webhook_client(tiny_model_dir, tmp_path_factory):
    bot_api = FakeBotApi().start()
    settings = make_settings(tmp_path_factory.mktemp("fuzz"), tiny_model_dir, max_new_tokens=3, router="commands",
                             telegram_bot_token=TOKEN, telegram_webhook_secret="fuzz-secret",
                             telegram_api_url=bot_api.base_url)
    components = started(settings)
    with TestClient(create_app(components=components)) as test_client:
        yield test_client
    components.close()
    bot_api.stop()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=chat_bodies | json_values)
def test_fuzzed_chat_requests_never_get_a_5xx(client, caplog, body):
    with caplog.at_level(logging.ERROR):
        response = client.post(CHAT, json=body)
    assert response.status_code < 500, response.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values | st.fixed_dictionaries({"update_id": st.integers(), "message": json_values}),
       raw=st.binary(max_size=30))
def test_fuzzed_webhooks_never_get_a_5xx(webhook_client, caplog, body, raw):
    with caplog.at_level(logging.ERROR):
        telegram = webhook_client.post("/webhooks/telegram", json=body,
                                       headers={"X-Telegram-Bot-Api-Secret-Token": "fuzz-secret"})
        garbage = webhook_client.post("/webhooks/telegram", content=raw,
                                      headers={"X-Telegram-Bot-Api-Secret-Token": "fuzz-secret"})
        whatsapp = webhook_client.post("/webhooks/whatsapp", content=raw,
                                       headers={"content-type": "application/x-www-form-urlencoded"})
    # Accepted (answered later, or ignored when it is no update we know), or refused; WhatsApp is off here.
    assert {telegram.status_code, garbage.status_code} <= {200, 400}
    assert whatsapp.status_code == 404
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
