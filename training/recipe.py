"""Training recipes: one YAML file per department (departments.yaml names it), validated with precise errors."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.company import Department
from core.yaml_file import YamlFileError, read_yaml_mapping

Method = Literal["full", "lora", "qlora", "dpo"]
Precision = Literal["auto", "fp32", "bf16"]


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names file, line and field."""


class Recipe(BaseModel):
    """How to train one department. `dpo` = LoRA SFT first, then DPO on that adapter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = "lora"
    base: str | None = Field(default=None, description="Base model; default: the served base_model setting.")
    epochs: float = Field(default=3, gt=0)
    batch_size: int = Field(default=8, ge=1)
    gradient_accumulation: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    max_length: int = Field(default=384, ge=32)
    seed: int = 0
    # auto: bf16 on CUDA, and bf16 autocast over fp32 weights on a CPU with native bf16 (about 1.5x faster)
    precision: Precision = "auto"
    # NEFTune: noise on the input embeddings while training (0 = off); 5 is the paper's usual value
    neftune_noise_alpha: float = Field(default=0, ge=0)
    # Grounding (RAFT, training/grounding.py): every prompt shows the `grounding_k` handbook entries
    # retrieval finds, the question's own fact always among them ("retrieved": best first, as
    # served; "shuffled": random order). In `grounding_no_oracle_share` of the examples it is left
    # out and the answer is the "not covered" reply. grounding: false trains on the plain prompt.
    grounding: bool = True
    grounding_k: int = Field(default=3, ge=1, le=10)
    grounding_no_oracle_share: float = Field(default=0.05, ge=0, lt=1)
    grounding_order: Literal["retrieved", "shuffled"] = "retrieved"
    # What a cited answer says: "entry", the oracle entry in the handbook's own words (measured
    # best: every expected fact is in its entry), or "record", the training record's own answer.
    grounding_answer: Literal["record", "entry"] = "entry"
    # LoRA and QLoRA ("all-linear" = every linear layer but the output head, for any architecture)
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    # DPO, after the SFT stage
    dpo_beta: float = Field(default=0.1, gt=0)
    dpo_epochs: float = Field(default=1, gt=0)
    dpo_learning_rate: float = Field(default=5e-5, gt=0)
    dpo_batch_size: int = Field(default=4, ge=1)

    def with_overrides(self, **values: object) -> Recipe:
        """A copy with the given non-None values, validated like the file."""
        data = self.model_dump()
        data.update({k: v for k, v in values.items() if v is not None})
        try:
            return Recipe(**data)
        except ValidationError as error:
            raise RecipeError(_describe(error, "command line", {})) from None


def load_recipe(path: Path) -> Recipe:
    try:
        values, lines = read_yaml_mapping(path)
    except YamlFileError as error:
        raise RecipeError(str(error)) from None
    try:
        return Recipe(**values)
    except ValidationError as error:
        raise RecipeError(_describe(error, str(path), lines)) from None


def default_recipe(department: Department) -> Recipe:
    """The recipe departments.yaml names for the department, else the defaults (LoRA on grounded examples)."""
    return load_recipe(department.recipe) if department.recipe else Recipe()


def _describe(error: ValidationError, source: str, lines: dict[str, int]) -> str:
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        where = f"{source}:{lines[field]}" if field in lines else source
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(field, list(Recipe.model_fields), n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(Recipe.model_fields)}"
            problems.append(f"{where}: field '{field}': unknown recipe key{hint}")
        else:
            problems.append(f"{where}: field '{field}': {item['msg']} (got {item.get('input')!r})")
    return "invalid recipe:\n  " + "\n  ".join(problems)
