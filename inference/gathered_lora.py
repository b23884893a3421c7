"""Mixed-adapter batches at the cost of one adapter: each layer's LoRA weights stacked, gathered per row.

PEFT's mixed batch (`adapter_names`) loops over the distinct adapters of a batch in every
LoRA layer, so a batch spread over five departments runs five small matmul pairs per layer,
each on a slice of the rows. Here every LoRA layer holds all adapters' A and B stacked
(the scaling folded into B, ranks zero-padded to the layer's largest, slot 0 all zeros for
rows of the plain base model); a decode step gathers each row's A and B and runs one
batched matmul pair for all rows, whatever the mix. S-LoRA and Punica do the same with
custom kernels; at these sizes `torch.bmm` is enough.

Only plain LoRA on linear layers is gathered. Anything else (DoRA, LoRA on embeddings,
modules_to_save) keeps PEFT's mixed batch: `gather_adapters` returns None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

# PEFT's name for "no adapter" in a mixed batch; here it is slot 0, like None.
NO_ADAPTER = "__base__"


class AdapterRows:
    """Which adapter each row of the next forward pass uses; the engine selects before each pass."""

    def __init__(self, names: Sequence[str]) -> None:
        self.slots = {None: 0, NO_ADAPTER: 0, **{name: i for i, name in enumerate(names, start=1)}}
        self.bytes: dict[str, int] = dict.fromkeys(names, 0)  # each adapter's own weights, unpadded
        self.rows: torch.Tensor | None = None
        self.any = False

    def select(self, adapters: Sequence[str | None], device: Any) -> None:
        slots = [self.slots[adapter] for adapter in adapters]
        self.rows = torch.tensor(slots, device=device)
        self.any = any(slots)  # an all-base batch skips the LoRA matmuls


class GatheredLoRALinear(nn.Module):
    """A frozen linear layer plus every adapter's low-rank update, chosen per row."""

    def __init__(self, base_layer: nn.Linear, a: torch.Tensor, b: torch.Tensor, rows: AdapterRows) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.register_buffer("lora_a", a)  # [adapters + 1, rank, in]
        self.register_buffer("lora_b", b)  # [adapters + 1, out, rank], scaling included
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if not self.rows.any:
            return out
        slots = self.rows.rows
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # [rows, tokens, in]
        low = torch.bmm(flat, self.lora_a[slots].transpose(1, 2))
        return out + torch.bmm(low, self.lora_b[slots].transpose(1, 2)).view(out.shape)


def gather_adapters(peft_model: Any) -> Any | None:
    """The PEFT model's underlying model with its LoRA layers replaced by gathered ones.

    The returned model carries `adapter_rows` (an AdapterRows) to select adapters with.
    The PEFT model is consumed: its layers now live in the returned model. None (and the
    PEFT model untouched) when an adapter uses something this module does not gather.
    """
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    names = list(peft_model.peft_config)
    if any(getattr(config, "modules_to_save", None) for config in peft_model.peft_config.values()):
        return None
    inner = peft_model.base_model.model
    layers = [(path, module) for path, module in inner.named_modules() if isinstance(module, LoraLayer)]
    for _, module in layers:
        plain = type(module) is LoraLinear and isinstance(module.base_layer, nn.Linear)
        if not plain or any(module.use_dora.get(name) for name in names) or module.lora_embedding_A:
            return None
    rows = AdapterRows(names)
    for path, module in layers:
        present = [name for name in names if name in module.lora_A]
        rank = max((module.r[name] for name in present), default=1)
        base = module.base_layer
        a = base.weight.new_zeros(len(names) + 1, rank, base.in_features)
        b = base.weight.new_zeros(len(names) + 1, base.out_features, rank)
        for name in present:
            slot, r = rows.slots[name], module.r[name]
            a[slot, :r] = module.lora_A[name].weight.detach()
            b[slot, :, :r] = module.lora_B[name].weight.detach() * module.scaling[name]
            rows.bytes[name] += (module.lora_A[name].weight.numel() + module.lora_B[name].weight.numel()) * a.element_size()
        parent_path, _, child = path.rpartition(".")
        setattr(inner.get_submodule(parent_path), child, GatheredLoRALinear(base, a, b, rows))
    inner.adapter_rows = rows
    return inner
