"""One department end to end: train → register candidate → evaluate → promotion gate."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.company import BASE
from core.messages import Grounding
from inference.artifacts import attach_adapter, load_causal_lm, pick_device, tokenizer_for
from inference.llamacpp import GgufServing
from inference.registry import Artifact
from knowledge.library import DepartmentKnowledge, load_department
from training import dpo, full, lora
from training.datasets import (
    DATA_DIR,
    department_files,
    load_eval,
    load_not_covered,
    load_preferences,
    load_sft,
)
from training.evaluation import (
    Answerer,
    Evaluation,
    Question,
    eval_questions,
    evaluate,
    not_covered_questions,
    retrieval_recall,
    torch_answers,
    write_report,
)
from training.examples import plain_examples, plain_preferences, user_text
from training.grounding import Grounder, GroundingPlan
from training.job import TrainingJob, TrainingResult, count_parameters, load_tokenizer
from training.promotion import Decision, ModelVersion, live_version, promote, register_candidate
from training.recipe import Recipe
from training.scoring import contains_all

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
    evaluations: list[Evaluation]
    # With llama.cpp serving, `base` and `trained` are the GGUFs' scores and this is the trained
    # model's before conversion.
    unconverted: Evaluation | None = None


def make_job(
    department: str, recipe: Recipe, base_model: str, models_dir: Path, system_prompts: dict[str, str],
    *, resume: bool = False, show_progress: bool = True, data_dir: Path | None = None,
) -> TrainingJob:
    data_dir = data_dir or DATA_DIR
    files = department_files(department, data_dir)
    records = [*load_sft(files.train), *(load_sft(files.paraphrases) if files.paraphrases.exists() else [])]
    preference_records = load_preferences(files.preference) if recipe.method == "dpo" else []
    knowledge = load_department(data_dir, department) if recipe.grounding else None
    if knowledge is not None:
        plan = GroundingPlan(recipe.grounding_k, recipe.grounding_no_oracle_share, recipe.grounding_order, recipe.seed,
                             recipe.grounding_answer)
        grounder = Grounder(knowledge, plan)
        outside = load_not_covered(files.not_covered) if files.not_covered.exists() else []
        examples = grounder.examples(records, [user_text(r.instruction, r.input) for r in outside])
        preferences = grounder.preferences(preference_records)
    else:
        examples, preferences = plain_examples(records), plain_preferences(preference_records)
    run_dir = _resumable_run(models_dir, department, recipe.method) if resume else None
    if run_dir is None:
        run_dir = models_dir / department / f"{recipe.method}-{time.strftime('%Y%m%d-%H%M%S')}"
    return TrainingJob(
        department=department,
        base_model=recipe.base or base_model,
        system_prompt=system_prompts.get(department, system_prompts[BASE]),
        examples=examples,
        recipe=recipe,
        run_dir=run_dir,
        preferences=preferences,
        resume=resume,
        show_progress=show_progress,
        knowledge=knowledge,
    )


def plan(job: TrainingJob) -> Plan:
    """Parameters and step count, and a time estimate from one timed forward+backward pass."""
    from training.examples import padding_collator, sft_dataset

    recipe = job.recipe
    model = (full.build_model if recipe.method == "full" else lora.build_model)(job)
    tokenizer = load_tokenizer(job.base_model)
    dataset = sft_dataset(tokenizer, job.system_prompt, job.examples, recipe.max_length)
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
    on_progress: Any = None, gguf: GgufServing | None = None,
) -> Outcome:
    """Train, register the candidate, score it, and promote it if it passes the gate.

    With `gguf` (llama.cpp serves), the model is also converted and scored as a GGUF;
    the gate then compares what will serve, and a conversion that loses more than one
    question's worth of fact accuracy is not promoted.
    """
    result = METHODS[job.recipe.method](job)
    (job.run_dir / TRAINING_RECORD).write_text(json.dumps({
        "department": job.department, "recipe": job.recipe.model_dump(), "base_model": job.base_model,
        "kind": result.kind, "stages": [asdict(s) for s in result.stages],
        "trainable_params": result.trainable_params, "total_params": result.total_params,
    }, indent=2), encoding="utf-8")
    artifact = Artifact(job.department, result.kind, result.artifact)
    # Scored the way it will serve: with grounding when it was trained with it.
    suite = EvalSuite.load(job.department, job.knowledge, k=job.recipe.grounding_k)
    grounded = job.knowledge is not None
    evaluations = evaluate_models(suite, job.base_model, artifact, job.system_prompt, modes=(grounded,),
                                  device=device, on_progress=on_progress)
    base_eval, trained_eval = _facts(evaluations)
    unconverted, refused = None, None
    if gguf is not None:
        served = evaluate_gguf(suite, job.base_model, artifact, job.system_prompt, gguf, modes=(grounded,),
                               on_progress=on_progress)
        evaluations += served
        unconverted, (base_eval, trained_eval) = trained_eval, _facts(served)
        refused = conversion_verdict(unconverted, trained_eval, gguf.quant)
    version = ModelVersion(
        kind=result.kind,
        path=str(result.artifact.relative_to(models_dir)),
        method=job.recipe.method,
        accuracy=trained_eval.accuracy,
        base_accuracy=base_eval.accuracy,
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        base_model=job.base_model,
        gguf=gguf.quant if gguf else None,
        unconverted_accuracy=unconverted.accuracy if unconverted else None,
    )
    register_candidate(models_dir, job.department, version)
    decision = refused if refused and not force else promote(models_dir, job.department, version, force=force)
    report = write_report(reports_dir, job.department, evaluations,
                          {"run": str(job.run_dir), "promoted": decision.promoted, "decision": decision.reason,
                           **suite.retrieval_summary()})
    return Outcome(job.department, result, version, base_eval, trained_eval, decision, report, job.run_dir,
                   evaluations, unconverted)


def conversion_verdict(unconverted: Evaluation, converted: Evaluation, quant: str) -> Decision | None:
    """A refusal when the GGUF answers fewer questions right than the model it came from.

    One question of slack: greedy decoding flips near-tied answers both ways under
    float-level differences, so one question either way is noise, two are a loss.
    """
    slack = 1 / max(1, len(converted.answers))
    if converted.accuracy >= unconverted.accuracy - slack - 1e-9:
        return None
    return Decision(False, f"as a {quant} GGUF it scores {converted.accuracy:.1%} vs {unconverted.accuracy:.1%} "
                           "before conversion; kept as a candidate (a wider type keeps more: "
                           "SWITCHBOARD_LLAMACPP_QUANT=f16, or f32, which is exact; --force promotes anyway)")


def _facts(evaluations: Sequence[Evaluation]) -> tuple[Evaluation, Evaluation]:
    """The base's and the trained model's scores on the answerable questions."""
    base, trained = (e for e in evaluations if e.questions == "facts")
    return base, trained


@dataclass(frozen=True)
class EvalSuite:
    """What a department is scored on: its questions, and the handbook that grounds them."""

    department: str
    questions: list[Question]
    not_covered: list[Question]  # answered right by the "not covered" reply
    knowledge: DepartmentKnowledge | None
    k: int = 3

    @classmethod
    def load(cls, department: str, knowledge: DepartmentKnowledge | None, *, k: int = 3,
             data_dir: Path | None = None, questions: list[Question] | None = None) -> EvalSuite:
        """eval.jsonl (or the given questions) and not_covered_eval.jsonl of the department."""
        files = department_files(department, data_dir or DATA_DIR)
        if questions is None:
            questions = eval_questions(load_eval(files.eval))
        outside = not_covered_questions(load_not_covered(files.not_covered_eval)) \
            if files.not_covered_eval.exists() else []
        return cls(department, questions, outside, knowledge, k)

    def ground(self, question: str) -> Grounding:
        assert self.knowledge is not None
        entries = self.knowledge.index.search(question, self.k)
        return Grounding(tuple(entries), self.knowledge.not_covered)

    def recall(self) -> float | None:
        """Share of questions whose fact is among the k entries retrieved (None: no fact named)."""
        if self.knowledge is None:
            return None
        return retrieval_recall(self.knowledge.index.search, self.questions, self.k)

    def quote_accuracy(self) -> float | None:
        """What an untrained department serves (pipeline.quotes.HandbookQuotes): the share of
        questions whose best entry holds every expected string."""
        if self.knowledge is None or not self.questions:
            return None
        best = [self.knowledge.index.search(q.text, 1)[0].text for q in self.questions]
        return sum(contains_all(text, q.expected) for text, q in zip(best, self.questions, strict=True)) / len(best)

    def retrieval_summary(self) -> dict[str, Any]:
        recall = self.recall()
        summary = {} if recall is None else {"retrieval": {"k": self.k, "recall": recall}}
        quote = self.quote_accuracy()
        return summary if quote is None else {**summary, "handbook_quote_accuracy": quote}


def evaluate_models(
    suite: EvalSuite, base_model: str, artifact: Artifact | None, system_prompt: str, *,
    modes: Sequence[bool] = (False, True), device: str = "auto", on_progress: Any = None,
) -> list[Evaluation]:
    """The base model, then the artifact (if any), each in every mode (False: plain prompt,
    True: grounded; grounded modes are also scored on the questions the handbook does not cover)."""
    device = pick_device(device)
    tokenizer = load_tokenizer(base_model)
    base = load_causal_lm(base_model, device)

    def score(label: str, model: Any, model_tokenizer: Any) -> list[Evaluation]:
        done = []
        for grounded in modes:
            if grounded and suite.knowledge is None:
                continue
            answer = torch_answers(model, model_tokenizer)
            done += _scored(suite, answer, model_tokenizer, system_prompt, label, grounded, on_progress)
        return done

    evaluations = score("base", base, tokenizer)  # before an adapter wraps the base in place
    if artifact is None:
        return evaluations
    label = f"{artifact.kind} {artifact.path.parent.name}"
    if artifact.kind == "adapter":
        return evaluations + score(label, attach_adapter(base, artifact), tokenizer)
    return evaluations + score(label, load_causal_lm(artifact.path, device), tokenizer_for(artifact.path, tokenizer))


def evaluate_gguf(
    suite: EvalSuite, base_model: str, artifact: Artifact | None, system_prompt: str, serving: GgufServing, *,
    modes: Sequence[bool] = (True,), on_progress: Any = None,
) -> list[Evaluation]:
    """As evaluate_models, but as the llama.cpp runtime serves: the base GGUF, then the
    artifact converted to GGUF (written beside it, as serving would)."""
    from inference.llamacpp import gguf_answers

    tokenizer = load_tokenizer(base_model)
    models = [("base", serving.served_base(base_model), tokenizer)]
    if artifact is not None:
        models.append((f"{artifact.kind} {artifact.path.parent.name}", serving.artifact(artifact.kind, artifact.path,
                       base_model), tokenizer_for(artifact.path, tokenizer)))
    evaluations = []
    for label, path, model_tokenizer in models:
        engine = serving.open(path, name=f"eval-{label}")
        answer = gguf_answers(engine, model_tokenizer)
        label = f"{label} (llama.cpp {path.name})"
        for grounded in modes:
            if not grounded or suite.knowledge is not None:
                evaluations += _scored(suite, answer, model_tokenizer, system_prompt, label, grounded, on_progress)
        engine.close(drain=True)
        engine.join()
    return evaluations


def _scored(suite: EvalSuite, answer: Answerer, tokenizer: Any, system_prompt: str, label: str, grounded: bool,
            on_progress: Any) -> list[Evaluation]:
    """The suite's questions (and, grounded, the questions its handbook does not cover)."""
    ground = suite.ground if grounded else None
    done = [evaluate(answer, tokenizer, system_prompt, suite.questions, label, on_batch=on_progress, ground=ground)]
    if grounded and suite.not_covered:
        done.append(evaluate(answer, tokenizer, system_prompt, suite.not_covered, label, on_batch=on_progress,
                             ground=ground, kind="not_covered"))
    return done


def live_artifact(models_dir: Path, department: str) -> Artifact | None:
    version = live_version(models_dir, department)
    return Artifact(department, version.kind, models_dir / version.path) if version else None


def _resumable_run(models_dir: Path, department: str, method: str) -> Path | None:
    """The newest run of this method that has not finished."""
    runs = sorted((models_dir / department).glob(f"{method}-*"))
    unfinished = [run for run in runs if not (run / TRAINING_RECORD).exists()]
    return unfinished[-1] if unfinished else None
