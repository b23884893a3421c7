"""Loading models and adapters: shared by the serving backend and training's evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inference.registry import Artifact


def pick_device(setting: str = "auto") -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def load_causal_lm(path: str | Path, device: str = "cpu") -> Any:
    """A model for inference: bf16 on CUDA, fp32 on CPU (bf16 matmuls are slow there)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device).eval()


def attach_adapter(model: Any, artifact: Artifact) -> Any:
    """Attach a PEFT adapter named after its department; returns the PEFT model."""
    from peft import PeftConfig, PeftModel

    check_adapter_files(artifact.path)
    PeftConfig.from_pretrained(str(artifact.path))  # a bad config fails here, before any change
    if isinstance(model, PeftModel):
        try:
            model.load_adapter(str(artifact.path), adapter_name=artifact.department)
        except Exception:
            if artifact.department in model.peft_config:
                model.delete_adapter(artifact.department)
            raise
        return model
    return PeftModel.from_pretrained(model, str(artifact.path), adapter_name=artifact.department).eval()


def check_adapter_files(path: Path) -> None:
    from safetensors import safe_open

    if not path.is_dir():
        raise FileNotFoundError("the directory does not exist")
    json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    weights = path / "adapter_model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        if not list(handle.keys()):
            raise ValueError(f"{weights} holds no tensors")


def tokenizer_for(path: Path, fallback: Any) -> Any:
    from transformers import AutoTokenizer

    if (path / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(path)
    return fallback


