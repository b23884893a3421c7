"""One department end to end: train → register candidate → evaluate → promotion gate."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.departments import BASE
from inference.artifacts import attach_adapter, load_causal_lm, pick_device, tokenizer_for
from inference.registry import Artifact
from training import dpo, full, lora
from training.datasets import department_files, load_eval, load_preferences, load_sft
from training.evaluation import Evaluation, evaluate, write_report
from training.job import TrainingJob, TrainingResult, count_parameters, load_tokenizer
from training.promotion import Decision, ModelVersion, live_version, promote, register_candidate
from training.recipe import Recipe

METHODS = {"full": full.train, "lora": lora.train, "qlora": lora.train, "dpo": dpo.train}
TRAINING_RECORD = "training.json"  # written into a run directory once training finished


@dataclass(frozen=True)
class Plan:
    """What `--dry-run` prints."""

    department: str
    method: str
    trainable_params: int
    total_params: int
    examples: int
    steps: int
    seconds_per_step: float

    @property
    def estimated_seconds(self) -> float:
        return self.steps * self.seconds_per_step


@dataclass(frozen=True)
class Outcome:
    department: str
    result: TrainingResult
    version: ModelVersion
    base: Evaluation
    trained: Evaluation
    decision: Decision
    report: Path
    run_dir: Path


def make_job(
    department: str, recipe: Recipe, base_model: str, models_dir: Path, system_prompts: dict[str, str],
    *, resume: bool = False, show_progress: bool = True, data_dir: Path | None = None,
) -> TrainingJob:
    files = department_files(department, data_dir) if data_dir else department_files(department)
    preferences = load_preferences(files.preference) if recipe.method == "dpo" else []
    run_dir = _resumable_run(models_dir, department, recipe.method) if resume else None
    if run_dir is None:
        run_dir = models_dir / department / f"{recipe.method}-{time.strftime('%Y%m%d-%H%M%S')}"
    return TrainingJob(
        department=department,
        base_model=recipe.base or base_model,
        system_prompt=system_prompts.get(department, system_prompts[BASE]),
        train=[*load_sft(files.train), *(load_sft(files.paraphrases) if files.paraphrases.exists() else [])],
        recipe=recipe,
        run_dir=run_dir,
        preferences=preferences,
        resume=resume,
        show_progress=show_progress,
    )


def plan(job: TrainingJob) -> Plan:
    """Parameters and step count, and a time estimate from one timed forward+backward pass."""
    from training.examples import sft_dataset
    from training.examples import padding_collator

    recipe = job.recipe
    model = (full.build_model if recipe.method == "full" else lora.build_model)(job)
    tokenizer = load_tokenizer(job.base_model)
    dataset = sft_dataset(tokenizer, job.system_prompt, job.train, recipe.max_length)
    per_step = recipe.batch_size * recipe.gradient_accumulation
    steps = math.ceil(len(dataset) / per_step) * math.ceil(recipe.epochs)
    batch = padding_collator(tokenizer)([dataset[i] for i in range(min(recipe.batch_size, len(dataset)))])
    model.train()
    inputs = {k: v.to(model.device) for k, v in batch.items()}
    model(**inputs).loss.backward()  # the first pass pays one-off allocation costs
    started = time.perf_counter()
    model(**inputs).loss.backward()
    seconds = (time.perf_counter() - started) * recipe.gradient_accumulation
    if recipe.method == "dpo":
        # Each DPO step scores chosen and rejected with the policy and the reference.
        pairs_steps = math.ceil(len(job.preferences) / recipe.dpo_batch_size) * math.ceil(recipe.dpo_epochs)
        seconds_total = steps * seconds + pairs_steps * seconds * 3 * recipe.dpo_batch_size / recipe.batch_size
        steps += pairs_steps
        seconds = seconds_total / steps
    trainable, total = count_parameters(model)
    return Plan(job.department, recipe.method, trainable, total, len(dataset), steps, seconds)


def train_department(
    job: TrainingJob, models_dir: Path, reports_dir: Path, *, force: bool = False, device: str = "auto",
    on_progress: Any = None,
) -> Outcome:
    result = METHODS[job.recipe.method](job)
    (job.run_dir / TRAINING_RECORD).write_text(json.dumps({
        "department": job.department, "recipe": job.recipe.model_dump(), "base_model": job.base_model,
        "kind": result.kind, "stages": [asdict(s) for s in result.stages],
        "trainable_params": result.trainable_params, "total_params": result.total_params,
    }, indent=2), encoding="utf-8")
    artifact = Artifact(job.department, result.kind, result.artifact)
    base_eval, trained_eval = evaluate_pair(job.department, job.base_model, artifact, job.system_prompt,
                                            device=device, on_progress=on_progress)
    version = ModelVersion(
        kind=result.kind,
        path=str(result.artifact.relative_to(models_dir)),
        method=job.recipe.method,
        accuracy=trained_eval.accuracy,
        base_accuracy=base_eval.accuracy,
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        base_model=job.base_model,
    )
    register_candidate(models_dir, job.department, version)
    decision = promote(models_dir, job.department, version, force=force)
    report = write_report(reports_dir, job.department, [base_eval, trained_eval],
                          {"run": str(job.run_dir), "promoted": decision.promoted, "decision": decision.reason})
    return Outcome(job.department, result, version, base_eval, trained_eval, decision, report, job.run_dir)


def evaluate_pair(
    department: str, base_model: str, artifact: Artifact | None, system_prompt: str, *,
    device: str = "auto", data_dir: Path | None = None, on_progress: Any = None,
) -> tuple[Evaluation, Evaluation | None]:
    """The base model and (if given) a trained artifact on the department's eval.jsonl."""
    files = department_files(department, data_dir) if data_dir else department_files(department)
    records = load_eval(files.eval)
    device = pick_device(device)
    tokenizer = load_tokenizer(base_model)
    base = load_causal_lm(base_model, device)
    base_eval = evaluate(base, tokenizer, system_prompt, records, "base", on_batch=on_progress)
    if artifact is None:
        return base_eval, None
    if artifact.kind == "adapter":
        model = attach_adapter(base, artifact)
    else:
        model = load_causal_lm(artifact.path, device)
        tokenizer = tokenizer_for(artifact.path, tokenizer)
    label = f"{artifact.kind} {artifact.path.parent.name}"
    return base_eval, evaluate(model, tokenizer, system_prompt, records, label, on_batch=on_progress)


def live_artifact(models_dir: Path, department: str) -> Artifact | None:
    version = live_version(models_dir, department)
    return Artifact(department, version.kind, models_dir / version.path) if version else None


def _resumable_run(models_dir: Path, department: str, method: str) -> Path | None:
    """The newest run of this method that has not finished."""
    runs = sorted((models_dir / department).glob(f"{method}-*"))
    unfinished = [run for run in runs if not (run / TRAINING_RECORD).exists()]
    return unfinished[-1] if unfinished else None
