"""The OpenAI-compatible API, driven by the official `openai` client over real HTTP."""

import json
from types import SimpleNamespace

import httpx
import openai
import pytest

from gateway.app import create_app
from tests.conftest import LiveServer, make_settings


@pytest.fixture(scope="module")
def server(tiny_components):
    with LiveServer(create_app(components=tiny_components)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def ask(client, model="hr", content="How many casual leaves do I get?", **extra):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **extra
    )


def test_models_lists_departments_base_and_auto(client):
    assert [m.id for m in client.models.list()] == [
        "hr", "finance", "healthcare", "marketing", "sales", "base", "auto"
    ]


def test_non_streaming_completion_names_the_department_and_fills_usage(client):
    completion = ask(client, model="base", max_tokens=5)
    assert completion.model == "base"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason in ("stop", "length")
    usage = completion.usage
    assert 0 < usage.completion_tokens <= 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert completion.model_extra["switchboard"]["reason"] == "requested"


def test_auto_routes_commands_and_falls_back_to_base(client):
    assert ask(client, model="auto", content="What is 2 + 2?").model == "base"
    assert ask(client, model="auto", content="/sales what is the dealer margin?").model == "sales"


def test_streaming_equals_non_streaming(client):
    expected = ask(client, model="base", content="When is Form 16 issued?").choices[0].message.content
    stream = client.chat.completions.create(
        model="base",
        messages=[{"role": "user", "content": "When is Form 16 issued?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert expected.strip() and text == expected
    assert {c.model for c in chunks} == {"base"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens > 0


def test_conversation_history_and_content_parts_are_accepted(client):
    completion = client.chat.completions.create(
        model="base",
        messages=[
            {"role": "system", "content": "ignored: departments bring their own"},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi!"},
            {"role": "user", "content": [{"type": "text", "text": "what next?"}]},
        ],
    )
    assert completion.usage.prompt_tokens > 20


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as error:
        ask(client, model="legal")
    assert "legal" in error.value.message


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([], "'messages' is empty"),
        ([{"role": "assistant", "content": "hi"}], "last message must be a non-empty user message"),
        ([{"role": "user", "content": "   "}], "last message must be a non-empty user message"),
        ([{"role": "user", "content": "x" * 2001}], "the limit is 2000"),
        ([{"role": "wizard", "content": "hi"}], "messages.0.role"),
    ],
)
def test_bad_requests_are_400_with_a_reason(client, messages, fragment):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="hr", messages=messages)
    assert fragment in error.value.message


def test_malformed_json_and_missing_fields_are_400(server):
    response = httpx.post(server.url + "/v1/chat/completions", content=b'{"model": "hr",',
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    response = httpx.post(server.url + "/v1/chat/completions", json={"messages": []})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "'model' is required"
    response = httpx.post(server.url + "/v1/chat/completions",
                          json={"model": "hr", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0})
    assert response.status_code == 400 and "max_tokens" in response.json()["error"]["message"]


def test_health_readiness_and_metrics(server, client):
    ask(client, model="sales", max_tokens=3)
    ask(client, model="base", max_tokens=3)
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").status_code == 200
    metrics = httpx.get(server.url + "/metrics").text
    assert 'switchboard_requests_total{department="sales",outcome="ok"}' in metrics
    assert 'switchboard_reply_seconds_bucket{department="sales"' in metrics
    assert 'switchboard_generated_tokens_total{department="base"}' in metrics
    # Time to first token, from the engine's prefill; sales quotes its handbook (no model), so has none.
    assert 'switchboard_first_token_seconds_bucket{department="base"' in metrics
    assert 'switchboard_first_token_seconds_bucket{department="sales"' not in metrics


def test_readyz_is_503_with_the_reason_when_models_cannot_load(tmp_path):
    settings = make_settings(tmp_path, tmp_path / "no-such-model")
    with LiveServer(create_app(settings)) as live:
        assert httpx.get(live.url + "/healthz").status_code == 200
        for _ in range(100):
            body = httpx.get(live.url + "/readyz").json()
            if body["status"] == "failed":
                break
        assert body["status"] == "failed" and "does not exist" in body["error"]
        response = httpx.post(live.url + "/v1/chat/completions",
                              json={"model": "hr", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 503


def test_an_untrained_department_quotes_its_handbook_with_the_source(client):
    completion = ask(client, model="hr", content="How many casual leaves do I get?")
    assert completion.choices[0].message.content.startswith("From the handbook: Casual leave (CL) is 8 days")
    sources = completion.model_extra["switchboard"]["sources"]
    assert [s["id"] for s in sources] == ["HR-03"] and "8 days" in sources[0]["text"]
    assert 0 < sources[0]["score"] <= 1
    assert ask(client, model="base", content="hi").model_extra["switchboard"]["sources"] == []
    stream = client.chat.completions.create(
        model="hr", messages=[{"role": "user", "content": "How many casual leaves do I get?"}], stream=True)
    final = [c for c in stream if c.choices and c.choices[0].finish_reason][-1]
    assert final.model_extra["switchboard"]["sources"] == sources


def test_a_stream_that_fails_after_its_headers_reports_the_error_in_band():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from gateway.errors import install_error_handlers
    from gateway.openai_api import api
    from gateway.settings import Settings
    from tests.fakes import ScriptedBackend, fake_pipeline

    app = FastAPI()
    app.state.pipeline = fake_pipeline(ScriptedBackend("one two three", stream_fails_after=2))
    app.state.components = SimpleNamespace(settings=Settings())  # what the API-key check reads
    install_error_handlers(app)
    app.include_router(api)
    body = {"model": "hr", "stream": True, "messages": [{"role": "user", "content": "leave?"}]}
    with TestClient(app) as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200  # sent before the failure
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    deltas = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert deltas == ["", "one", " two"]
    assert json.loads(events[-1]) == {"error": {"message": "generation failed: the model stopped mid-answer",
                                                "type": "server_error"}}
    assert "[DONE]" not in events  # a client must not take the cut answer for a whole one
