"""Full fine-tuning: every weight trains; the artifact is a complete model directory."""

from __future__ import annotations

from typing import Any

from training.job import TrainingJob, TrainingResult, count_parameters, load_tokenizer
from training.runner import sft_trainer, train_with_progress


def build_model(job: TrainingJob) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    # fp32 master weights even on CUDA: the Trainer's bf16 autocast gives the speed, and
    # pure-bf16 weights would round away the small AdamW updates of late, low-lr steps.
    return AutoModelForCausalLM.from_pretrained(job.base_model, dtype=torch.float32)


def train(job: TrainingJob) -> TrainingResult:
    tokenizer = load_tokenizer(job.base_model)
    model = build_model(job)
    trainer = sft_trainer(job, model, tokenizer, job.run_dir)
    stage = train_with_progress(trainer, f"{job.department} full", resume=job.resume, show_progress=job.show_progress)
    trainer.save_model(str(job.artifact_dir))
    tokenizer.save_pretrained(job.artifact_dir)
    trainable, total = count_parameters(model)
    return TrainingResult(job.artifact_dir, "full", [stage], trainable, total)
