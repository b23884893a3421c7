"""Each training method end to end on a tiny random Llama and a handful of records."""

import json
from dataclasses import replace

import pytest

from core.company import load_company
from core.messages import Turn
from inference.base import GenerationParams
from inference.chat_format import encode_chat
from inference.local import LocalBackend
from tests.company_folder import write_company_file
from tests.conftest import run
from training import dpo, full, lora
from training.datasets import department_files, load_not_covered, load_preferences, load_sft
from training.department import EvalSuite, evaluate_models, make_job, plan
from training.examples import IGNORE_INDEX, plain_examples, plain_preferences, sft_features, user_text
from training.job import TrainingJob, load_tokenizer
from training.promotion import ModelVersion, promote
from training.recipe import Recipe
from training.records import DatasetError

pytestmark = pytest.mark.slow  # trains models: seconds per test

PROMPTS = load_company().system_prompts()  # the bundled example company
PROMPT = PROMPTS["finance"]
FAST = Recipe(epochs=3, batch_size=4, learning_rate=1e-2, max_length=112, lora_r=8, lora_alpha=16, grounding=False)


@pytest.fixture(scope="module")
def records():
    files = department_files("finance")
    return load_sft(files.train)[:8], load_preferences(files.preference)[:8]


def job_for(method, tiny_model_dir, run_dir, records, **recipe) -> TrainingJob:
    train, preferences = records
    return TrainingJob("finance", str(tiny_model_dir), PROMPT, plain_examples(train),
                       FAST.with_overrides(method=method, **recipe), run_dir, plain_preferences(preferences),
                       show_progress=False)


def served_answer(models_dir, tiny_model_dir, department="finance") -> tuple[str, str]:
    backend = LocalBackend(models_dir, PROMPTS)
    backend.load(str(tiny_model_dir))
    serving = {m.department: m.serving for m in backend.models()}[department]
    text = run(backend.generate(department, [Turn("user", "When is Form 16 issued?")], GenerationParams(max_new_tokens=8)))
    return serving, text.text


def register(models_dir, department, result, method):
    version = ModelVersion(result.kind, str(result.artifact.relative_to(models_dir)), method, 1.0, 0.0, "now", "tiny")
    assert promote(models_dir, department, version).promoted


def test_examples_mask_the_prompt_and_end_the_turn(tiny_model_dir, records):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    example = plain_examples(records[0])[0]
    features = sft_features(tokenizer, PROMPT, example, max_length=512)
    labels = features["labels"]
    answer_start = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    assert tokenizer.decode(features["input_ids"][answer_start:]).startswith(example.answer[:20])
    assert tokenizer.eos_token_id in labels[answer_start:]
    assert sft_features(tokenizer, PROMPT, example, max_length=40) is None  # prompt alone overflows


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_sft_methods_learn_and_the_server_loads_the_result(method, tiny_model_dir, tmp_path, records):
    models_dir = tmp_path / "models"
    _, before = served_answer(models_dir, tiny_model_dir)
    job = job_for(method, tiny_model_dir, models_dir / "finance" / f"{method}-run", records)
    result = {"full": full, "lora": lora, "qlora": lora}[method].train(job)
    stage = result.stages[0]
    assert stage.last_loss < stage.first_loss, stage
    assert stage.steps == 6 and stage.tokens > 0
    register(models_dir, "finance", result, method)
    serving, after = served_answer(models_dir, tiny_model_dir)
    assert serving == ("full" if method == "full" else "adapter")
    assert after != before
    assert 0 < result.trainable_params <= result.total_params


def test_neftune_noise_changes_training_and_still_learns(tiny_model_dir, tmp_path, records):
    plain = lora.train(job_for("lora", tiny_model_dir, tmp_path / "plain", records)).stages[0]
    noisy = lora.train(job_for("lora", tiny_model_dir, tmp_path / "noisy", records, neftune_noise_alpha=5.0)).stages[0]
    # Same seed, data and order: only the embedding noise can make the losses differ.
    assert noisy.first_loss != plain.first_loss
    assert noisy.last_loss < noisy.first_loss, noisy


def test_qlora_really_loads_the_base_in_4_bit(tiny_model_dir, tmp_path, records):
    import bitsandbytes as bnb

    model = lora.build_model(job_for("qlora", tiny_model_dir, tmp_path, records))
    four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit and four_bit[0].weight.quant_state.quant_type == "nf4"


def preference_margin(
    model, tokenizer, system_prompt: str, records
) -> float:
    """Mean over pairs of log p(chosen) - log p(rejected), each given its prompt.

    DPO should raise it; it is what the preference loss pushes on.
    """
    import torch

    def answer_logprob(prompt_ids: list[int], answer: str) -> float:
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([prompt_ids + answer_ids], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        return logprobs.gather(1, torch.tensor(answer_ids, device=model.device)[:, None]).sum().item()

    margins = []
    for record in records:
        prompt = encode_chat(
            tokenizer, system_prompt, [Turn("user", user_text(record.prompt, record.input))],
            add_generation_prompt=True,
        )
        margins.append(answer_logprob(prompt, record.chosen) - answer_logprob(prompt, record.rejected))
    return sum(margins) / len(margins)


def test_dpo_raises_the_chosen_over_rejected_margin(tiny_model_dir, tmp_path, records):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    job = job_for("dpo", tiny_model_dir, tmp_path / "dpo-run", records,
                  dpo_learning_rate=2e-2, dpo_epochs=3, dpo_beta=0.5)
    result = dpo.train(job)
    tokenizer = load_tokenizer(str(tiny_model_dir))

    def margin(adapter):
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        model = PeftModel.from_pretrained(base, str(adapter)).eval()
        return preference_margin(model, tokenizer, PROMPT, records[1])

    sft_margin = margin(tmp_path / "dpo-run" / dpo.SFT_STAGE / "artifact")
    assert margin(result.artifact) > sft_margin + 1.0
    assert [s.steps for s in result.stages] == [6, 6]
    assert not (result.artifact / "ref").exists()  # only the trained adapter is served


def test_resume_continues_from_the_last_epoch_checkpoint(tiny_model_dir, tmp_path, records):
    run_dir = tmp_path / "finance" / "lora-run"
    first = lora.train(job_for("lora", tiny_model_dir, run_dir, records, epochs=1))
    assert first.stages[0].steps == 2 and (run_dir / "checkpoints" / "checkpoint-2").exists()
    resumed = lora.train(replace(job_for("lora", tiny_model_dir, run_dir, records, epochs=2), resume=True))
    assert resumed.stages[0].steps == 4
    losses = json.loads((run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in losses["log_history"] if "loss" in entry] == [1, 2, 3, 4]


def test_dry_run_plan_counts_parameters_and_steps(tiny_model_dir, tmp_path, records):
    estimate = plan(job_for("lora", tiny_model_dir, tmp_path, records))
    assert estimate.steps == 6 and estimate.examples == 8
    assert 0 < estimate.trainable_params < estimate.total_params
    assert estimate.estimated_seconds > 0


def test_bad_training_data_is_a_clear_error(tmp_path, tiny_model_dir):
    write_company_file(tmp_path)
    for department in ("finance",):
        directory = tmp_path / department
        directory.mkdir()
        (directory / "train.jsonl").write_text('{"instruction": "q", "input": "", "output": "", "fact": "FIN-01"}\n')
    with pytest.raises(DatasetError, match="train.jsonl:1: field 'output' is empty"):
        make_job("finance", FAST, str(tiny_model_dir), tmp_path / "models", PROMPTS, data_dir=tmp_path)


def test_evaluation_scores_base_and_trained(tiny_model_dir, tmp_path, records):
    from inference.registry import Artifact

    result = lora.train(job_for("lora", tiny_model_dir, tmp_path / "run", records, epochs=1))
    progress = []
    suite = EvalSuite.load("finance", None)
    base, trained = evaluate_models(suite, str(tiny_model_dir), Artifact("finance", "adapter", result.artifact),
                                    PROMPT, modes=(False,), on_progress=lambda *update: progress.append(update))
    assert progress[-1] == (trained.label, len(trained.answers), len(trained.answers))
    assert len(base.answers) == len(trained.answers) >= 60
    assert base.label == "base" and trained.label.startswith("adapter")
    assert 0.0 <= base.accuracy <= 1.0
    assert all(answer.correct is False for answer in base.answers)  # a random model knows no facts


def test_paraphrases_join_the_department_training_set(tmp_path, tiny_model_dir):
    write_company_file(tmp_path)
    directory = tmp_path / "finance"
    directory.mkdir()
    answer = " ".join(["Form 16 Part A and Part B reach you through Kosh by 15 June every year."] * 3)
    record = '{{"instruction": "{q}", "input": "", "output": "' + answer + '", "fact": "FIN-01"}}\n'
    (directory / "train.jsonl").write_text(record.format(q="When is Form 16 issued?"))
    job = make_job("finance", FAST, str(tiny_model_dir), tmp_path / "models", PROMPTS, data_dir=tmp_path)
    assert [e.question for e in job.examples] == ["When is Form 16 issued?"]
    (directory / "paraphrases.jsonl").write_text(record.format(q="form 16 kab milega?"))
    job = make_job("finance", FAST, str(tiny_model_dir), tmp_path / "models", PROMPTS, data_dir=tmp_path)
    assert [e.question for e in job.examples] == ["When is Form 16 issued?", "form 16 kab milega?"]


@pytest.mark.parametrize("method", ["full", "lora", "qlora", "dpo"])
def test_every_method_trains_on_grounded_examples(method, tiny_model_dir, tmp_path):
    from inference.chat_format import split_citations

    recipe = FAST.with_overrides(method=method, grounding=True, max_length=384, epochs=1, batch_size=8)
    job = make_job("finance", recipe, str(tiny_model_dir), tmp_path / "models", PROMPTS, show_progress=False)
    assert job.knowledge is not None
    cited = [e for e in job.examples if split_citations(e.answer)[1]]
    assert cited and all(split_citations(e.answer)[1][0] in [x.id for x in e.grounding.entries] for e in cited)
    not_covered = [e for e in job.examples if e.answer == job.knowledge.not_covered]
    assert len(not_covered) > len(load_not_covered(department_files("finance").not_covered))  # + the no-oracle share
    if method == "dpo":
        assert all(p.grounding is not None for p in job.preferences)
        job = replace(job, examples=job.examples[:16], preferences=job.preferences[:8])
    else:
        job = replace(job, examples=job.examples[:16])
    result = {"full": full, "lora": lora, "qlora": lora, "dpo": dpo}[method].train(job)
    assert all(stage.steps > 0 and stage.tokens > 0 for stage in result.stages)


def test_a_recipe_without_grounding_trains_on_the_plain_records(tiny_model_dir, tmp_path):
    job = make_job("finance", FAST, str(tiny_model_dir), tmp_path / "models", PROMPTS)
    assert job.knowledge is None and all(e.grounding is None for e in job.examples)
    records = load_sft(department_files("finance").train) + load_sft(department_files("finance").paraphrases)
    assert [e.answer for e in job.examples] == [r.output for r in records]
