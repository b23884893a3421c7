"""Fact accuracy on held-out questions: base model vs trained model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.messages import Entry, Grounding, Turn
from inference.base import GenerationParams
from inference.chat_format import encode_chat
from knowledge.handbook import NOT_COVERED_PHRASE
from training.datasets import EvalRecord, NotCoveredRecord
from training.examples import user_text
from training.scoring import contains_all

# Key facts come in the first sentence; 64 tokens holds it and keeps CPU eval short.
EVAL_PARAMS = GenerationParams(max_new_tokens=64, repetition_penalty=1.1)


@dataclass(frozen=True)
class Question:
    """A held-out question and the strings a right answer contains."""

    text: str
    expected: tuple[str, ...]
    fact: str = ""  # the fact that answers it; "" for a question the handbook does not cover


@dataclass(frozen=True)
class Answer:
    question: str
    expected: tuple[str, ...]
    answer: str
    correct: bool
    entries: tuple[str, ...] = ()  # ids of the handbook entries the prompt showed


@dataclass(frozen=True)
class Evaluation:
    label: str  # "base" or what was trained, e.g. "lora lora-20261127-101500"
    accuracy: float  # share of answers that count (for "not_covered": that say so)
    answers: list[Answer]
    seconds: float
    grounded: bool = False  # prompts showed handbook entries
    questions: str = "facts"  # "facts": answerable questions; "not_covered": questions the handbook does not answer

    @property
    def title(self) -> str:
        mode = " + grounding" if self.grounded else ""
        return f"{self.label}{mode}" + (", not covered" if self.questions == "not_covered" else "")


def eval_questions(records: Sequence[EvalRecord]) -> list[Question]:
    return [Question(user_text(r.instruction, r.input), r.expected, r.fact) for r in records]


def not_covered_questions(records: Sequence[NotCoveredRecord]) -> list[Question]:
    """Counted right when the answer is the "not covered" reply."""
    return [Question(user_text(r.instruction, r.input), (NOT_COVERED_PHRASE,)) for r in records]


# Answers for encoded prompts: a torch model's (torch_answers) or a llama.cpp model's (gguf_answers).
Answerer = Callable[[Sequence[list[int]], GenerationParams], list[str]]


def torch_answers(model: Any, tokenizer: Any) -> Answerer:
    return lambda prompts, params: generate_batch(model, tokenizer, prompts, params)


def evaluate(
    answer: Answerer,
    tokenizer: Any,
    system_prompt: str,
    questions: Sequence[Question],
    label: str,
    params: GenerationParams = EVAL_PARAMS,
    batch_size: int = 16,
    on_batch: Callable[[str, int, int], None] | None = None,
    ground: Callable[[str], Grounding] | None = None,
    kind: str = "facts",
) -> Evaluation:
    """Answer every question greedily (batched) and score fact accuracy.

    With `ground`, each prompt shows the handbook entries it returns for the
    question, as serving does. `on_batch(label, answered, total)` is called
    after each batch, for a progress bar.
    """
    started = time.perf_counter()
    groundings = [ground(q.text) if ground else None for q in questions]
    prompts = [encode_chat(tokenizer, system_prompt, [Turn("user", q.text)], add_generation_prompt=True, grounding=g)
               for q, g in zip(questions, groundings, strict=True)]
    replies: list[str] = []
    for start in range(0, len(prompts), batch_size):
        replies += answer(prompts[start : start + batch_size], params)
        if on_batch:
            on_batch(label, len(replies), len(prompts))
    answers = [
        Answer(q.text, q.expected, reply, contains_all(reply, q.expected),
               tuple(e.id for e in g.entries) if g else ())
        for q, g, reply in zip(questions, groundings, replies, strict=True)
    ]
    accuracy = sum(a.correct for a in answers) / len(answers) if answers else 0.0
    return Evaluation(label, accuracy, answers, time.perf_counter() - started, ground is not None, kind)


def retrieval_recall(
    search: Callable[[str, int], Sequence[Entry]], questions: Sequence[Question], k: int
) -> float | None:
    """Share of questions whose own fact is among the top `k` entries retrieved for them;
    None when no question names its fact."""
    answerable = [q for q in questions if q.fact]
    found = sum(q.fact in {e.id for e in search(q.text, k)} for q in answerable)
    return found / len(answerable) if answerable else None


def generate_batch(model: Any, tokenizer: Any, prompts: Sequence[list[int]], params: GenerationParams) -> list[str]:
    """Greedy answers for several encoded prompts in one left-padded batch."""
    import torch
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    width = max(map(len, prompts))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    # As served (inference/batching.py): the penalty counts the answer's own tokens, never the
    # prompt's, so copying a number from a handbook entry is not penalised.
    penalty = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(params.repetition_penalty, prompt_ignore_length=width)])
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids, attention_mask=attention, max_new_tokens=params.max_new_tokens,
            do_sample=False, temperature=None, top_p=None, top_k=None, logits_processor=penalty,
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
