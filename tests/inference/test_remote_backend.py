"""The `openai` backend against real servers over real HTTP.

The remote server is Switchboard's own `/v1`, started as `switchboard serve` in
another process with the tiny model. A gateway built with `backend=openai`
then answers through it. Switchboard's API ignores client system messages and
extra sampling fields, so a small vLLM stand-in shows what goes on the wire
where that matters: our system prompt, `repetition_penalty`, fallback to the
base model for a department the server does not serve.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from core.company import load_company
from core.messages import IncomingMessage, Turn
from gateway.app import create_app
from gateway.components import build_components
from gateway.settings import SettingsError, load_settings
from inference.base import BackendError, BackendUnavailable, GenerationParams, InputTooLong
from inference.remote import OpenAIBackend
from tests.conftest import REPO, LiveServer, make_settings, run

TARGETS = load_company().targets  # the bundled example company

MAX_NEW_TOKENS = 8
# The tiny model's random weights repeat a newline (stripped to nothing) unless penalised.
REPETITION_PENALTY = 1.3
QUESTION = "When is Form 16 issued?"
PARAMS = GenerationParams(max_new_tokens=MAX_NEW_TOKENS, repetition_penalty=REPETITION_PENALTY)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SwitchboardProcess:
    """`switchboard serve` with the tiny model, in a process of its own."""

    def __init__(self, base_model, home) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env.update(
            SWITCHBOARD_HOME=str(home),
            SWITCHBOARD_BASE_MODEL=str(base_model),
            SWITCHBOARD_PORT=str(self.port),
            SWITCHBOARD_ROUTER="commands",
            SWITCHBOARD_MAX_NEW_TOKENS=str(MAX_NEW_TOKENS),
            SWITCHBOARD_REPETITION_PENALTY=str(REPETITION_PENALTY),
            SWITCHBOARD_RELOAD_INTERVAL_SECONDS="0",
            SWITCHBOARD_LOG_LEVEL="warning",
            # It stands in for vLLM, which generates from the prompt it is sent: the gateway grounds it.
            SWITCHBOARD_GROUNDING="false",
            HF_HUB_OFFLINE="1",
            OMP_NUM_THREADS="1",
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve"], cwd=REPO, env=env, stdout=log, stderr=log
            )

    def wait_ready(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"switchboard serve did not become ready on {self.url}:\n{tail}")

    def served(self, department: str) -> float:
        """Requests the server answered for `department`, from its /metrics."""
        pattern = rf'^switchboard_requests_total{{department="{department}",outcome="ok"}} (\S+)$'
        found = re.search(pattern, httpx.get(self.url + "/metrics").text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def remote(tiny_model_dir, tmp_path_factory):
    server = SwitchboardProcess(tiny_model_dir, tmp_path_factory.mktemp("remote-home"))
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def direct(remote):
    """The official client, straight to the remote server: its own answers."""
    return openai.OpenAI(base_url=remote.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def gateway(remote, tiny_model_dir, tmp_path_factory):
    """A second pipeline in this process, generating through the remote server."""
    settings = make_settings(
        tmp_path_factory.mktemp("gateway-home"),
        tiny_model_dir,
        backend="openai",
        openai_base_url=remote.url + "/v1",
        openai_base_model_name="base",
        router="commands",
        max_new_tokens=MAX_NEW_TOKENS,
        repetition_penalty=REPETITION_PENALTY,
        reload_interval_seconds=0,
        grounding=False,  # these tests compare with the server's answer to the plain question
    )
    components = build_components(settings)
    components.start()
    yield components
    components.close()


def remote_answer(direct, department, content=QUESTION):
    return direct.chat.completions.create(
        model=department, messages=[{"role": "user", "content": content}], max_tokens=MAX_NEW_TOKENS
    )


async def deltas(stream) -> list[str]:
    return [delta async for delta in stream]


async def collect(stream) -> str:
    return "".join(await deltas(stream))


@pytest.mark.slow
@pytest.mark.parametrize("department", ["finance", "base"])
def test_generate_and_stream_give_the_remote_servers_own_answer(gateway, direct, department):
    expected = remote_answer(direct, department)
    reply = run(gateway.pipeline.complete(department, [Turn("user", QUESTION)]))
    assert reply.text == expected.choices[0].message.content
    assert reply.text
    assert reply.route.department == department
    assert (reply.prompt_tokens, reply.completion_tokens) == (
        expected.usage.prompt_tokens, expected.usage.completion_tokens
    )
    assert 0 < reply.completion_tokens <= MAX_NEW_TOKENS
    assert reply.finish_reason == expected.choices[0].finish_reason

    stream = run(gateway.pipeline.stream(department, [Turn("user", QUESTION)]))
    assert run(collect(stream)) == reply.text
    assert stream.reply is not None
    assert (stream.reply.text, stream.reply.finish_reason) == (reply.text, reply.finish_reason)
    assert (stream.reply.prompt_tokens, stream.reply.completion_tokens) == (
        reply.prompt_tokens, reply.completion_tokens
    )


@pytest.mark.slow
def test_each_department_reaches_the_server_under_its_own_name(gateway, remote):
    before = {target: remote.served(target) for target in TARGETS}
    for target in TARGETS:
        run(gateway.backend.generate(target, [Turn("user", QUESTION)], PARAMS))
    assert {target: remote.served(target) - before[target] for target in TARGETS} == dict.fromkeys(TARGETS, 1)


@pytest.mark.slow
def test_models_name_the_remote_model_and_url_per_department(gateway, remote):
    rows = {row.department: row for row in gateway.backend.models()}
    assert list(rows) == list(TARGETS)
    for target, row in rows.items():
        assert row.serving == "remote"
        assert row.source == f"{target} at {remote.url}/v1"
        assert row.note == ""  # Switchboard lists every department


@pytest.mark.slow
def test_a_department_can_have_a_server_of_its_own(remote, tiny_model_dir):
    # The same server under another name stands in for hr's full-model server.
    own = f"http://localhost:{remote.port}/v1"
    backend = OpenAIBackend(remote.url + "/v1", load_company().system_prompts(), department_urls={"hr": own})
    backend.load(str(tiny_model_dir))
    rows = {row.department: row.source for row in backend.models()}
    assert rows["hr"] == f"hr at {own}" and rows["finance"] == f"finance at {remote.url}/v1"
    before = remote.served("hr")
    assert run(backend.generate("hr", [Turn("user", QUESTION)], PARAMS)).text
    assert remote.served("hr") == before + 1
    backend.close()


@pytest.mark.slow
def test_a_remembered_conversation_is_sent_whole(gateway):
    handle = gateway.pipeline.handle
    first = run(handle(IncomingMessage("test", "remote-chat", "/sales What is the dealer margin?")))
    second = run(handle(IncomingMessage("test", "remote-chat", "And for EMI schemes?")))
    assert first.route.department == second.route.department == "sales"
    assert first.text and second.text
    count = gateway.backend.count_tokens
    assert second.prompt_tokens - first.prompt_tokens >= count(first.text) + count("And for EMI schemes?")


@pytest.mark.slow
def test_a_message_too_long_for_the_context_is_input_too_long(gateway):
    long_message = "leave " * 600  # over 512 tokens: the tiny model's whole context
    with pytest.raises(InputTooLong, match="hr at"):
        run(gateway.pipeline.complete("hr", [Turn("user", long_message)]))
    # With an old turn too long, the answer still comes (Switchboard drops the turn itself;
    # for vLLM the gateway does, see test_old_turns_go_while_the_server_says_the_context_is_too_long).
    history = [Turn("user", long_message), Turn("assistant", "Noted."), Turn("user", QUESTION)]
    assert run(gateway.pipeline.complete("hr", history)).text


def test_settings_choose_the_backend_and_name_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("SWITCHBOARD_HOME", str(tmp_path))
    monkeypatch.setenv("SWITCHBOARD_ROUTER", "commands")
    monkeypatch.setenv("SWITCHBOARD_BACKEND", "openai")
    with pytest.raises(SettingsError, match=r"backend 'openai' needs openai_base_url \(SWITCHBOARD_OPENAI_BASE_URL\)"):
        load_settings()
    monkeypatch.setenv("SWITCHBOARD_OPENAI_BASE_URL", "vllm:8000")
    with pytest.raises(SettingsError, match="SWITCHBOARD_OPENAI_BASE_URL: .*not an http:// or https:// URL"):
        load_settings()
    monkeypatch.setenv("SWITCHBOARD_OPENAI_BASE_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("SWITCHBOARD_OPENAI_DEPARTMENT_URLS", '{"legal": "http://vllm-legal:8000/v1"}')
    with pytest.raises(SettingsError, match=r"SWITCHBOARD_OPENAI_DEPARTMENT_URLS: .*unknown department\(s\) \['legal'\]"):
        load_settings()
    monkeypatch.setenv("SWITCHBOARD_OPENAI_DEPARTMENT_URLS", '{"hr": "http://vllm-hr:8000/v1"}')
    settings = load_settings()
    components = build_components(settings)
    assert isinstance(components.backend, OpenAIBackend) and not components.backend.ready
    components.close()
    assert settings.openai_department_urls == {"hr": "http://vllm-hr:8000/v1"}
    monkeypatch.delenv("SWITCHBOARD_BACKEND")
    assert load_settings().backend == "auto"


@pytest.mark.slow
def test_an_unreachable_server_is_a_clear_error(tiny_model_dir, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    backend = OpenAIBackend(url, load_company().system_prompts(), max_retries=0)
    backend.load(str(tiny_model_dir))
    assert backend.ready  # the server may start after the gateway
    assert all(row.note.startswith(f"could not list the models at {url}") for row in backend.models())
    with pytest.raises(BackendUnavailable, match=f"cannot reach the inference server at {re.escape(url)}"):
        run(backend.generate("hr", [Turn("user", QUESTION)], PARAMS))
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        run(collect(backend.stream("hr", [Turn("user", QUESTION)], PARAMS)))
    backend.close()

    # Through the API: 503, with the reason, in OpenAI's error shape.
    settings = make_settings(tmp_path, tiny_model_dir, backend="openai", openai_base_url=url,
                             router="commands", reload_interval_seconds=0)
    with LiveServer(create_app(settings)) as live:
        for _ in range(600):
            if httpx.get(live.url + "/readyz").status_code == 200:
                break
            time.sleep(0.05)
        response = httpx.post(live.url + "/v1/chat/completions", timeout=30,
                              json={"model": "hr", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "backend_unavailable" and url in error["message"]


# --- what reaches a vLLM-style server ------------------------------------------------------------


def vllm_stand_in(served: list[str], *, gone: tuple[str, ...] = (), status: int = 200, context_chars: int = 10_000):
    """Lists `served`; answers like vLLM, echoing the request's model; 404s a model it does not serve."""
    app = FastAPI()
    app.state.requests = []

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "vllm"} for name in served]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        app.state.requests.append(body)
        if status != 200:
            return JSONResponse({"error": {"message": "engine dead", "type": "InternalServerError",
                                           "code": status}}, status_code=status)
        if body["model"] not in served or body["model"] in gone:
            return JSONResponse({"error": {"message": f"The model `{body['model']}` does not exist.",
                                           "type": "NotFoundError", "param": None, "code": 404}}, status_code=404)
        if sum(len(m["content"]) for m in body["messages"]) > context_chars:
            message = "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens."
            return JSONResponse({"error": {"message": message, "type": "BadRequestError", "param": None,
                                           "code": 400}}, status_code=400)
        if body.get("stream"):
            return StreamingResponse(sse(body["model"]), media_type="text/event-stream")
        return JSONResponse({
            "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": f"  {body['model']} here \n"}}],
            "usage": {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24},
        })

    return app


def sse(model: str):
    """vLLM's stream: a role chunk, content in pieces (whitespace too), finish, usage, [DONE]."""
    def event(choices: list, **extra: object) -> str:
        chunk = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model,
                 "choices": choices, **extra}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for piece in ["  ", "\n", model, " ", " ", "here", " \n"]:
        yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    yield event([], usage={"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28})
    yield "data: [DONE]\n\n"


def test_the_request_carries_our_system_prompt_and_vllm_sampling_fields(tiny_model_dir):
    app = vllm_stand_in(["base", "hr"])
    with LiveServer(app) as live:
        backend = OpenAIBackend(live.url + "/v1", load_company().system_prompts())
        backend.load(str(tiny_model_dir))
        history = [Turn("user", "hi"), Turn("assistant", "Hello!"), Turn("user", QUESTION)]
        generation = run(backend.generate("hr", history, GenerationParams(64, 0.7, 0.9, 1.2)))
        backend.close()
    sent = app.state.requests[-1]
    assert sent["model"] == "hr"
    assert sent["messages"] == [
        {"role": "system", "content": load_company().system_prompts()["hr"]},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": QUESTION},
    ]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["repetition_penalty"]) == (64, 0.7, 0.9, 1.2)
    assert generation.text == "hr here"
    assert (generation.prompt_tokens, generation.completion_tokens, generation.finish_reason) == (21, 3, "length")


def test_stream_deltas_join_to_the_stripped_text_with_usage_from_the_last_chunk(tiny_model_dir):
    app = vllm_stand_in(["base"])
    with LiveServer(app) as live:
        backend = OpenAIBackend(live.url + "/v1", load_company().system_prompts())
        backend.load(str(tiny_model_dir))
        stream = backend.stream("base", [Turn("user", QUESTION)], PARAMS)
        pieces = run(deltas(stream))
        backend.close()
    assert "".join(pieces) == "base  here" and all(pieces)
    assert app.state.requests[-1]["stream_options"] == {"include_usage": True}
    result = stream.result
    assert (result.text, result.prompt_tokens, result.completion_tokens, result.finish_reason) == (
        "base  here", 21, 7, "stop"
    )


def test_a_department_the_server_does_not_serve_gets_the_base_model_with_its_prompt(tiny_model_dir):
    # finance is listed but its adapter has gone by the time it is asked for.
    app = vllm_stand_in(["base", "hr", "finance"], gone=("finance",))
    with LiveServer(app) as live:
        backend = OpenAIBackend(live.url + "/v1", load_company().system_prompts())
        backend.load(str(tiny_model_dir))
        rows = {row.department: row for row in backend.models()}
        assert rows["sales"].source == f"base at {live.url}/v1" and "serves no 'sales' model" in rows["sales"].note
        assert rows["hr"].source == f"hr at {live.url}/v1" and not rows["hr"].note

        assert run(backend.generate("sales", [Turn("user", QUESTION)], PARAMS)).text == "base here"
        assert app.state.requests[-1]["messages"][0]["content"] == load_company().system_prompts()["sales"]

        assert run(backend.generate("finance", [Turn("user", QUESTION)], PARAMS)).text == "base here"
        assert [r["model"] for r in app.state.requests[-2:]] == ["finance", "base"]
        assert app.state.requests[-1]["messages"][0]["content"] == load_company().system_prompts()["finance"]
        assert {row.department: row.source for row in backend.models()}["finance"] == f"base at {live.url}/v1"
        backend.close()


def test_old_turns_go_while_the_server_says_the_context_is_too_long(tiny_model_dir):
    app = vllm_stand_in(["base"], context_chars=1000)
    with LiveServer(app) as live:
        backend = OpenAIBackend(live.url + "/v1", load_company().system_prompts())
        backend.load(str(tiny_model_dir))
        old = [Turn("user", "x" * 600), Turn("assistant", "y" * 300)]
        assert run(backend.generate("base", [*old, Turn("user", QUESTION)], PARAMS)).text == "base here"
        # system prompt, two old turns and the question; then without the oldest turn
        assert [len(r["messages"]) for r in app.state.requests] == [4, 3]
        with pytest.raises(InputTooLong, match="maximum context length is 2048"):
            run(backend.generate("base", [Turn("user", "z" * 1200)], PARAMS))
        backend.close()


@pytest.mark.parametrize(("status", "error_type", "fragment"), [
    (500, BackendError, "failed (500): engine dead"),
    (503, BackendUnavailable, "is busy (503): engine dead"),
])
def test_server_errors_name_the_server_and_what_it_said(tiny_model_dir, status, error_type, fragment):
    with LiveServer(vllm_stand_in(["base"], status=status)) as live:
        backend = OpenAIBackend(live.url + "/v1", load_company().system_prompts(), max_retries=0)
        backend.load(str(tiny_model_dir))
        with pytest.raises(error_type, match=re.escape(f"{live.url}/v1 {fragment}")) as raised:
            run(backend.generate("base", [Turn("user", QUESTION)], PARAMS))
        backend.close()
    assert type(raised.value) is error_type


@pytest.mark.slow
def test_a_grounded_question_reaches_the_server_with_its_entries(remote, tiny_model_dir, tmp_path):
    settings = make_settings(tmp_path, tiny_model_dir, backend="openai", openai_base_url=remote.url + "/v1",
                             router="commands", max_new_tokens=MAX_NEW_TOKENS, reload_interval_seconds=0)
    components = build_components(settings)
    components.start()
    question = [Turn("user", "How many casual leaves do I get?")]
    grounded = run(components.pipeline.complete("hr", question))
    components.close()
    plain = remote_answer(openai.OpenAI(base_url=remote.url + "/v1", api_key="unused", max_retries=0), "hr",
                          "How many casual leaves do I get?")
    # The server is not trained to cite, so the sources are the entries the prompt carried.
    assert grounded.sources[0].id == "HR-03"
    assert grounded.prompt_tokens > plain.usage.prompt_tokens + 50  # the entries and the rules went along
