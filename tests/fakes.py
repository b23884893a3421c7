"""In-memory stand-ins for the pipeline's ports (inference, routing, knowledge, metrics).

They let pipeline logic be tested in milliseconds; tests where what a model says
matters use the real SmolLM2 (tests/conftest.py) instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from core.company import load_company
from core.messages import Grounding, Route, Turn
from inference.base import DepartmentModel, Generation, GenerationParams
from memory.in_process import InProcessMemory
from pipeline.service import GroundingSettings, Pipeline, PipelineLimits
from router.commands import CommandRouter


@dataclass
class Call:
    department: str
    turns: list[Turn]
    params: GenerationParams
    grounding: Grounding | None


class ScriptedBackend:
    """Answers with `script(department, turns, grounding)`, or a fixed text; records every call.

    Streams the answer word by word (failing after `stream_fails_after` words, if given);
    `untrained` departments are served by the base model.
    """

    def __init__(self, answer: str | Callable[[str, list[Turn], Grounding | None], str] = "an answer",
                 *, untrained: Sequence[str] = (), departments: Sequence[str] = (),
                 stream_fails_after: int | None = None) -> None:
        self._answer = answer
        self._fails_after = stream_fails_after
        self._untrained = set(untrained)
        self._departments = list(departments)
        self.calls: list[Call] = []
        self.ready = True
        self.problem: str | None = None

    def models(self) -> list[DepartmentModel]:
        return [DepartmentModel(d, "base" if d in self._untrained else "full", "scripted")
                for d in self._departments]

    def _text(self, department: str, turns: Sequence[Turn], params: GenerationParams,
              grounding: Grounding | None) -> str:
        self.calls.append(Call(department, list(turns), params, grounding))
        answer = self._answer
        return answer if isinstance(answer, str) else answer(department, list(turns), grounding)

    async def generate(self, department: str, turns: Sequence[Turn], params: GenerationParams,
                       grounding: Grounding | None = None) -> Generation:
        text = self._text(department, turns, params, grounding)
        return Generation(text, sum(len(t.content.split()) for t in turns), len(text.split()), "stop")

    def stream(self, department: str, turns: Sequence[Turn], params: GenerationParams,
               grounding: Grounding | None = None) -> _WordStream:
        return _WordStream(self._text(department, turns, params, grounding), self._fails_after)


class _WordStream:
    def __init__(self, text: str, fails_after: int | None) -> None:
        self._text = text
        self._fails_after = fails_after
        self.result: Generation | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        words = self._text.split(" ")
        for i, word in enumerate(words):
            if i == self._fails_after:
                raise RuntimeError("the model stopped mid-answer")
            yield word if i == 0 else " " + word
        self.result = Generation(self._text, 0, len(words), "stop")


class FixedRouter:
    """The automatic router's stand-in: every message goes to `department`."""

    def __init__(self, department: str, confidence: float = 0.9) -> None:
        self.department = department
        self.confidence = confidence

    def route(self, text: str, history: Sequence[Turn]) -> Route:
        return Route(self.department, self.confidence, "classifier", text=text.strip())


class FixedKnowledge:
    """Every department's handbook answers with the same entries."""

    def __init__(self, grounding: Grounding) -> None:
        self.grounding = grounding
        self.asked: list[tuple[str, str]] = []

    def retrieve(self, department: str, text: str, k: int, history: Sequence[Turn] = ()) -> Grounding | None:
        self.asked.append((department, text))
        return Grounding(self.grounding.entries[:k], self.grounding.not_covered)


@dataclass
class RecordedMetrics:
    """A metrics sink that keeps what it is told."""

    outcomes: list[tuple[str, str]] = field(default_factory=list)
    first_tokens: list[str] = field(default_factory=list)

    def observe(self, department: str, outcome: str, seconds: float, tokens: int = 0) -> None:
        self.outcomes.append((department, outcome))

    def observe_first_token(self, department: str, seconds: float) -> None:
        self.first_tokens.append(department)


def fake_pipeline(backend: ScriptedBackend, *, automatic: str = "finance", knowledge: FixedKnowledge | None = None,
                  memory: InProcessMemory | None = None, metrics: RecordedMetrics | None = None,
                  max_input_chars: int = 4000) -> Pipeline:
    """The real pipeline (and command router) over in-memory ports, for the bundled company."""
    company = load_company()
    return Pipeline(
        CommandRouter(FixedRouter(automatic), company.targets), memory or InProcessMemory(4), backend,
        GenerationParams(max_new_tokens=8), metrics or RecordedMetrics(), PipelineLimits(max_input_chars),
        GroundingSettings(knowledge, 2), company=company,
    )
