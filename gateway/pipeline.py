"""One path from message to reply, shared by every channel and the HTTP API.

Channels call `handle` (memory-backed conversations); the OpenAI-compatible API
calls `complete` / `stream` with the history in the request. Both route,
generate and count the same way.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from core.departments import BASE, DEPARTMENTS, TARGETS
from core.messages import IncomingMessage, Reply, Route, Turn
from gateway.metrics import Metrics
from inference.base import Generation, GenerationParams, GenerationStream, InferenceBackend
from memory.base import ConversationMemory
from router.base import Router
from router.commands import AUTO, parse_command

HELP_TEXT = (
    "Ask me anything and I will pick the right department: "
    + ", ".join(DEPARTMENTS)
    + ".\nCommands: "
    + " ".join(f"/{d}" for d in DEPARTMENTS)
    + " talk to one department until /auto; /base the general assistant; "
    "/auto automatic routing; /reset forget this conversation; /help this text."
)
RESET_TEXT = "Done: I have forgotten this conversation."
# Channels cannot send an empty message; say so instead.
EMPTY_REPLY = "Sorry, I could not come up with an answer. Could you rephrase the question?"
_CONTROL = {"help", "start", "reset"}


class UnknownModel(ValueError):
    """An API request named a model that is not a department, `base` or `auto`."""


@dataclass(frozen=True)
class PipelineLimits:
    max_input_chars: int = 4000


class Pipeline:
    def __init__(
        self,
        router: Router,
        memory: ConversationMemory,
        backend: InferenceBackend,
        defaults: GenerationParams,
        metrics: Metrics,
        limits: PipelineLimits = PipelineLimits(),
    ) -> None:
        self.router = router
        self.memory = memory
        self.backend = backend
        self.defaults = defaults
        self.metrics = metrics
        self.limits = limits

    async def handle(self, message: IncomingMessage) -> Reply:
        """Answer one message of a remembered conversation."""
        started = time.perf_counter()
        cid = message.conversation_id
        text, note = self._within_limit(message.text)
        command, _ = parse_command(text)
        if command in _CONTROL:
            if command == "reset":
                await self.memory.clear(cid)
            route = Route(BASE, 1.0, "command")
            reply_text = RESET_TEXT if command == "reset" else HELP_TEXT
            self.metrics.observe(route.department, "command", time.perf_counter() - started)
            return Reply(reply_text, route, latency_ms=_ms(started))

        history = await self.memory.window(cid)
        route = self.router.route(text, history)
        if not route.text:  # a routing command on its own: confirm, remember the pin
            reply_text = _switched(route)
            await self.memory.append(
                cid, [Turn("user", text), Turn("assistant", reply_text, route.department, route.pinned)]
            )
            self.metrics.observe(route.department, "command", time.perf_counter() - started)
            return Reply(reply_text, route, latency_ms=_ms(started))

        generation = await self._generate(route, [*history, Turn("user", route.text)], self.defaults, started)
        answer = generation.text or EMPTY_REPLY
        await self.memory.append(
            cid,
            [Turn("user", route.text), Turn("assistant", answer, route.department, route.pinned)],
        )
        return _reply(note + answer, route, generation, started)

    async def complete(
        self, model: str, turns: Sequence[Turn], params: GenerationParams | None = None
    ) -> Reply:
        """Answer the last user turn of a conversation supplied by the caller."""
        started = time.perf_counter()
        route, turns = self._route_request(model, turns)
        generation = await self._generate(route, turns, params or self.defaults, started)
        return _reply(generation.text, route, generation, started)

    def stream(
        self, model: str, turns: Sequence[Turn], params: GenerationParams | None = None
    ) -> ReplyStream:
        """Like `complete`, as text deltas; routing errors raise here, before any output."""
        started = time.perf_counter()
        route, turns = self._route_request(model, turns)
        generation = self.backend.stream(route.department, turns, params or self.defaults)
        return ReplyStream(route, generation, self.metrics, started)

    def _route_request(self, model: str, turns: Sequence[Turn]) -> tuple[Route, list[Turn]]:
        if not turns or turns[-1].role != "user":
            raise ValueError("the last message must come from the user")
        *history, last = turns
        if model in TARGETS:
            route = Route(model, 1.0, "requested", text=last.content)
        elif model == AUTO:
            route = self.router.route(last.content, history)
        else:
            raise UnknownModel(model)
        if not route.text:
            raise ValueError("the last user message is empty once the routing command is removed")
        return route, [*history, Turn("user", route.text)]

    async def _generate(
        self, route: Route, turns: list[Turn], params: GenerationParams, started: float
    ) -> Generation:
        try:
            generation = await self.backend.generate(route.department, turns, params)
        except Exception:
            self.metrics.observe(route.department, "error", time.perf_counter() - started)
            raise
        self.metrics.observe(
            route.department, "ok", time.perf_counter() - started, generation.completion_tokens
        )
        return generation

    def _within_limit(self, text: str) -> tuple[str, str]:
        limit = self.limits.max_input_chars
        if len(text) <= limit:
            return text, ""
        return text[:limit], f"(Your message was cut to its first {limit} characters.)\n\n"


class ReplyStream:
    """Text deltas of one reply; `reply` is set once the stream is exhausted."""

    def __init__(
        self, route: Route, generation: GenerationStream, metrics: Metrics, started: float
    ) -> None:
        self.route = route
        self.reply: Reply | None = None
        self._generation = generation
        self._metrics = metrics
        self._started = started

    async def __aiter__(self) -> AsyncIterator[str]:
        department = self.route.department
        try:
            async for delta in self._generation:
                yield delta
        except Exception:
            self._metrics.observe(department, "error", time.perf_counter() - self._started)
            raise
        result = self._generation.result
        if result is None:
            return
        self._metrics.observe(department, "ok", time.perf_counter() - self._started, result.completion_tokens)
        self.reply = _reply(result.text, self.route, result, self._started)


def _reply(text: str, route: Route, generation: Generation, started: float) -> Reply:
    return Reply(
        text,
        route,
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
        finish_reason=generation.finish_reason,
        latency_ms=_ms(started),
    )


def _switched(route: Route) -> str:
    if route.pinned:
        name = "the general assistant" if route.department == BASE else f"the {route.department} assistant"
        return f"You are now talking to {name}. Send /auto to let me pick the department again."
    return "Automatic routing is on: I will pick the department for each message."


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
