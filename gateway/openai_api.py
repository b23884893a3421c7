"""OpenAI-compatible endpoints, shaped as vLLM serves them.

`model` is a department, `base`, or `auto` (the router decides); the response's
`model` field names the department that answered.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel, ConfigDict, Field

from core.messages import IncomingMessage, Reply, Route, Turn
from core.text import well_formed
from gateway.api_key import authorized
from gateway.errors import ApiError
from inference.base import InputTooLong
from pipeline.service import Pipeline
from pipeline.stream import FixedReply, ReplyStream
from router.commands import AUTO

# More turns than any client keeps; the model sees only what fits its context anyway.
MAX_MESSAGES = 256
# How often a non-streaming request checks that its client is still there.
_DISCONNECT_POLL_S = 0.25
_CREATED = int(time.time())



api = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return well_formed("".join(part.text for part in self.content if part.type == "text"))
        return well_formed(self.content or "")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Clients send many optional OpenAI fields; unsupported ones are ignored.
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=1)
    # Switchboard's own: a conversation the server remembers (the web console's). The history then
    # comes from memory, as on every channel, and only the last user message is read.
    conversation_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[\w.:-]+$")


def _models(pipeline: Pipeline) -> tuple[str, ...]:
    """What `model` may name: each department of the company, base, and auto (let the router pick)."""
    return (*pipeline.company.targets, AUTO)


@api.get("/models")
async def list_models(request: Request) -> dict:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": _CREATED, "owned_by": "switchboard"}
            for name in _models(request.app.state.pipeline)
        ],
    }


@api.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | EventSourceResponse:
    pipeline: Pipeline = request.app.state.pipeline
    if body.model not in (models := _models(pipeline)):
        raise ApiError(404, f"The model '{body.model}' does not exist; use one of {', '.join(models)}.",
                       code="model_not_found", param="model")
    turns = _conversation(body, pipeline.limits.max_input_chars)
    if not pipeline.backend.ready:
        raise ApiError(503, "Models are still loading; retry shortly.", type_="server_error", code="not_ready")
    params = pipeline.defaults.override(
        max_new_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    # Web conversations get their own key space: a caller cannot name a Telegram or WhatsApp chat.
    remembered = (IncomingMessage("web", f"web:{body.conversation_id}", turns[-1].content)
                  if body.conversation_id else None)
    try:
        if body.stream:
            if remembered:
                stream = await pipeline.handle_stream(remembered, body.model, params)
            else:
                stream = await pipeline.stream(body.model, turns, params)
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventSourceResponse(_sse(completion_id, stream, include_usage))
        work = pipeline.handle(remembered, body.model, params) if remembered else pipeline.complete(body.model, turns, params)
        reply = await _unless_disconnected(request, work)
    except InputTooLong as error:
        raise ApiError(400, str(error), code="context_length_exceeded", param="messages") from None
    except ValueError as error:
        raise ApiError(400, str(error), param="messages") from None
    return JSONResponse(_completion(completion_id, reply))


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, Reply]) -> Reply:
    """`work`'s result; cancelled (its batch row freed) if the client goes away first."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ApiError(499, "The client closed the request.", code="client_closed_request")
    finally:
        task.cancel()  # also when this handler itself is cancelled


def _conversation(body: ChatCompletionRequest, max_chars: int) -> list[Turn]:
    if not body.messages:
        raise ApiError(400, "'messages' is empty; send at least one user message.", param="messages")
    turns = []
    for index, message in enumerate(body.messages):
        text = message.text()
        if len(text) > max_chars:
            raise ApiError(400, f"messages[{index}] is {len(text)} characters; the limit is {max_chars}.",
                           code="input_too_long", param=f"messages[{index}].content")
        # Each department brings its own system prompt; tool turns have no place here.
        if message.role in ("user", "assistant"):
            turns.append(Turn(message.role, text))
    if not turns or turns[-1].role != "user" or not turns[-1].content.strip():
        raise ApiError(400, "The last message must be a non-empty user message.", param="messages")
    return turns


def _completion(completion_id: str, reply: Reply) -> dict:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.route.department,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": _usage(reply),
        "switchboard": _switchboard_info(reply.route, reply),
    }


async def _sse(completion_id: str, stream: ReplyStream | FixedReply, include_usage: bool) -> AsyncIterator[str]:
    department = stream.route.department

    def chunk(delta: dict, finish_reason: str | None = None, **extra: object) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": department,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            **extra,
        }
        return format_sse_event(data_str=json.dumps(payload, ensure_ascii=False)).decode()

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for delta in stream:
            yield chunk({"content": delta})
    except Exception as error:  # headers are gone: report in-band, as OpenAI does
        body = {"error": {"message": f"generation failed: {error}", "type": "server_error"}}
        yield format_sse_event(data_str=json.dumps(body)).decode()
        return
    reply = stream.reply
    yield chunk({}, reply.finish_reason if reply else "stop", switchboard=_switchboard_info(stream.route, reply))
    if include_usage and reply:
        usage = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": department, "choices": [], "usage": _usage(reply)}
        yield format_sse_event(data_str=json.dumps(usage)).decode()
    yield format_sse_event(data_str="[DONE]").decode()


def _usage(reply: Reply) -> dict:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _switchboard_info(route: Route, reply: Reply | None) -> dict:
    """Where the message went and why, and the handbook entries the answer used."""
    sources = reply.sources if reply else ()
    return {"department": route.department, "confidence": route.confidence, "reason": route.reason,
            "latency_ms": reply.latency_ms if reply else 0.0,
            "sources": [{"id": e.id, "text": e.text, "score": e.score} for e in sources]}
