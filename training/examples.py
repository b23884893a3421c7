"""Training examples built with the same chat format the server uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.messages import Grounding, Turn
from inference.chat_format import encode_chat, render_chat
from training.datasets import PreferenceRecord, SftRecord

IGNORE_INDEX = -100  # label value the loss skips


@dataclass(frozen=True)
class Example:
    """One question and the answer to learn; with `grounding`, the entries the prompt shows."""

    question: str
    answer: str
    grounding: Grounding | None = None


@dataclass(frozen=True)
class PreferenceExample:
    """A question with a preferred and a rejected answer; `grounding` as in Example."""

    question: str
    chosen: str
    rejected: str
    grounding: Grounding | None = None


def user_text(instruction: str, context: str) -> str:
    """The user's message: alpaca's instruction, plus its optional input as context."""
    return f"{instruction}\n\n{context}" if context.strip() else instruction


def plain_examples(records: Sequence[SftRecord]) -> list[Example]:
    """The records as they are: question and answer, no handbook entries."""
    return [Example(user_text(r.instruction, r.input), r.output) for r in records]


def plain_preferences(records: Sequence[PreferenceRecord]) -> list[PreferenceExample]:
    return [PreferenceExample(user_text(r.prompt, r.input), r.chosen, r.rejected) for r in records]


def sft_features(
    tokenizer: Any, system_prompt: str, example: Example, max_length: int
) -> dict[str, list[int]] | None:
    """input_ids and labels with the prompt masked; None if the prompt alone fills max_length."""
    question = [Turn("user", example.question)]
    prompt = encode_chat(tokenizer, system_prompt, question, add_generation_prompt=True, grounding=example.grounding)
    full = encode_chat(
        tokenizer, system_prompt, [*question, Turn("assistant", example.answer)], add_generation_prompt=False,
        grounding=example.grounding,
    )
    if full[: len(prompt)] != prompt:
        raise ValueError("the chat template renders the prompt differently inside a full conversation")
    answer = full[len(prompt):]
    # The answer must end the turn, or the trained model never learns to stop.
    if tokenizer.eos_token_id not in answer:
        answer.append(tokenizer.eos_token_id)
    if len(prompt) >= max_length - 8:
        return None
    input_ids = (prompt + answer)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt) + answer)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def sft_dataset(tokenizer: Any, system_prompt: str, examples: Sequence[Example], max_length: int):  # noqa: ANN201
    """A `datasets.Dataset` of features; examples whose prompt overflows are dropped."""
    from datasets import Dataset

    rows = [f for e in examples if (f := sft_features(tokenizer, system_prompt, e, max_length)) is not None]
    if not rows:
        raise ValueError(f"no example fits max_length={max_length}; raise it in the recipe")
    return Dataset.from_list(rows)


def preference_dataset(tokenizer: Any, system_prompt: str, examples: Sequence[PreferenceExample]):  # noqa: ANN201
    """prompt/chosen/rejected strings; the prompt is rendered by our chat template.

    TRL appends the end-of-turn token to chosen and rejected, exactly where the
    template would close the assistant turn.
    """
    from datasets import Dataset

    return Dataset.from_list([
        {
            "prompt": render_chat(
                tokenizer, system_prompt, [Turn("user", e.question)], add_generation_prompt=True,
                grounding=e.grounding,
            ),
            "chosen": e.chosen,
            "rejected": e.rejected,
        }
        for e in examples
    ])


def padding_collator(tokenizer: Any) -> Any:
    """Pads each batch to its own longest example; padded labels are ignored by the loss."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX)
