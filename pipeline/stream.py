"""A streamed reply: text deltas without citation markers, then the whole `Reply`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from core.messages import Grounding, Reply, Route
from inference.base import GenerationStream
from inference.chat_format import CitationFilter
from pipeline.metrics import MetricsSink
from pipeline.replies import build_reply, cited


class ReplyStream:
    """Text deltas of one reply; `reply` is set once the stream is exhausted."""

    def __init__(
        self, route: Route, generation: GenerationStream, metrics: MetricsSink, started: float,
        grounding: Grounding | None = None,
    ) -> None:
        self.route = route
        self.reply: Reply | None = None
        self._generation = generation
        self._metrics = metrics
        self._started = started
        self._grounding = grounding

    async def __aiter__(self) -> AsyncIterator[str]:
        department = self.route.department
        # Citation markers go to `reply.sources`, not into the text the user reads.
        markers = CitationFilter()
        first = True
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
        self.reply = build_reply(*cited(result.text, self._grounding), self.route, result, self._started)
