"""What every method shares: Trainer arguments, a progress bar, resumable checkpoints."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from training.recipe import Recipe

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class StageResult:
    """One Trainer run: how it went and how fast."""

    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    tokens: int  # non-padding tokens seen


def use_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls are faster than fp32 here, not emulated."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def mixed_precision_bf16(recipe: Recipe) -> bool:
    """Whether the Trainer runs in bf16 (autocast on CPU; master weights stay fp32 there)."""
    if recipe.precision != "auto":
        return recipe.precision == "bf16"
    return use_cuda() or cpu_has_native_bf16()


def frozen_weights_dtype(recipe: Recipe) -> Any:
    """dtype for weights that do not train (the base under LoRA): bf16 only when training runs
    in bf16 on CUDA. Trained weights always stay fp32: AdamW updates are lost in bf16."""
    import torch

    return torch.bfloat16 if use_cuda() and mixed_precision_bf16(recipe) else torch.float32


def training_arguments(
    recipe: Recipe,
    output_dir: Path,
    *,
    epochs: float,
    learning_rate: float,
    batch_size: int,
    config_class: Any = None,
    **extra: Any,
) -> Any:
    """TrainingArguments (or a subclass such as DPOConfig) from a recipe.

    bf16 on CUDA; on CPU bf16 autocast where the CPU has native bf16, else fp32
    (`precision` in the recipe overrides). Checkpoints every epoch, so `--resume` loses at
    most one epoch. Works unchanged under `accelerate launch` (data parallel).
    """
    from transformers import TrainingArguments

    cuda = use_cuda()
    arguments = dict(
        output_dir=str(output_dir / CHECKPOINTS),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation,
        learning_rate=learning_rate,
        warmup_steps=recipe.warmup_ratio,  # a float below 1 is a ratio of all steps
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="epoch",
        save_total_limit=2,
        seed=recipe.seed,
        bf16=mixed_precision_bf16(recipe),
        use_cpu=not cuda,
        report_to="none",
        disable_tqdm=True,  # our own bar shows loss and ETA
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
    )
    return (config_class or TrainingArguments)(**{**arguments, **extra})


def sft_trainer(job: Any, model: Any, tokenizer: Any, stage_dir: Path) -> Any:
    """A Trainer for supervised fine-tuning on the job's records; checkpoints under `stage_dir`."""
    from transformers import Trainer

    from training.examples import padding_collator, sft_dataset

    recipe = job.recipe
    return Trainer(
        model=model,
        args=training_arguments(
            recipe, stage_dir, epochs=recipe.epochs, learning_rate=recipe.learning_rate, batch_size=recipe.batch_size,
            # Batches of similar lengths: ~20% less padding to compute than random batches on our data.
            train_sampling_strategy="group_by_length",
            neftune_noise_alpha=recipe.neftune_noise_alpha or None,
        ),
        train_dataset=sft_dataset(tokenizer, job.system_prompt, job.examples, recipe.max_length),
        data_collator=padding_collator(tokenizer),
    )


def last_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = sorted(
        (run_dir / CHECKPOINTS).glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])
    )
    return checkpoints[-1] if checkpoints else None


def train_with_progress(trainer: Any, label: str, *, resume: bool, show_progress: bool = True) -> StageResult:
    """Run `trainer.train()` under a progress bar with loss and ETA."""
    from transformers.trainer_callback import PrinterCallback

    callback = _ProgressCallback(label, show_progress)
    trainer.remove_callback(PrinterCallback)  # it prints a dict per step under our bar
    trainer.add_callback(callback)
    checkpoint = last_checkpoint(Path(trainer.args.output_dir).parent) if resume else None
    started = time.perf_counter()
    with callback.progress:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return StageResult(
        steps=trainer.state.global_step,
        first_loss=losses[0] if losses else math.nan,
        last_loss=losses[-1] if losses else math.nan,
        seconds=seconds,
        tokens=int(trainer.state.num_input_tokens_seen or 0),
    )


class _ProgressCallback:
    """A rich progress bar driven by Trainer events (duck-typed TrainerCallback)."""

    def __init__(self, label: str, show: bool) -> None:
        self.label = label
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            disable=not show,
        )
        self.task = None

    def on_train_begin(self, args, state, control, **_):
        self.task = self.progress.add_task(self.label, total=state.max_steps, completed=state.global_step, loss="-")

    def on_step_end(self, args, state, control, **_):
        self.progress.update(self.task, completed=state.global_step)
        if self.progress.disable or self.progress.console.is_terminal:
            return
        # Redirected to a file or CI log, a live bar shows nothing until the end: a line per 5%.
        task = self.progress.tasks[0]
        if state.global_step % max(1, state.max_steps // 20) == 0 or state.global_step == state.max_steps:
            eta = f"{task.time_remaining / 60:.1f} min" if task.time_remaining is not None else "?"
            self.progress.console.print(
                f"{self.label}: step {state.global_step}/{state.max_steps}, loss {task.fields['loss']}, "
                f"{task.elapsed / 60:.1f} min elapsed, ETA {eta}", highlight=False,
            )

    def on_log(self, args, state, control, logs=None, **_):
        if logs and "loss" in logs:
            self.progress.update(self.task, loss=f"{logs['loss']:.3f}")

    def __getattr__(self, name: str):
        # Trainer calls every on_* event; the ones we do not need do nothing.
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)
