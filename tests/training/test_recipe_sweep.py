"""bench/recipe_sweep.py: a grid of recipe variants, each trained and scored like `switchboard eval`."""

import pytest

from bench.recipe_sweep import VARIANTS, Job, plan_jobs, run_job

pytestmark = pytest.mark.slow  # trains or converts models: seconds per test


def test_plan_scores_the_base_first_then_each_variant_across_departments():
    jobs = plan_jobs(["hr", "sales"], ["lora", "full-1e-3"], epochs=0.5)
    assert [(j.department, j.variant) for j in jobs] == [
        ("hr", "base"), ("sales", "base"), ("hr", "lora"), ("sales", "lora"), ("hr", "full-1e-3"), ("sales", "full-1e-3"),
    ]
    assert jobs[-1].overrides == {**VARIANTS["full-1e-3"], "epochs": 0.5}


def test_a_variant_trains_and_is_scored_on_the_eval_questions(tiny_model_dir, tmp_path):
    job = Job("sales", "lora", {**VARIANTS["lora"], "epochs": 0.02, "max_length": 384})
    row = run_job(job, str(tiny_model_dir), str(tmp_path), precision="fp32", threads=2)
    assert row["method"] == "lora" and row["steps"] >= 1
    assert row["questions"] > 50 and 0 <= row["correct"] <= row["questions"]
    assert 0 <= row["not_covered"] <= 1  # grounded, as the recipe serves
    assert list(tmp_path.iterdir()) == []  # the trained model is deleted once scored
