"""A streamed reply: text deltas without citation markers, then the whole `Reply`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from core.messages import Grounding, Reply, Route
from inference.base import GenerationStream
from inference.chat_format import CitationFilter
from pipeline.metrics import MetricsSink
from pipeline.replies import build_reply, cited


class ReplyStream:
    """Text deltas of one reply; `reply` is set once the stream is exhausted."""

    def __init__(
        self, route: Route, generation: GenerationStream, metrics: MetricsSink, started: float,
        grounding: Grounding | None = None, *, prefix: str = "",
        on_reply: Callable[[Reply], Awaitable[Reply]] | None = None,
    ) -> None:
        self.route = route
        self.reply: Reply | None = None
        self._generation = generation
        self._metrics = metrics
        self._started = started
        self._grounding = grounding
        self._prefix = prefix  # said before the answer
        self._on_reply = on_reply  # e.g. remembering the exchange; may amend the reply

    async def __aiter__(self) -> AsyncIterator[str]:
        department = self.route.department
        # Citation markers go to `reply.sources`, not into the text the user reads.
        markers = CitationFilter()
        first = True
        if self._prefix:
            yield self._prefix
        try:
            async for delta in self._generation:
                if first:
                    self._metrics.observe_first_token(department, time.perf_counter() - self._started)
                    first = False
                if text := markers.feed(delta):
                    yield text
            if rest := markers.finish():
                yield rest
        except Exception:
            self._metrics.observe(department, "error", time.perf_counter() - self._started)
            raise
        result = self._generation.result
        if result is None:
            return
        self._metrics.observe(department, "ok", time.perf_counter() - self._started, result.completion_tokens)
        reply = build_reply(*cited(result.text, self._grounding), self.route, result, self._started)
        self.reply = await self._on_reply(reply) if self._on_reply else reply


class FixedReply:
    """A reply known before any generation (a command's), as a one-delta stream."""

    def __init__(self, reply: Reply) -> None:
        self.route = reply.route
        self.reply = reply

    async def __aiter__(self) -> AsyncIterator[str]:
        yield self.reply.text
