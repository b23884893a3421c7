"""Fact accuracy on held-out questions: base model vs trained model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.messages import Turn
from inference.base import GenerationParams
from inference.chat_format import encode_chat
from training.datasets import EvalRecord
from training.examples import user_text
from training.scoring import contains_all

# Key facts come in the first sentence; 64 tokens holds it and keeps CPU eval short.
EVAL_PARAMS = GenerationParams(max_new_tokens=64, repetition_penalty=1.1)


@dataclass(frozen=True)
class Answer:
    question: str
    expected: tuple[str, ...]
    answer: str
    correct: bool


@dataclass(frozen=True)
class Evaluation:
    label: str  # "base" or what was trained, e.g. "lora finance/lora-20261127-101500"
    accuracy: float
    answers: list[Answer]
    seconds: float


def evaluate(
    model: Any,
    tokenizer: Any,
    system_prompt: str,
    records: Sequence[EvalRecord],
    label: str,
    params: GenerationParams = EVAL_PARAMS,
    batch_size: int = 16,
    on_batch: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    """Answer every question greedily (batched) and score fact accuracy.

    `on_batch(label, answered, total)` is called after each batch, for a progress bar.
    """
    started = time.perf_counter()
    questions = [user_text(r.instruction, r.input) for r in records]
    replies: list[str] = []
    for start in range(0, len(questions), batch_size):
        replies += generate_batch(model, tokenizer, system_prompt, questions[start : start + batch_size], params)
        if on_batch:
            on_batch(label, len(replies), len(questions))
    answers = [
        Answer(q, r.expected, reply, contains_all(reply, r.expected))
        for q, r, reply in zip(questions, records, replies, strict=True)
    ]
    accuracy = sum(a.correct for a in answers) / len(answers) if answers else 0.0
    return Evaluation(label, accuracy, answers, time.perf_counter() - started)


def generate_batch(
    model: Any, tokenizer: Any, system_prompt: str, questions: Sequence[str], params: GenerationParams
) -> list[str]:
    """Greedy answers for several questions in one left-padded batch."""
    import torch

    prompts = [encode_chat(tokenizer, system_prompt, [Turn("user", q)], add_generation_prompt=True) for q in questions]
    width = max(map(len, prompts))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids, attention_mask=attention, max_new_tokens=params.max_new_tokens,
            do_sample=False, temperature=None, top_p=None, top_k=None,
            repetition_penalty=params.repetition_penalty,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=pad,
        )
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in output]


def write_report(reports_dir: Path, department: str, evaluations: Sequence[Evaluation], extra: dict) -> Path:
    """reports/<dept>-<time>.json with every answer, so a score can be checked by eye."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"{department}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {"department": department, **extra, "evaluations": [asdict(e) for e in evaluations]}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    return path
