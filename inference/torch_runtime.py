"""The torch runtime: transformers + PEFT in this process, batched (inference/batching.py).

One base model in memory; department adapters are attached to it by name and,
once all are loaded, gathered so that one batch serves any mix of departments
(inference/gathered_lora.py); full fine-tuned models load on their own. Each
model object gets one batching engine.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any

from inference.artifacts import attach_adapter, load_causal_lm, pick_device, tokenizer_for
from inference.base import DepartmentModel
from inference.registry import RegistryView
from inference.runtime import Engine, Served, artifact_info, load_failure, stop_token_ids

log = logging.getLogger(__name__)


class TorchRuntime:
    """`max_batch_size` caps the rows decoded together in one forward pass (1: one request
    at a time); `batch_window_s` is how long an idle engine waits for company."""

    def __init__(self, device: str = "auto", max_batch_size: int = 16, batch_window_s: float = 0.005) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._device_setting = device
        self._max_batch_size = max_batch_size
        self._batch_window_s = batch_window_s
        # Engines take turns on the device: two models' forward passes never overlap.
        self._step_lock = threading.Lock()

    def load(self, base_model: str, registry: RegistryView, departments: Sequence[str]) -> dict[str, Served]:
        from transformers import AutoTokenizer

        device = pick_device(self._device_setting)
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        base = load_causal_lm(base_model, device)
        notes: dict[str, str] = dict(registry.problems)
        # Adapters first: each one wraps the shared base, so entries built
        # afterwards all point at the final PEFT model.
        shared: Any = base
        for department, artifact in registry.artifacts.items():
            if artifact.kind == "adapter":
                try:
                    shared = attach_adapter(shared, artifact)
                except Exception as error:  # a broken artifact must fall back, never crash
                    notes[department] = load_failure(artifact, error)

        from inference.gathered_lora import NO_ADAPTER, gather_adapters

        no_adapter = NO_ADAPTER if shared is not base else None
        if shared is not base:
            # One batched matmul pair per layer for any mix of departments, not one per adapter.
            shared = gather_adapters(shared) or shared
        engines: dict[int, Engine] = {}

        def serve(model: Any, tok: Any, adapter: str | None, info: DepartmentModel) -> Served:
            if id(model) not in engines:
                engines[id(model)] = self._engine(model, info.department)
            info = dataclasses.replace(info, memory_bytes=_memory_bytes(model, info, adapter))
            return Served(tok, adapter, info, engines[id(model)],
                          stop_token_ids(tok, model.generation_config.eos_token_id),
                          getattr(model.config, "max_position_embeddings", 2048))

        served: dict[str, Served] = {}
        for department in departments:
            artifact = registry.artifacts.get(department)
            if artifact is not None and department not in notes:
                if artifact.kind == "adapter":
                    served[department] = serve(shared, tokenizer, department, artifact_info(artifact))
                    continue
                try:
                    model = load_causal_lm(artifact.path, device)
                    served[department] = serve(
                        model, tokenizer_for(artifact.path, tokenizer), None, artifact_info(artifact)
                    )
                    continue
                except Exception as error:
                    notes[department] = load_failure(artifact, error)
            note = notes.get(department, "")
            if note:
                log.warning("%s: %s; serving the base model with its system prompt", department, note)
            served[department] = serve(shared, tokenizer, no_adapter, DepartmentModel(department, "base", base_model,
                                                                                     note=note))
        return served

    def _engine(self, model: Any, department: str) -> Engine:
        from inference.batching import BatchEngine

        return BatchEngine(
            model,
            max_batch_size=self._max_batch_size,
            window_s=self._batch_window_s,
            step_lock=self._step_lock,
            name=f"batch-{department}",
        )


def _memory_bytes(model: Any, info: DepartmentModel, adapter: str | None) -> int:
    """Parameter bytes (see DepartmentModel.memory_bytes)."""
    rows = getattr(model, "adapter_rows", None)  # gathered adapters are buffers, counted when stacked
    if info.serving == "adapter" and rows is not None:
        return rows.bytes[adapter]
    parameters = list(model.named_parameters())
    if info.serving == "adapter":
        marker = f".{adapter}."  # PEFT names them ...lora_A.<adapter>.weight
        chosen = [p for name, p in parameters if "lora_" in name and marker in name]
    else:
        chosen = [p for name, p in parameters if "lora_" not in name]
    return sum(p.numel() * p.element_size() for p in chosen)
