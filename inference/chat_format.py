"""The one place a conversation becomes model input.

Training builds its examples with the same functions, so the prompt a model was
trained on is exactly the prompt it is served with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.messages import Turn


def chat_messages(system_prompt: str, turns: Sequence[Turn]) -> list[dict[str, str]]:
    """The conversation as chat-template messages, system prompt first."""
    messages = [{"role": "system", "content": system_prompt}]
    messages += [{"role": t.role, "content": t.content} for t in turns if t.role != "system"]
    return messages


def render_chat(
    tokenizer: Any, system_prompt: str, turns: Sequence[Turn], *, add_generation_prompt: bool
) -> str:
    """The conversation as text in the tokenizer's chat template."""
    return tokenizer.apply_chat_template(
        chat_messages(system_prompt, turns),
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
    )


def encode_chat(
    tokenizer: Any, system_prompt: str, turns: Sequence[Turn], *, add_generation_prompt: bool
) -> list[int]:
    """Token ids of the conversation; the template already holds the special tokens."""
    text = render_chat(tokenizer, system_prompt, turns, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]
