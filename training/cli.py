"""`switchboard prepare | train | eval | models rollback`: mounted into the main command line.

The one training module that knows the app's settings; serving code never imports training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli_common import (
    DataOption,
    check_department,
    cli_settings,
    console,
    departments_of,
    eval_progress,
    fail,
    resolved_base,
)
from gateway.settings import Settings


def prepare(data: DataOption = None) -> None:
    """Everything serving needs, done once: the base model converted (about 30 s, 10 s more to GGUF when
    llama.cpp serves) and the router trained if there is none for these departments (seconds)."""
    from inference.base_model import BaseModelError, resolve_base_model

    settings = cli_settings(data)
    try:
        path = resolve_base_model(settings.base_model, settings.home, show_progress=True)
    except BaseModelError as error:
        fail(str(error))
    console.print(f"base model ready: {path}")
    gguf = settings.gguf_serving()
    if gguf is not None:
        with console.status(f"Converting the base model to {gguf.quant} GGUF for llama.cpp (about 10 s)..."):
            served = gguf.served_base(path)
        console.print(f"llama.cpp serves it from {served}")
    if settings.router == "learned":
        _prepare_router(settings)


def _prepare_router(settings: Settings) -> None:
    """Train the router unless one for these departments is there; a broken one is reported, not replaced."""
    from router.learned import ROUTER_SUBDIR, RouterArtifactError, RouterForOtherDepartments, load_learned_router

    directory = settings.models_path / ROUTER_SUBDIR
    try:
        load_learned_router(directory, settings.company().targets)
        console.print(f"router ready: {directory}")
        return
    except RouterForOtherDepartments as error:
        console.print(f"{error}; training a new one")
    except RouterArtifactError as error:
        if directory.exists():
            fail(f"{error}; fix it or run `switchboard train router` to replace it")
    _train_router(settings)


def train(
    target: Annotated[str, typer.Argument(help="A department, 'all', or 'router'.")],
    method: Annotated[str | None, typer.Option(help="full, lora, qlora or dpo (default: the recipe's).")] = None,
    base: Annotated[str | None, typer.Option(help="Base model to train on (default: base_model setting).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (default: the recipe's).")] = None,
    recipe_file: Annotated[Path | None, typer.Option("--recipe", help="Recipe YAML (default: the department's "
                                                     "recipe in departments.yaml, else LoRA).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print parameters, steps and estimated time; do not train.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the last unfinished run from its checkpoint.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Promote even if accuracy is below the live model's.")] = False,
    data: DataOption = None,
) -> None:
    """Train department models (evaluated, then promoted if they are at least as good)."""
    from training.recipe import RecipeError, default_recipe, load_recipe

    settings = cli_settings(data)
    if target == "router":
        _train_router(settings)
        return
    departments = departments_of(target, settings)
    base_model = resolved_base(settings)
    if target == "all":
        _train_router(settings)
    for department in departments:
        try:
            recipe = load_recipe(recipe_file) if recipe_file else default_recipe(settings.company().department(department))
            recipe = recipe.with_overrides(method=method, base=base and resolved_base(settings, base), epochs=epochs)
        except RecipeError as error:
            fail(str(error), 2)
        _train_one(settings, department, recipe, base_model, dry_run=dry_run, resume=resume, force=force)
        _release_models()


def _release_models() -> None:
    """Free the last department's models before the next one trains. The Trainer and its model
    refer to each other, so they outlive the department until a full cyclic collection (the likely
    reason `train all` grew to about 10 GB)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_one(settings: Settings, department: str, recipe, base_model: str, *,
               dry_run: bool, resume: bool, force: bool) -> None:
    from training.department import make_job, plan, train_department

    prompts = settings.company().system_prompts(settings.system_prompts)
    job = make_job(department, recipe, base_model, settings.models_path, prompts, resume=resume,
                   data_dir=settings.data_path)
    if dry_run:
        estimate = plan(job)
        print(json.dumps({
            "department": department, "method": recipe.method, "trainable_params": estimate.trainable_params,
            "total_params": estimate.total_params,
            "trainable_percent": round(100 * estimate.trainable_params / estimate.total_params, 3),
            "examples": estimate.examples, "steps": estimate.steps,
            "estimated_minutes": round(estimate.estimated_seconds / 60, 1),
        }))
        return
    console.print(f"[bold]{department}[/bold]: {recipe.method} on {job.base_model} -> {job.run_dir}")
    with eval_progress() as on_progress:
        outcome = train_department(job, settings.models_path, settings.home / "reports", force=force,
                                   device=settings.device, on_progress=on_progress, gguf=settings.gguf_serving())
    seconds = sum(stage.seconds for stage in outcome.result.stages)
    verdict = "[green]promoted[/green]" if outcome.decision.promoted else "[yellow]not promoted[/yellow]"
    served = ""
    if outcome.unconverted is not None:
        served = f" as served by llama.cpp ({outcome.version.gguf}; {outcome.unconverted.accuracy:.1%} before conversion)"
    console.print(
        f"{department}: trained in {seconds / 60:.1f} min; fact accuracy base {outcome.base.accuracy:.1%} -> "
        f"trained {outcome.trained.accuracy:.1%}{served}; {verdict} ({outcome.decision.reason}); "
        f"report {outcome.report}"
    )


def evaluate(
    target: Annotated[str, typer.Argument(help="A department, 'all', or 'router'.")],
    file: Annotated[Path | None, typer.Option("--file", help="Score these questions (JSON, JSONL or CSV with "
                                              "instruction and expected) instead of eval.jsonl.")] = None,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="Column mapping for --file, e.g. instruction=question.")
    ] = None,
    data: DataOption = None,
) -> None:
    """Fact accuracy of the base and the live model, each with and without grounding, and retrieval recall."""
    from knowledge.library import load_department
    from training.datasets import load_questions
    from training.department import EvalSuite, evaluate_gguf, evaluate_models, live_artifact
    from training.evaluation import eval_questions, write_report
    from training.records import DatasetError

    settings = cli_settings(data)
    if target == "router":
        _eval_router(settings)
        return
    departments = departments_of(target, settings)
    if file is not None and len(departments) != 1:
        fail("--file scores one department's questions: name the department, not 'all'", 2)
    questions = None
    if file is not None:
        try:
            questions = eval_questions(load_questions(file, mapping))
        except (DatasetError, ValueError) as error:
            fail(f"{file}: {error}", 2)
    base_model = resolved_base(settings)
    prompts = settings.company().system_prompts(settings.system_prompts)
    k = settings.grounding_k
    gguf = settings.gguf_serving()
    served = [f"served: llama.cpp {gguf.quant} + grounding"] if gguf else []
    table = Table("department", "base", "base + grounding", "handbook quote", "live", "live + grounding", *served,
                  f"recall@{k}", "not covered", "live model")
    for department in departments:
        artifact = live_artifact(settings.models_path, department)
        try:
            knowledge = load_department(settings.data_path, department)
            suite = EvalSuite.load(department, knowledge, k=k, data_dir=settings.data_path, questions=questions)
        except (DatasetError, OSError, ValueError) as error:
            fail(f"{department}: {error}")
        with eval_progress() as on_progress:
            evaluations = evaluate_models(suite, base_model, artifact, prompts[department],
                                          device=settings.device, on_progress=on_progress)
            converted = [] if gguf is None else evaluate_gguf(suite, base_model, artifact, prompts[department], gguf,
                                                              on_progress=on_progress)
        retrieval = suite.retrieval_summary()
        report = write_report(settings.home / "reports", department, evaluations + converted,
                              {"base_model": base_model, "questions": str(file or "eval.jsonl"), **retrieval})
        console.print(f"{department}: report {report}")
        scores = {(e.label == "base", e.grounded, e.questions): f"{e.accuracy:.1%}" for e in evaluations}
        recall, quote = retrieval.get("retrieval", {}).get("recall"), retrieval.get("handbook_quote_accuracy")
        table.add_row(
            department, scores.get((True, False, "facts"), "-"), scores.get((True, True, "facts"), "-"),
            "-" if quote is None else f"{quote:.1%}",
            scores.get((False, False, "facts"), "-"), scores.get((False, True, "facts"), "-"),
            # What answers in chat: the live GGUF (or the base's, with no live model).
            *([_served_score(converted)] if gguf else []),
            "-" if recall is None else f"{recall:.1%}",
            # How often the grounded model (the live one, else base) says a question outside the handbook is so.
            scores.get((artifact is None, True, "not_covered"), "-"),
            str(artifact.path.relative_to(settings.models_path)) if artifact else "(none: base)",
        )
    Console().print(table)


def _served_score(converted: list) -> str:
    """Fact accuracy of the model llama.cpp serves: the live GGUF's, else the base's (evaluate_gguf's last)."""
    return f"{[e for e in converted if e.questions == 'facts'][-1].accuracy:.1%}"


def _train_router(settings: Settings) -> None:
    from router.learned import ROUTER_SUBDIR
    from training.router_training import train_router

    with console.status("Training the router..."):
        report = train_router(settings.data_path, out_dir=settings.models_path / ROUTER_SUBDIR)
    evaluation = report.evaluation
    console.print(
        f"router ({report.method}) trained in {report.train_seconds:.1f} s on {report.n_train} messages: "
        f"held-out departments {evaluation.department_accuracy:.1%}, out-of-scope to base "
        f"{evaluation.out_of_scope_to_base:.1%}{_field_summary(evaluation)}; threshold {report.threshold:.2f} "
        f"-> {report.directory}"
    )


def _field_summary(evaluation) -> str:
    if evaluation.field_department_accuracy is None:
        return ""
    outside = evaluation.field_out_of_scope_to_base
    return (f"; field split ({evaluation.n_field}): departments {evaluation.field_department_accuracy:.1%}"
            + ("" if outside is None else f", out-of-scope to base {outside:.1%}")
            + f"; both held-out sets: departments {evaluation.all_department_accuracy:.1%}, out-of-scope to base "
              f"{evaluation.all_out_of_scope_to_base:.1%}")


def _eval_router(settings: Settings) -> None:
    from router.learned import ROUTER_SUBDIR, RouterArtifactError
    from training.router_training import evaluate_router

    try:
        evaluation = evaluate_router(settings.models_path / ROUTER_SUBDIR, settings.data_path)
    except (RouterArtifactError, ValueError) as error:
        fail(f"{error} (run `switchboard train router`)")
    console.print(
        f"router ({evaluation.method}), {evaluation.n_test} held-out messages: departments "
        f"{evaluation.department_accuracy:.1%} right, out-of-scope to base {evaluation.out_of_scope_to_base:.1%}"
        f"{_field_summary(evaluation)}"
    )
    table = Table("true \\ routed", *evaluation.labels, title="confusion matrix")
    for label, row in zip(evaluation.labels, evaluation.confusion, strict=True):
        table.add_row(label, *map(str, row))
    Console().print(table)


def rollback(department: Annotated[str, typer.Argument(help="Department to roll back.")]) -> None:
    """Make the previous version live again (the current one is kept as a candidate)."""
    from training.promotion import RegistryError
    from training.promotion import rollback as roll_back

    settings = cli_settings()
    check_department(department, settings)
    try:
        restored = roll_back(settings.models_path, department)
    except RegistryError as error:
        fail(str(error))
    live = f"{restored.method} {restored.path}" if restored else "the base model"
    console.print(f"{department}: now serving {live}; a running server picks it up within seconds")


def register(app: typer.Typer, models_app: typer.Typer) -> None:
    app.command()(prepare)
    app.command()(train)
    app.command("eval")(evaluate)
    models_app.command("rollback")(rollback)
