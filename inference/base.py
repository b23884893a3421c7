"""The inference interface the pipeline depends on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from core.messages import Grounding, Turn


@dataclass(frozen=True)
class GenerationParams:
    """How to decode. `temperature == 0` means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def override(self, **values: float | None) -> GenerationParams:
        """A copy with the given non-None values replaced."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True)
class Generation:
    """A finished answer and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn) or "length" (hit max_new_tokens)
    # time.perf_counter() when the first token was chosen, if the backend knows; not part of the answer
    first_token_at: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DepartmentModel:
    """What serves one department, for `switchboard models` and logs."""

    department: str
    serving: str  # "adapter", "full" or "base"
    source: str
    note: str = ""
    # Parameter bytes: an adapter's own weights; a full model's whole size; for
    # "base", the shared base model (counted once however many departments use it).
    memory_bytes: int = 0


class GenerationStream(Protocol):
    """Text deltas as they are produced; `result` is set once iteration ends."""

    result: Generation | None

    def __aiter__(self) -> AsyncIterator[str]: ...


class InferenceBackend(Protocol):
    """Generates replies for a department from a conversation."""

    @property
    def ready(self) -> bool:
        """True once every model is loaded and requests can be served."""
        ...

    @property
    def problem(self) -> str | None:
        """Why serving has stopped after a good start (readiness reports it), or None."""
        ...

    def models(self) -> list[DepartmentModel]:
        """What is serving each department (and `base`)."""
        ...

    async def generate(
        self, department: str, turns: Sequence[Turn], params: GenerationParams, grounding: Grounding | None = None
    ) -> Generation:
        """With `grounding`, the newest question is asked with its handbook entries (inference.chat_format)."""
        ...

    def stream(
        self, department: str, turns: Sequence[Turn], params: GenerationParams, grounding: Grounding | None = None
    ) -> GenerationStream: ...


class InputTooLong(ValueError):
    """The newest message alone does not fit the model's context window."""


class NotReady(RuntimeError):
    """Models are still loading."""


class BackendError(RuntimeError):
    """A remote inference server refused or failed a request (a bad answer, 4xx, 5xx).

    The message names the server and what it said; the API answers 502.
    """


class BackendUnavailable(BackendError):
    """A remote inference server cannot be reached, timed out, or is overloaded (503).

    Usually temporary: the API answers 503, and a queued message is retried.
    """
