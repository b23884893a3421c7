"""What a training method is given, and what it hands back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowledge.library import DepartmentKnowledge
from training.examples import Example, PreferenceExample
from training.recipe import Recipe
from training.runner import StageResult

ARTIFACT = "artifact"  # inside a run directory: what the server loads


@dataclass(frozen=True)
class TrainingJob:
    department: str
    base_model: str  # a local directory or hub id
    system_prompt: str
    examples: Sequence[Example]
    recipe: Recipe
    run_dir: Path
    preferences: Sequence[PreferenceExample] = ()
    # The handbook the examples were grounded in; None when the recipe trains without grounding.
    knowledge: DepartmentKnowledge | None = None
    resume: bool = False
    show_progress: bool = True

    @property
    def artifact_dir(self) -> Path:
        return self.run_dir / ARTIFACT


@dataclass(frozen=True)
class TrainingResult:
    artifact: Path
    kind: str  # "adapter" or "full": how the registry serves it
    stages: list[StageResult] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total); 4-bit weights count as the values they hold, not bytes."""
    trainable = total = 0
    for parameter in model.parameters():
        count = parameter.numel()
        if hasattr(parameter, "quant_state"):  # bitsandbytes packs two 4-bit values per byte
            count *= 2
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total


def load_tokenizer(base_model: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
