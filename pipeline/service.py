"""One path from message to reply, shared by every channel and the HTTP API.

Channels call `handle` (memory-backed conversations); the OpenAI-compatible API
calls `complete` / `stream` with the history in the request. Both route,
retrieve the department's handbook entries (with grounding on), generate and
count the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from core.company import BASE, Company
from core.messages import Grounding, IncomingMessage, Reply, Route, Turn
from inference.base import Generation, GenerationParams, InferenceBackend
from knowledge.base import Knowledge
from memory.base import ConversationMemory
from pipeline.metrics import MetricsSink
from pipeline.quotes import HandbookQuotes
from pipeline.replies import build_reply, cited, elapsed_ms
from pipeline.stream import FixedReply, ReplyStream
from pipeline.texts import EMPTY_REPLY, RESET_TEXT, help_text, switched_text
from router.base import Router
from router.commands import AUTO, parse_command


class UnknownModel(ValueError):
    """An API request named a model that is not a department, `base` or `auto`."""


@dataclass(frozen=True)
class PipelineLimits:
    max_input_chars: int = 4000


@dataclass(frozen=True)
class _Turn:
    """A message routed for the model: where it goes, what it follows, what the handbook says."""

    route: Route
    history: list[Turn]
    grounding: Grounding | None
    note: str  # said before the answer (a message cut to the limit)

    @property
    def turns(self) -> list[Turn]:
        """What the model is given: the remembered window, then the question."""
        return [*self.history, Turn("user", self.route.text)]


@dataclass(frozen=True)
class GroundingSettings:
    """Handbook entries per question; `knowledge=None` turns grounding off (the plain prompt)."""

    knowledge: Knowledge | None = None
    k: int = 3


class Pipeline:
    def __init__(
        self,
        router: Router,
        memory: ConversationMemory,
        backend: InferenceBackend,
        defaults: GenerationParams,
        metrics: MetricsSink,
        limits: PipelineLimits = PipelineLimits(),
        grounding: GroundingSettings = GroundingSettings(),
        *,
        company: Company,
    ) -> None:
        self.company = company
        self.router = router
        self.memory = memory
        self.backend = backend
        self.defaults = defaults
        self.metrics = metrics
        self.limits = limits
        self.grounding = grounding
        self.quotes = HandbookQuotes()

    async def handle(self, message: IncomingMessage, model: str = AUTO, params: GenerationParams | None = None) -> Reply:
        """Answer one message of a remembered conversation.

        `model` is a department (or base) to answer without routing, as the web console's
        picker asks; `auto` routes, honouring commands and pins, as every channel does.
        """
        started = time.perf_counter()
        turn = await self._begin(message, model, started)
        if isinstance(turn, Reply):
            return turn
        generation = await self._generate(turn.route, turn.turns, params or self.defaults, started, turn.grounding)
        answer, sources = cited(generation.text, turn.grounding)
        answer = await self._remember(message.conversation_id, turn.route, answer)
        return build_reply(turn.note + answer, sources, turn.route, generation, started)

    async def handle_stream(
        self, message: IncomingMessage, model: str = AUTO, params: GenerationParams | None = None
    ) -> ReplyStream | FixedReply:
        """Like `handle`, as text deltas; the conversation is remembered once the stream ends."""
        started = time.perf_counter()
        turn = await self._begin(message, model, started)
        if isinstance(turn, Reply):
            return FixedReply(turn)
        answerer = self._answerer(turn.route.department, turn.grounding)
        generation = answerer.stream(turn.route.department, turn.turns, params or self.defaults, turn.grounding)

        async def remember(reply: Reply) -> Reply:
            text = await self._remember(message.conversation_id, turn.route, reply.text)
            return replace(reply, text=turn.note + text)

        return ReplyStream(turn.route, generation, self.metrics, started, turn.grounding,
                           prefix=turn.note, on_reply=remember)

    async def _begin(self, message: IncomingMessage, model: str, started: float) -> Reply | _Turn:
        """A command's reply (answered here), or the routed turn with its history and handbook entries."""
        cid = message.conversation_id
        text, note = self._within_limit(message.text)
        command, rest = parse_command(text)
        if command is not None and command not in (*self.company.targets, AUTO):
            route = Route(BASE, 1.0, "command")
            if command == "reset":
                await self.memory.clear(cid)
                reply_text = RESET_TEXT
            elif command in ("help", "start"):
                reply_text = help_text(self.company)
            else:
                reply_text = f"There is no /{command} here. {help_text(self.company)}"
            self.metrics.observe(route.department, "command", time.perf_counter() - started)
            return Reply(reply_text, route, latency_ms=elapsed_ms(started))
        if model != AUTO and model not in self.company.targets:
            raise UnknownModel(model)

        history = await self.memory.window(cid)
        asked = rest if command else text.strip()  # `command` can only be a routing one here
        if model != AUTO and asked:
            route = Route(model, 1.0, "requested", text=asked)
        else:
            # Routing and retrieval are CPU work (sklearn, TF-IDF): off the event loop.
            route = await asyncio.to_thread(self.router.route, text, history)
        if not route.text:  # a routing command on its own: confirm, remember the pin
            reply_text = switched_text(route, self.company)
            await self.memory.append(
                cid, [Turn("user", text), Turn("assistant", reply_text, route.department, route.pinned)]
            )
            self.metrics.observe(route.department, "command", time.perf_counter() - started)
            return Reply(reply_text, route, latency_ms=elapsed_ms(started))
        grounding = await asyncio.to_thread(self._ground, route, history)
        return _Turn(route, history, grounding, note)

    async def _remember(self, conversation_id: str, route: Route, answer: str) -> str:
        """Store the exchange; returns the answer as stored (channels cannot send an empty one)."""
        answer = answer or EMPTY_REPLY
        await self.memory.append(
            conversation_id,
            [Turn("user", route.text), Turn("assistant", answer, route.department, route.pinned)],
        )
        return answer

    async def complete(
        self, model: str, turns: Sequence[Turn], params: GenerationParams | None = None
    ) -> Reply:
        """Answer the last user turn of a conversation supplied by the caller."""
        started = time.perf_counter()
        route, turns, grounding = await asyncio.to_thread(self._prepare, model, turns)
        generation = await self._generate(route, turns, params or self.defaults, started, grounding)
        return build_reply(*cited(generation.text, grounding), route, generation, started)

    async def stream(
        self, model: str, turns: Sequence[Turn], params: GenerationParams | None = None
    ) -> ReplyStream:
        """Like `complete`, as text deltas; routing errors raise here, before any output."""
        started = time.perf_counter()
        route, turns, grounding = await asyncio.to_thread(self._prepare, model, turns)
        answerer = self._answerer(route.department, grounding)
        generation = answerer.stream(route.department, turns, params or self.defaults, grounding)
        return ReplyStream(route, generation, self.metrics, started, grounding)

    def _prepare(self, model: str, turns: Sequence[Turn]) -> tuple[Route, list[Turn], Grounding | None]:
        """Route the request and retrieve its handbook entries (blocking: run in a thread)."""
        route, turns = self._route_request(model, turns)
        return route, turns, self._ground(route, turns[:-1])

    def _route_request(self, model: str, turns: Sequence[Turn]) -> tuple[Route, list[Turn]]:
        if not turns or turns[-1].role != "user":
            raise ValueError("the last message must come from the user")
        *history, last = turns
        if model in self.company.targets:
            route = Route(model, 1.0, "requested", text=last.content)
        elif model == AUTO:
            route = self.router.route(last.content, history)
        else:
            raise UnknownModel(model)
        if not route.text:
            raise ValueError("the last user message is empty once the routing command is removed")
        return route, [*history, Turn("user", route.text)]

    def _answerer(self, department: str, grounding: Grounding | None) -> InferenceBackend | HandbookQuotes:
        """The backend; or, while a department's model is the untrained base, quotes of its handbook."""
        if grounding is not None and any(m.department == department and m.serving == "base"
                                         for m in self.backend.models()):
            return self.quotes
        return self.backend

    def _ground(self, route: Route, history: Sequence[Turn]) -> Grounding | None:
        knowledge = self.grounding.knowledge
        if knowledge is None:
            return None
        return knowledge.retrieve(route.department, route.text, self.grounding.k, history)

    async def _generate(
        self, route: Route, turns: list[Turn], params: GenerationParams, started: float,
        grounding: Grounding | None,
    ) -> Generation:
        try:
            answerer = self._answerer(route.department, grounding)
            generation = await answerer.generate(route.department, turns, params, grounding)
        except Exception:
            self.metrics.observe(route.department, "error", time.perf_counter() - started)
            raise
        self.metrics.observe(
            route.department, "ok", time.perf_counter() - started, generation.completion_tokens
        )
        if generation.first_token_at is not None:  # the local engine says; a remote non-stream cannot
            self.metrics.observe_first_token(route.department, generation.first_token_at - started)
        return generation

    def _within_limit(self, text: str) -> tuple[str, str]:
        limit = self.limits.max_input_chars
        if len(text) <= limit:
            return text, ""
        return text[:limit], f"(Your message was cut to its first {limit} characters.)\n\n"


