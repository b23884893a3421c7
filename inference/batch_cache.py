"""The running rows of a batch and their stacked state: KV cache, attention mask, seen tokens.

A newcomer is prefilled on its own (inference/batching.py), then its KV cache is
left-padded to the batch's length (or the batch's to its) and stacked under the
others. The mask hides the padding, so a row decodes as it would alone; finished
rows leave, and padding columns nobody needs any more go with them.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import torch
import torch.nn.functional as F
from transformers import DynamicCache

Row = TypeVar("Row")


class Batch(Generic[Row]):
    """Row i of every tensor belongs to `rows[i]`.

    Columns are left-padded so all rows end at the same column; `mask` is False on
    the padding. `seen` marks each row's generated tokens, for the repetition penalty.
    """

    def __init__(self, device: Any) -> None:
        self.device = device
        self.clear()

    def add(self, row: Row, cache: DynamicCache, seen: torch.Tensor) -> None:
        """Stack a prefilled row under the others, left-padding whichever side is shorter."""
        length = cache.get_seq_length()
        mask = torch.ones((1, length), dtype=torch.bool, device=self.device)
        if self.rows:
            width = max(length, self.mask.shape[1])
            layers = [
                (_stack(old.keys, new.keys, width), _stack(old.values, new.values, width))
                for old, new in zip(self.cache.layers, cache.layers)
            ]
            cache = DynamicCache(layers)
            mask = _stack(self.mask, mask, width)
            seen = torch.cat([self.seen, seen])
        self.rows.append(row)
        self.cache, self.mask, self.seen = cache, mask, seen

    def drop(self, indices: list[int]) -> None:
        """Remove rows; padding columns no remaining row needs are cut off too."""
        gone = set(indices)
        keep = [i for i in range(len(self.rows)) if i not in gone]
        if not keep:
            self.clear()
            return
        self.rows = [self.rows[i] for i in keep]
        index = torch.tensor(keep, device=self.device)
        mask = self.mask[index]
        start = int(mask.any(0).nonzero()[0])  # the first column a remaining row attends to
        self.cache = DynamicCache(
            [(layer.keys[index, :, start:], layer.values[index, :, start:]) for layer in self.cache.layers]
        )
        self.mask = mask[:, start:]
        self.seen = self.seen[index]

    def clear(self) -> None:
        self.rows: list[Row] = []
        self.cache = DynamicCache()
        self.mask = torch.zeros((0, 0), dtype=torch.bool, device=self.device)
        self.seen = torch.zeros((0, 0), dtype=torch.bool, device=self.device)


def _stack(batch: torch.Tensor, row: torch.Tensor, width: int) -> torch.Tensor:
    """Concatenate along rows after left-padding both to `width` along the sequence.

    Works for KV tensors (rows, heads, seq, dim) and masks (rows, seq): the sequence
    axis is the second-to-last for the former and the last for the latter.
    """
    axis = -2 if batch.dim() == 4 else -1

    def pad(tensor: torch.Tensor) -> torch.Tensor:
        missing = width - tensor.shape[axis]
        if not missing:
            return tensor
        return F.pad(tensor, (0, 0, missing, 0) if axis == -2 else (missing, 0))

    return torch.cat([pad(batch), pad(row)])
