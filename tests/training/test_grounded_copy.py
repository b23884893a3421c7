"""Grounded training on the real SmolLM2: the model learns to copy a number from the entries it
is shown, so editing the handbook changes the live answer without retraining or a restart."""

import random
import time

import httpx
import pytest
import yaml

from core.company import load_company
from core.messages import Entry, Grounding, Turn
from gateway.app import create_app
from gateway.components import build_components
from inference.base import GenerationParams
from inference.chat_format import cite
from inference.local import LocalBackend
from knowledge.library import HandbookLibrary
from tests.conftest import LiveServer, make_settings, run, write_registry
from training import full
from training.examples import Example
from training.job import TrainingJob
from training.recipe import Recipe

# The module fixture fine-tunes SmolLM2 (16 steps): 2-5 min on an idle 2-core CPU, more when shared.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

LEAVES = ["casual", "sick", "marriage", "bereavement", "study", "sabbatical", "paternity", "volunteer"]
NOT_COVERED = "The HR handbook does not cover that."
SHORT = GenerationParams(max_new_tokens=24)
PROMPT = load_company().system_prompts()["hr"]


def fact(kind: str, days: int) -> str:
    return f"{kind.capitalize()} leave is {days} days per year."


def example(rng: random.Random) -> Example:
    """A question about one leave, shown with two others; every example draws new numbers."""
    shown = rng.sample(range(len(LEAVES)), 3)
    entries = [Entry(f"HR-{i + 1:02d}", fact(LEAVES[i], rng.randint(2, 60))) for i in shown]
    asked = entries[0]
    rng.shuffle(entries)
    kind = LEAVES[int(asked.id[3:]) - 1]
    return Example(f"How many days of {kind} leave do I get?", cite(asked.id, asked.text),
                   Grounding(tuple(entries), NOT_COVERED))


@pytest.fixture(scope="module")
def copying_model(smollm2_dir, tmp_path_factory):
    """SmolLM2 fully fine-tuned on 64 grounded examples (2 epochs), registered live for hr."""
    models_dir = tmp_path_factory.mktemp("grounded") / "models"
    rng = random.Random(0)
    recipe = Recipe(method="full", epochs=2, batch_size=8, learning_rate=1e-4, max_length=256, warmup_ratio=0)
    job = TrainingJob("hr", str(smollm2_dir), PROMPT, [example(rng) for _ in range(64)],
                      recipe, models_dir / "hr" / "full-run", show_progress=False)
    result = full.train(job)
    write_registry(models_dir, {"hr": {"kind": "full", "path": "hr/full-run/artifact"}})
    return models_dir, result


def company(tmp_path, days: int):
    """A one-department company whose handbook says `days` days of casual leave."""
    folder = tmp_path / "hr"
    folder.mkdir(exist_ok=True)
    hr = {"id": "hr", "name": "HR", "description": "leave", "system_prompt": PROMPT}  # the prompt it trained on
    (tmp_path / "departments.yaml").write_text(yaml.safe_dump({"company": "Acme", "departments": [hr]}))
    lines = ["# HR handbook", "", "## Leave", ""]
    lines += [f"- **HR-{i + 1:02d}** {fact(kind, days if kind == 'casual' else 10 + 3 * i)}"
              for i, kind in enumerate(LEAVES)]
    (folder / "handbook.md").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_a_grounded_model_copies_numbers_it_never_saw_in_training(copying_model, smollm2_dir, tmp_path):
    models_dir, result = copying_model
    assert result.stages[0].last_loss < result.stages[0].first_loss
    backend = LocalBackend(models_dir, load_company().system_prompts())
    backend.load(str(smollm2_dir))
    right = 0
    for days in (13, 47, 71, 88):  # 71 and 88 are outside every training draw (2-60)
        library = HandbookLibrary(load_company(company(tmp_path, days)))
        grounding = library.retrieve("hr", "How many days of casual leave do I get?", 3)
        assert grounding.entries[0].id == "HR-01"
        reply = run(backend.generate("hr", [Turn("user", "How many days of casual leave do I get?")], SHORT, grounding))
        right += f"{days} days" in reply.text
    backend.close()
    assert right >= 3, "the model did not read the number from its entries"


def test_a_handbook_edit_changes_the_answer_without_a_restart(copying_model, smollm2_dir, tmp_path):
    models_dir, _ = copying_model
    data_dir = company(tmp_path, 12)
    settings = make_settings(tmp_path, smollm2_dir, models_dir=models_dir, data_dir=data_dir,
                             reload_interval_seconds=0.1, max_new_tokens=24, router="commands")
    components = build_components(settings)
    body = {"model": "hr", "messages": [{"role": "user", "content": "How many days of casual leave do I get?"}]}

    def answer(live) -> dict:
        reply = httpx.post(live.url + "/v1/chat/completions", json=body, timeout=60).json()
        return {"text": reply["choices"][0]["message"]["content"], "sources": reply["switchboard"]["sources"]}

    with LiveServer(create_app(components=components)) as live:
        deadline = time.monotonic() + 60
        while httpx.get(live.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        before = answer(live)
        assert "12 days" in before["text"] and before["sources"][0]["id"] == "HR-01"
        company(tmp_path, 15)  # a policy change: casual leave goes from 12 to 15 days
        deadline = time.monotonic() + 30
        while "15 days" not in (after := answer(live))["text"]:
            assert time.monotonic() < deadline, after
            time.sleep(0.2)
        assert "15 days" in after["sources"][0]["text"]
    components.close()
