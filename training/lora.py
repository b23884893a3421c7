"""LoRA, and QLoRA = LoRA over a 4-bit NF4 base (bitsandbytes).

The adapter is saved alone (PEFT safetensors) and served over the full-precision
base: a QLoRA adapter learned its corrections against 4-bit weights, and the
small mismatch on the fp32 base is the usual, documented QLoRA trade-off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.job import ARTIFACT, TrainingJob, TrainingResult, count_parameters, load_tokenizer
from training.runner import StageResult, frozen_weights_dtype, sft_trainer, train_with_progress, use_cuda


def build_model(job: TrainingJob) -> Any:
    """The base (4-bit when the recipe says qlora) with fresh trainable LoRA weights."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    recipe = job.recipe
    compute_dtype = frozen_weights_dtype(recipe)
    if recipe.method == "qlora":
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
        model = AutoModelForCausalLM.from_pretrained(
            job.base_model, quantization_config=quantization, dtype=compute_dtype,
            device_map={"": "cuda" if use_cuda() else "cpu"},
        )
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(job.base_model, dtype=compute_dtype)
    config = LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        # "all-linear" lets PEFT find the linear layers of whatever architecture this is.
        target_modules=recipe.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def train_adapter(job: TrainingJob, stage_dir: Path) -> tuple[Any, StageResult]:
    """Supervised fine-tuning of a new adapter; checkpoints and adapter go under `stage_dir`."""
    tokenizer = load_tokenizer(job.base_model)
    model = build_model(job)
    trainer = sft_trainer(job, model, tokenizer, stage_dir)
    label = f"{job.department} {'qlora' if job.recipe.method == 'qlora' else 'lora'}"
    stage = train_with_progress(trainer, label, resume=job.resume, show_progress=job.show_progress)
    model.save_pretrained(str(stage_dir / ARTIFACT))
    return model, stage


def train(job: TrainingJob) -> TrainingResult:
    model, stage = train_adapter(job, job.run_dir)
    trainable, total = count_parameters(model)
    return TrainingResult(job.artifact_dir, "adapter", [stage], trainable, total)
