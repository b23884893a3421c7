"""Prompt prefixes already computed: their KV cache, reused by the next prompt that starts the same way.

Every prompt of a department starts with its system prompt (and, with grounding, the same
rules); the next turn of a conversation starts with its whole history. Prefill then runs only
on the tokens after the longest prefix already computed for the same adapter. The entries are
prefill caches themselves: a decode step appends to a cache by concatenation, never in place,
so an entry stays valid while its row decodes on.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from transformers import DynamicCache

# Shorter shared prefixes are not worth a lookup and a copy.
MIN_REUSE_TOKENS = 16
# Prompts kept per engine: one 500-token prompt of SmolLM2-135M holds about 23 MB of keys and values.
CAPACITY = 8

Layers = list[tuple[torch.Tensor, torch.Tensor]]


class PrefixCache:
    """The KV caches of the last `capacity` prompts, by adapter; least recently used goes first."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str | None, tuple[int, ...]], Layers] = OrderedDict()

    def lookup(self, adapter: str | None, tokens: Sequence[int]) -> tuple[int, DynamicCache]:
        """How many leading tokens are already computed, and a cache holding just them.

        At least the last token is always left to compute: its logits choose the first answer token.
        """
        best, best_key = 0, None
        for key in self._entries:
            if key[0] == adapter:
                shared = min(common_prefix(key[1], tokens), len(tokens) - 1)
                if shared > best:
                    best, best_key = shared, key
        if best_key is None or best < MIN_REUSE_TOKENS:
            return 0, DynamicCache()
        self._entries.move_to_end(best_key)
        layers = self._entries[best_key]
        return best, DynamicCache([(keys[:, :, :best], values[:, :, :best]) for keys, values in layers])

    def store(self, adapter: str | None, tokens: Sequence[int], cache: DynamicCache) -> None:
        """Remember a prompt's cache right after its prefill (before any decode step)."""
        key = (adapter, tuple(tokens))
        self._entries[key] = [(layer.keys, layer.values) for layer in cache.layers]
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
