"""A running server picks up promoted models without a restart."""

import asyncio
import time

import httpx
import pytest

from core.messages import Turn
from gateway.app import create_app
from gateway.components import build_components
from inference.base import GenerationParams
from tests.conftest import LiveServer, make_settings, run
from training.promotion import ModelVersion, promote, rollback

QUESTION = [Turn("user", "How many casual leaves do I get?")]
LONG = GenerationParams(max_new_tokens=64, repetition_penalty=1.3)


@pytest.fixture(scope="module")
def random_adapter(tiny_model_dir, tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False),
    )
    target = tmp_path_factory.mktemp("models") / "hr" / "lora-1" / "artifact"
    model.save_pretrained(target)
    return target


def version_for(models_dir, artifact) -> ModelVersion:
    return ModelVersion("adapter", str(artifact.relative_to(models_dir)), "lora", 0.9, 0.0, "now", "tiny")


def wait_for(predicate, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_promotion_and_rollback_reach_a_running_server(tiny_model_dir, random_adapter):
    models_dir = random_adapter.parents[2]
    settings = make_settings(models_dir.parent, tiny_model_dir, models_dir=models_dir, reload_interval_seconds=0.1)
    components = build_components(settings)
    with LiveServer(create_app(components=components)) as live:
        wait_for(lambda: httpx.get(live.url + "/readyz").status_code == 200)

        def serving() -> str:
            return {m.department: m.serving for m in components.backend.models()}["hr"]

        assert serving() == "base"
        promote(models_dir, "hr", version_for(models_dir, random_adapter))
        wait_for(lambda: serving() == "adapter")
        body = {"model": "hr", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        assert httpx.post(live.url + "/v1/chat/completions", json=body).status_code == 200
        rollback(models_dir, "hr")
        wait_for(lambda: serving() == "base")
    components.close()


def test_a_request_in_flight_finishes_on_the_model_it_started_with(tiny_model_dir, random_adapter):
    models_dir = random_adapter.parents[2]
    components = build_components(make_settings(models_dir.parent, tiny_model_dir, models_dir=models_dir / "none"))
    components.start()
    backend = components.backend
    old_text = run(backend.generate("hr", QUESTION, LONG)).text
    assert len(old_text) > 20

    async def stream_across_a_reload():
        stream = backend.stream("hr", QUESTION, LONG)
        parts = []
        async for delta in stream:
            parts.append(delta)
            if len(parts) == 1:  # mid-generation: deploy an adapter for hr
                backend._models_dir = models_dir
                promote(models_dir, "hr", version_for(models_dir, random_adapter))
                await asyncio.to_thread(backend.reload)
        return "".join(parts)

    assert run(stream_across_a_reload()) == old_text
    assert {m.department: m.serving for m in backend.models()}["hr"] == "adapter"
    assert run(backend.generate("hr", QUESTION, LONG)).text != old_text
    components.close()
