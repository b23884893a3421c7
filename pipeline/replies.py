"""From a generation to the `Reply` a caller gets: citations split off into sources."""

from __future__ import annotations

import time
from collections.abc import Sequence

from core.messages import Entry, Grounding, Reply, Route
from inference.base import Generation
from inference.chat_format import split_citations
from knowledge.handbook import NOT_COVERED_PHRASE


def cited(text: str, grounding: Grounding | None) -> tuple[str, tuple[Entry, ...]]:
    """The answer without citation markers, and the entries it used.

    Those are the entries it cites; an answer that cites none (a model not trained
    to cite) used what it was shown, unless it says the handbook does not cover it.
    """
    if grounding is None:
        return text, ()
    answer, ids = split_citations(text)
    sources = tuple(entry for entry in grounding.entries if entry.id in ids)
    if not ids and NOT_COVERED_PHRASE not in answer:
        sources = grounding.entries
    return answer, sources


def sources_line(sources: Sequence[Entry]) -> str:
    """A short line for chat channels: "Sources: HR-03 (Leave), HR-11 (Leave)"."""
    named = [f"{e.id} ({e.section})" if e.section else e.id for e in sources]
    return "Sources: " + ", ".join(named) if named else ""


def build_reply(
    text: str, sources: tuple[Entry, ...], route: Route, generation: Generation, started: float
) -> Reply:
    return Reply(
        text,
        route,
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
        finish_reason=generation.finish_reason,
        latency_ms=elapsed_ms(started),
        sources=sources,
    )


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started` (a time.perf_counter() reading)."""
    return round((time.perf_counter() - started) * 1000, 1)
