"""Choosing next tokens: repetition penalty, greedy, temperature and nucleus sampling.

Shared by both local runtimes (inference/batching.py, inference/llamacpp.py), so a
department answers the same whichever computes its logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from inference.base import GenerationParams


def choose_tokens(
    logits: torch.Tensor,
    seen: torch.Tensor,
    penalty: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
) -> torch.Tensor:
    """One next token per row from (rows, vocab) logits, each row with its own settings.

    Repetition penalty as transformers applies it with `prompt_ignore_length` set to
    the prompt: the logits of tokens the answer already holds (`seen`) are divided by
    the penalty when positive, multiplied when negative. Then greedy rows (temperature 0) take the argmax; the others sample
    after temperature and nucleus (top_p) filtering.
    """
    if bool((penalty != 1).any()):
        factor = penalty[:, None]
        penalised = torch.where(logits < 0, logits * factor, logits / factor)
        logits = torch.where(seen, penalised, logits)
    tokens = logits.argmax(-1)
    sampled = (temperature > 0).nonzero().squeeze(1)
    if sampled.numel():
        scaled = logits[sampled] / temperature[sampled, None]
        ordered, order = scaled.sort(-1, descending=True)
        probs = ordered.softmax(-1)
        # Keep the smallest head of the distribution whose mass reaches top_p.
        mass_before = probs.cumsum(-1) - probs
        cut = mass_before >= top_p[sampled, None]
        cut[:, 0] = False
        choice = torch.multinomial(ordered.masked_fill(cut, float("-inf")).softmax(-1), 1)
        tokens[sampled] = order.gather(-1, choice).squeeze(1)
    return tokens


def row_settings(params: Sequence[GenerationParams], device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's repetition penalty, temperature and top_p, as choose_tokens takes them."""
    return (
        torch.tensor([p.repetition_penalty for p in params], device=device),
        torch.tensor([p.temperature for p in params], device=device),
        torch.tensor([p.top_p for p in params], device=device),
    )
