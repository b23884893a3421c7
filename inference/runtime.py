"""What a local runtime hands LocalBackend: one engine and tokenizer per department.

Two runtimes compute the logits: torch (inference/torch_runtime.py: batched, GPU or
CPU, LoRA adapters gathered per row) and llama.cpp (inference/llamacpp.py: GGUF on
CPU). LocalBackend (inference/local.py) fits prompts, streams text and swaps models
on reload the same way for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from inference.base import DepartmentModel
from inference.registry import Artifact, RegistryView
from inference.tickets import DecodeRequest, EngineStats, Ticket


class Engine(Protocol):
    """Decodes the requests for one model object on its own thread."""

    failure: str | None  # why it stopped serving after a good start, for readiness

    @property
    def stats(self) -> EngineStats: ...

    def submit(self, request: DecodeRequest, *, stream: bool = False) -> Ticket:
        """Queue a request (from a running event loop); raises EngineStopped once closed."""
        ...

    def close(self, *, drain: bool) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Served:
    """How one department is served."""

    tokenizer: Any
    adapter: str | None  # the adapter row to select on a shared model (torch), else None
    info: DepartmentModel
    engine: Engine  # departments sharing a model share its engine
    stop_ids: frozenset[int]
    context_length: int  # prompt + answer tokens the model takes


class Runtime(Protocol):
    def load(self, base_model: str, registry: RegistryView, departments: Sequence[str]) -> dict[str, Served]:
        """Load the base and each department's live artifact (blocking). Every department
        in `departments` (base included) gets an entry: a broken artifact falls back to
        the base model, with the reason in its DepartmentModel.note."""
        ...


def artifact_info(artifact: Artifact) -> DepartmentModel:
    return DepartmentModel(artifact.department, artifact.kind, str(artifact.path))


def load_failure(artifact: Artifact, error: Exception) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{artifact.kind} {artifact.path} failed to load: {first_line or type(error).__name__}"


def stop_token_ids(tokenizer: Any, configured: int | list[int] | None = None) -> frozenset[int]:
    """The tokens that end an answer: the model's configured end tokens and the tokenizer's."""
    ids = configured if isinstance(configured, list) else [configured]
    stop = {i for i in ids if i is not None}
    if tokenizer.eos_token_id is not None:
        stop.add(tokenizer.eos_token_id)
    return frozenset(stop)
