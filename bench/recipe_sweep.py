"""Which recipe teaches a department best: train and score many recipe variants in one run.

    python -m bench.recipe_sweep --departments hr,sales --variants lora,full-3e-4 [--workers 4]

Each (department, variant) trains with the project's own methods (`training/`), on
the department's train + paraphrase records, and is scored like `switchboard eval`:
fact accuracy on eval.jsonl, beside the base model's, with handbook entries in the
prompt when the recipe grounds (and then also the share of not_covered_eval.jsonl
questions answered "not covered"). Jobs run in worker processes,
so on a GPU a whole grid (five departments, several variants) takes minutes; on
this CPU a single LoRA job takes about 26 minutes. One JSON line per job goes to
`--out` as soon as it finishes, then a table prints base vs each variant. The
H200 run quoted in the README (Training) took under 10 minutes with 7-10 workers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.company import load_company

DEPARTMENTS = load_company().ids  # the bundled example company

LORA = {"method": "lora", "lora_r": 32, "lora_alpha": 64, "learning_rate": 2e-3}

# Named overrides on each department's own recipe ("recipe" = the recipe as it is).
VARIANTS: dict[str, dict[str, Any]] = {
    "recipe": {},
    "lora": LORA,
    "lora-neftune": {**LORA, "neftune_noise_alpha": 5.0},
    "lora-r64": {**LORA, "lora_r": 64, "lora_alpha": 128, "learning_rate": 1e-3},
    "lora-lr1e-3": {**LORA, "learning_rate": 1e-3},
    "lora-6ep": {**LORA, "epochs": 6},
    "lora-10ep": {**LORA, "epochs": 10},
    "full-1e-4": {"method": "full", "learning_rate": 1e-4},
    "full-3e-4": {"method": "full", "learning_rate": 3e-4},
    "full-3e-4-neftune": {"method": "full", "learning_rate": 3e-4, "neftune_noise_alpha": 5.0},
    "full-3e-4-6ep": {"method": "full", "learning_rate": 3e-4, "epochs": 6},
    "full-1e-3": {"method": "full", "learning_rate": 1e-3},
    # Grounding (README, Grounding): the same data without entries, or with RAFT's other choices.
    "plain-full-1e-3": {"method": "full", "learning_rate": 1e-3, "epochs": 3, "grounding": False},
    "record-answers": {"grounding_answer": "record"},
    "shuffled": {"grounding_order": "shuffled"},
    "no-oracle-15": {"grounding_no_oracle_share": 0.15},
    "epochs-2": {"epochs": 2},
}


@dataclass(frozen=True)
class Job:
    department: str
    variant: str  # a VARIANTS key, or "base" for the untrained model
    overrides: dict[str, Any] = field(default_factory=dict)


def run_job(job: Job, base_model: str, work_dir: str, precision: str, threads: int) -> dict[str, Any]:
    """Train (unless base) and evaluate one job in this process; returns one result row."""
    import torch

    from inference.registry import Artifact
    from knowledge.library import load_department
    from training.datasets import DATA_DIR
    from training.department import METHODS, EvalSuite, make_job
    from training.evaluation import evaluate, torch_answers
    from training.job import load_tokenizer
    from training.recipe import default_recipe

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    prompts = load_company().system_prompts()
    prompt = prompts[job.department]
    recipe = default_recipe(load_company().department(job.department)).with_overrides(precision=precision, **job.overrides)
    # Scored as it would serve: with handbook entries in the prompt when the recipe grounds.
    knowledge = load_department(DATA_DIR, job.department) if recipe.grounding else None
    suite = EvalSuite.load(job.department, knowledge, k=recipe.grounding_k)
    row: dict[str, Any] = {"department": job.department, "variant": job.variant, "overrides": job.overrides}
    started = time.perf_counter()
    tokenizer = load_tokenizer(base_model)
    if job.variant == "base":
        model = _load(base_model, device)
    else:
        models_dir = Path(tempfile.mkdtemp(prefix=f"{job.department}-{job.variant}-", dir=work_dir))
        training = make_job(job.department, recipe, base_model, models_dir, prompts, show_progress=False)
        result = METHODS[recipe.method](training)
        stage = result.stages[-1]
        row.update(method=recipe.method, epochs=recipe.epochs, train_seconds=round(time.perf_counter() - started, 1),
                   steps=sum(s.steps for s in result.stages), last_loss=round(stage.last_loss, 4))
        model = _load_artifact(base_model, Artifact(job.department, result.kind, result.artifact), device)
    batch = 64 if device == "cuda" else 16
    ground = suite.ground if knowledge else None
    answer = torch_answers(model, tokenizer)
    evaluation = evaluate(answer, tokenizer, prompt, suite.questions, job.variant, batch_size=batch, ground=ground)
    if ground and suite.not_covered:
        outside = evaluate(answer, tokenizer, prompt, suite.not_covered, job.variant, batch_size=batch, ground=ground,
                           kind="not_covered")
        row.update(not_covered=round(outside.accuracy, 4))
    if job.variant != "base":
        shutil.rmtree(models_dir, ignore_errors=True)
    row.update(accuracy=round(evaluation.accuracy, 4), correct=sum(a.correct for a in evaluation.answers),
               questions=len(evaluation.answers), seconds=round(time.perf_counter() - started, 1))
    return row


def _load(path: str | Path, device: str) -> Any:
    # Loaded on CPU (fp32) and then moved, so GPU scores match the CPU serving path's numerics.
    from inference.artifacts import load_causal_lm

    return load_causal_lm(path, "cpu").to(device)


def _load_artifact(base_model: str, artifact: Any, device: str) -> Any:
    from inference.artifacts import attach_adapter

    if artifact.kind == "full":
        return _load(artifact.path, device)
    return attach_adapter(_load(base_model, device), artifact)


def _run_job_star(arguments: tuple) -> dict[str, Any]:
    try:
        return run_job(*arguments)
    except Exception as error:  # noqa: BLE001 (one failed variant must not lose the others' results)
        job = arguments[0]
        return {"department": job.department, "variant": job.variant, "error": f"{type(error).__name__}: {error}"}


def plan_jobs(departments: list[str], variants: list[str], epochs: float | None = None) -> list[Job]:
    """Base scores first, then variant by variant across departments (so a cut-short run
    still compares every department on the first variants)."""
    jobs = [Job(d, "base") for d in departments]
    forced = {"epochs": epochs} if epochs else {}
    return jobs + [Job(d, v, {**VARIANTS[v], **forced}) for v in variants for d in departments]


def print_table(rows: list[dict[str, Any]], departments: list[str], variants: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    score = {(r["department"], r["variant"]): r for r in rows if "accuracy" in r}
    table = Table(title="fact accuracy on eval.jsonl (gain over base)")
    table.add_column("variant")
    for department in departments:
        table.add_column(department, justify="right")
    for variant in ["base", *variants]:
        cells = []
        for department in departments:
            row, base = score.get((department, variant)), score.get((department, "base"))
            if row is None:
                cells.append("-")
            elif variant == "base" or base is None:
                cells.append(f"{row['accuracy']:.1%}")
            else:
                cells.append(f"{row['accuracy']:.1%} ({100 * (row['accuracy'] - base['accuracy']):+.1f})")
        table.add_row(variant, *cells)
    Console().print(table)


def main() -> None:
    from inference.base_model import BUNDLED_BASE, resolve_base_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--departments", default=",".join(DEPARTMENTS))
    parser.add_argument("--variants", default="recipe", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--base", default=BUNDLED_BASE, help="base model (default: the bundled SmolLM2)")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("SWITCHBOARD_HOME", "~/.cache/switchboard")))
    parser.add_argument("--workers", type=int, default=1, help="jobs at once (a GPU takes 6-8)")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--epochs", type=float, help="epochs for every variant (a quick smoke run)")
    parser.add_argument("--out", type=Path, default=Path("recipe_sweep.jsonl"))
    args = parser.parse_args()

    departments = args.departments.split(",")
    variants = args.variants.split(",")
    unknown = [d for d in departments if d not in DEPARTMENTS] + [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)} (departments: {', '.join(DEPARTMENTS)}; "
                     f"variants: {', '.join(VARIANTS)})")
    base_model = resolve_base_model(args.base, args.home.expanduser())
    jobs = plan_jobs(departments, variants, args.epochs)
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    work_dir = tempfile.mkdtemp(prefix="recipe-sweep-")
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    print(f"{len(jobs)} jobs on {args.workers} worker(s), {threads} thread(s) each; results -> {args.out}", flush=True)
    # spawn: CUDA cannot be used in a forked child.
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, maxtasksperchild=1) as pool, args.out.open("a", encoding="utf-8") as out:
        arguments = [(job, base_model, work_dir, args.precision, threads) for job in jobs]
        for row in pool.imap_unordered(_run_job_star, arguments):
            rows.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
            status = f"{row['accuracy']:.1%}" if "accuracy" in row else row["error"]
            print(f"[{len(rows)}/{len(jobs)} {time.perf_counter() - started:6.0f}s] "
                  f"{row['department']} {row['variant']}: {status}", flush=True)
    shutil.rmtree(work_dir, ignore_errors=True)
    print_table(rows, departments, variants)


if __name__ == "__main__":
    main()
