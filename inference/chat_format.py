"""The one place a conversation becomes model input.

Training and evaluation build their examples with the same functions, so the
prompt a model was trained on is exactly the prompt it is served with.

With grounding, the system prompt gains the rules below and the newest user
message carries the handbook entries:

    Handbook entries:
    [HR-03] Casual leave (CL) is 8 days per leave year, ...
    [HR-04] Sick leave (SL) is 10 days per leave year, ...

    Question: how many casual leaves do I get?

and a trained model answers "[HR-03] You get 8 days of casual leave ...": the
id first, so the small model picks an entry before it copies from it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from core.messages import Entry, Grounding, Turn

GROUNDING_RULES = (
    "Answer from the handbook entries given with the question, starting with the id of the entry "
    "you use in brackets. If none of them answers it, reply: {not_covered}"
)
_CITATION = re.compile(r"\s*\[([A-Za-z]+-\d{1,4})\]")
# The end of a text that may still grow into a marker: "[", "[HR", "[HR-0".
_UNFINISHED_CITATION = re.compile(r"\[(?:[A-Za-z]+(?:-\d{0,4})?)?$")


def chat_messages(
    system_prompt: str, turns: Sequence[Turn], grounding: Grounding | None = None
) -> list[dict[str, str]]:
    """The conversation as chat-template messages, system prompt first.

    Without `grounding` this is the plain fine-tuned prompt, unchanged.
    """
    turns = [t for t in turns if t.role != "system"]
    if grounding is not None:
        system_prompt = f"{system_prompt} {GROUNDING_RULES.format(not_covered=grounding.not_covered)}"
        last = max((i for i, t in enumerate(turns) if t.role == "user"), default=None)
        if last is not None:
            turns[last] = Turn("user", grounded_question(turns[last].content, grounding.entries))
    return [{"role": "system", "content": system_prompt}, *({"role": t.role, "content": t.content} for t in turns)]


def grounded_question(question: str, entries: Sequence[Entry]) -> str:
    if not entries:
        return f"Handbook entries: none\n\nQuestion: {question}"
    listed = "\n".join(f"[{entry.id}] {entry.text}" for entry in entries)
    return f"Handbook entries:\n{listed}\n\nQuestion: {question}"


def render_chat(
    tokenizer: Any, system_prompt: str, turns: Sequence[Turn], *, add_generation_prompt: bool,
    grounding: Grounding | None = None,
) -> str:
    """The conversation as text in the tokenizer's chat template."""
    return tokenizer.apply_chat_template(
        chat_messages(system_prompt, turns, grounding),
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
    )


def encode_chat(
    tokenizer: Any, system_prompt: str, turns: Sequence[Turn], *, add_generation_prompt: bool,
    grounding: Grounding | None = None,
) -> list[int]:
    """Token ids of the conversation; the template already holds the special tokens."""
    text = render_chat(tokenizer, system_prompt, turns, add_generation_prompt=add_generation_prompt,
                       grounding=grounding)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def cite(entry_id: str, answer: str) -> str:
    """An answer as a grounded model is trained to give it: the entry's id, then the answer."""
    return f"[{entry_id}] {answer}"


def split_citations(text: str) -> tuple[str, list[str]]:
    """The answer without its "[HR-03]" markers, and the ids they named, in order."""
    ids = list(dict.fromkeys(match[1] for match in _CITATION.finditer(text)))
    return _CITATION.sub("", text).strip(), ids


class CitationFilter:
    """Removes "[HR-03]" markers from streamed text. A possible marker at the end, and trailing
    spaces, wait for the next delta, so the deltas join to what `split_citations` returns."""

    def __init__(self) -> None:
        self._raw = ""
        self._sent = ""

    def feed(self, delta: str) -> str:
        self._raw += delta
        safe = self._raw
        if unfinished := _UNFINISHED_CITATION.search(safe):
            safe = safe[: unfinished.start()]
        return self._emit(safe.rstrip())

    def finish(self) -> str:
        return self._emit(self._raw)

    def _emit(self, text: str) -> str:
        clean = split_citations(text)[0]
        if not clean.startswith(self._sent):
            return ""
        delta, self._sent = clean[len(self._sent):], clean
        return delta
