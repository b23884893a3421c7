"""Training when llama.cpp serves: the GGUF is what gets scored, and a lossy conversion is not promoted."""

import json

import pytest

from inference.gguf_export import gguf_path
from inference.llamacpp import GgufServing
from tests.training.test_methods import FAST, PROMPT, PROMPTS
from training.department import conversion_verdict, make_job, train_department
from training.evaluation import Answer, Evaluation
from training.promotion import live_version

pytestmark = pytest.mark.slow  # trains or converts models: seconds per test


def scored(right: int, total: int) -> Evaluation:
    answers = [Answer(f"q{i}", ("x",), "x" if i < right else "", i < right) for i in range(total)]
    return Evaluation("model", right / total, answers, 1.0)


def test_a_conversion_that_loses_more_than_one_question_is_refused():
    assert conversion_verdict(scored(30, 40), scored(31, 40), "q8_0") is None
    assert conversion_verdict(scored(30, 40), scored(29, 40), "q8_0") is None  # one question: a near-tie flip
    refused = conversion_verdict(scored(30, 40), scored(28, 40), "q4_1")
    assert refused is not None and not refused.promoted
    assert "q4_1 GGUF it scores 70.0% vs 75.0% before conversion" in refused.reason


def test_training_scores_and_records_the_gguf_that_will_serve(tiny_model_dir, tiny_gguf, tmp_path):
    models = tmp_path / "models"
    job = make_job("finance", FAST.with_overrides(method="lora", epochs=1), str(tiny_model_dir), models, PROMPTS,
                   show_progress=False)
    assert job.system_prompt == PROMPT
    outcome = train_department(job, models, tmp_path / "reports", device="cpu", gguf=GgufServing(tiny_gguf, "f32"))
    artifact = outcome.result.artifact
    assert gguf_path(artifact, "f32").is_file()  # converted at promotion: serving loads it as is
    assert outcome.unconverted is not None and "llama.cpp" in outcome.trained.label
    # f32 is exact: the GGUF answers what the model it came from answers.
    assert [a.answer for a in outcome.trained.answers] == [a.answer for a in outcome.unconverted.answers]
    live = live_version(models, "finance")
    assert outcome.decision.promoted and live is not None
    assert live.gguf == "f32" and live.unconverted_accuracy == outcome.unconverted.accuracy
    assert live.accuracy == outcome.trained.accuracy and live.base_accuracy == outcome.base.accuracy
    report = json.loads(outcome.report.read_text())
    labels = [e["label"] for e in report["evaluations"]]
    assert sum("llama.cpp" in label for label in labels) == 2 and "base" in labels
