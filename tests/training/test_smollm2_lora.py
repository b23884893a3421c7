"""A few LoRA steps on the real SmolLM2: the real model trains and serves the result."""

import math

import pytest

from core.company import load_company
from tests.conftest import run, write_registry
from training import lora
from training.datasets import department_files, load_sft
from training.examples import plain_examples
from training.job import TrainingJob
from training.recipe import Recipe

pytestmark = pytest.mark.slow


def test_lora_steps_on_smollm2(smollm2_dir, tmp_path):
    from core.messages import Turn
    from inference.base import GenerationParams
    from inference.local import LocalBackend

    records = plain_examples(load_sft(department_files("hr").train)[:8])
    recipe = Recipe(method="lora", epochs=1, batch_size=4, learning_rate=2e-3, max_length=192)
    job = TrainingJob("hr", str(smollm2_dir), load_company().system_prompts()["hr"], records, recipe,
                      tmp_path / "models" / "hr" / "lora-run", show_progress=False)
    result = lora.train(job)
    stage = result.stages[0]
    assert stage.steps == 2
    # A pretrained instruct model already predicts fluent answers: its loss is far below ln(vocab) = 10.8.
    assert math.isfinite(stage.first_loss) and stage.first_loss < 5
    write_registry(tmp_path / "models", {"hr": {"kind": "adapter", "path": "hr/lora-run/artifact"}})
    backend = LocalBackend(tmp_path / "models", load_company().system_prompts())
    backend.load(str(smollm2_dir))
    assert {m.department: m.serving for m in backend.models()}["hr"] == "adapter"
    reply = run(backend.generate("hr", [Turn("user", "How many casual leaves do I get?")],
                                 GenerationParams(max_new_tokens=24)))
    assert reply.text
