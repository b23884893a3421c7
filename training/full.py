"""Full fine-tuning: every weight trains; the artifact is a complete model directory."""

from __future__ import annotations

from typing import Any

from training.examples import IGNORE_INDEX, sft_dataset
from training.job import TrainingJob, TrainingResult, count_parameters, load_tokenizer
from training.runner import train_with_progress, training_arguments, use_cuda


def build_model(job: TrainingJob) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if use_cuda() else torch.float32
    return AutoModelForCausalLM.from_pretrained(job.base_model, dtype=dtype)


def train(job: TrainingJob) -> TrainingResult:
    from transformers import DataCollatorForSeq2Seq, Trainer

    tokenizer = load_tokenizer(job.base_model)
    model = build_model(job)
    recipe = job.recipe
    trainer = Trainer(
        model=model,
        args=training_arguments(
            recipe, job.run_dir, epochs=recipe.epochs, learning_rate=recipe.learning_rate,
            batch_size=recipe.batch_size,
        ),
        train_dataset=sft_dataset(tokenizer, job.system_prompt, job.train, recipe.max_length),
        data_collator=padding_collator(tokenizer),
    )
    stage = train_with_progress(trainer, f"{job.department} full", resume=job.resume, show_progress=job.show_progress)
    trainer.save_model(str(job.artifact_dir))
    tokenizer.save_pretrained(job.artifact_dir)
    trainable, total = count_parameters(model)
    return TrainingResult(job.artifact_dir, "full", [stage], trainable, total)


def padding_collator(tokenizer: Any) -> Any:
    """Pads each batch to its own longest example; padded labels are ignored by the loss."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX)
