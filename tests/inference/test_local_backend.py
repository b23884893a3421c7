"""The local backend on a tiny random Llama: decoding, streaming, registry fallbacks."""

import pytest

from core.company import load_company
from core.messages import Turn
from inference.base import GenerationParams, InputTooLong
from inference.local import LocalBackend
from tests.conftest import run, write_registry

QUESTION = [Turn("user", "How many casual leaves do I get?")]
GREEDY = GenerationParams(max_new_tokens=12)


def loaded_backend(models_dir, tiny_model_dir) -> LocalBackend:
    backend = LocalBackend(models_dir, load_company().system_prompts())
    backend.load(str(tiny_model_dir))
    return backend


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero weights, so it visibly changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    target = tmp_path_factory.mktemp("adapter") / "hr-lora"
    peft_model.save_pretrained(target)
    return target


def test_greedy_generation_is_deterministic_and_stops_at_the_limit(tiny_components):
    backend = tiny_components.backend
    first = run(backend.generate("hr", QUESTION, GREEDY))
    second = run(backend.generate("hr", QUESTION, GREEDY))
    assert first == second
    assert first.completion_tokens <= 12 and first.prompt_tokens > 10
    assert first.finish_reason in ("stop", "length")
    assert "<|im_end|>" not in first.text and "<|im_start|>" not in first.text


def test_streamed_deltas_join_to_the_non_streamed_text(tiny_components):
    backend = tiny_components.backend
    expected = run(backend.generate("finance", QUESTION, GREEDY))

    async def collect():
        stream = backend.stream("finance", QUESTION, GREEDY)
        parts = [delta async for delta in stream]
        return parts, stream.result

    parts, result = run(collect())
    assert "".join(parts) == expected.text == result.text
    assert result.completion_tokens == expected.completion_tokens


def test_department_system_prompts_change_the_prompt(tiny_components):
    backend = tiny_components.backend
    hr = run(backend.generate("hr", QUESTION, GenerationParams(max_new_tokens=1)))
    base = run(backend.generate("base", QUESTION, GenerationParams(max_new_tokens=1)))
    assert hr.prompt_tokens != base.prompt_tokens


def test_sampling_is_configurable(tiny_components):
    params = GenerationParams(max_new_tokens=12, temperature=1.5, top_p=0.95)
    outputs = {run(tiny_components.backend.generate("base", QUESTION, params)).text for _ in range(4)}
    assert len(outputs) > 1


def test_a_registered_adapter_is_served_and_changes_the_output(tmp_path, tiny_model_dir, adapter_dir):
    models_dir = tmp_path / "models"
    write_registry(models_dir, {"hr": {"kind": "adapter", "path": str(adapter_dir)}})
    backend = loaded_backend(models_dir, tiny_model_dir)
    serving = {m.department: m.serving for m in backend.models()}
    assert serving == {"hr": "adapter", "finance": "base", "healthcare": "base",
                       "marketing": "base", "sales": "base", "base": "base"}
    plain = loaded_backend(tmp_path / "empty", tiny_model_dir)
    with_adapter = run(backend.generate("hr", QUESTION, GREEDY)).text
    assert with_adapter != run(plain.generate("hr", QUESTION, GREEDY)).text
    # Other departments on the shared model run with the adapter switched off.
    assert run(backend.generate("sales", QUESTION, GREEDY)) == run(plain.generate("sales", QUESTION, GREEDY))


def test_models_report_the_memory_each_takes(tmp_path, tiny_model_dir, adapter_dir):
    from peft import PeftConfig
    from safetensors.torch import load_file

    models_dir = tmp_path / "models"
    write_registry(models_dir, {"hr": {"kind": "adapter", "path": str(adapter_dir)},
                                "sales": {"kind": "full", "path": str(tiny_model_dir)}})
    memory = {m.department: m.memory_bytes for m in loaded_backend(models_dir, tiny_model_dir).models()}
    adapter_weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    assert PeftConfig.from_pretrained(str(adapter_dir)).peft_type == "LORA"
    assert memory["hr"] == sum(t.numel() * t.element_size() for t in adapter_weights.values())
    base_weights = load_file(str(tiny_model_dir / "model.safetensors"))
    assert memory["base"] == memory["finance"] == memory["sales"]  # the base, and a full copy of it
    assert memory["base"] >= sum(t.numel() * t.element_size() for t in base_weights.values())
    assert 0 < memory["hr"] < memory["base"] / 10


def test_a_full_model_directory_is_served(tmp_path, tiny_model_dir):
    models_dir = tmp_path / "models"
    write_registry(models_dir, {"sales": {"kind": "full", "path": str(tiny_model_dir)}})
    backend = loaded_backend(models_dir, tiny_model_dir)
    assert {m.department: m.serving for m in backend.models()}["sales"] == "full"
    assert run(backend.generate("sales", QUESTION, GREEDY)).completion_tokens > 0


def test_missing_and_corrupt_artifacts_fall_back_to_base_with_a_note(tmp_path, tiny_model_dir, adapter_dir, caplog):
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(adapter_dir, corrupt)
    (corrupt / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    bad_config = tmp_path / "bad-config"
    shutil.copytree(adapter_dir, bad_config)
    (bad_config / "adapter_config.json").write_text("{ nope")
    models_dir = tmp_path / "models"
    write_registry(models_dir, {
        "hr": {"kind": "adapter", "path": "does/not/exist"},
        "finance": {"kind": "adapter", "path": str(corrupt)},
        "healthcare": {"kind": "adapter", "path": str(bad_config)},
        "marketing": {"kind": "adapter", "path": str(adapter_dir)},
        "sales": {"kind": "mystery", "path": "x"},
    })
    backend = loaded_backend(models_dir, tiny_model_dir)
    by_department = {m.department: m for m in backend.models()}
    for department in ("hr", "finance", "healthcare", "sales"):
        assert by_department[department].serving == "base"
        assert by_department[department].note
    assert "does not exist" in by_department["hr"].note
    assert "needs 'kind'" in by_department["sales"].note
    assert by_department["marketing"].serving == "adapter"
    assert "serving the base model" in caplog.text
    assert run(backend.generate("finance", QUESTION, GREEDY)).completion_tokens > 0


def test_an_unreadable_registry_means_base_everywhere(tmp_path, tiny_model_dir):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "registry.json").write_text("[1, 2")
    backend = loaded_backend(models_dir, tiny_model_dir)
    assert all(m.serving == "base" for m in backend.models())
    assert "unreadable registry" in backend.models()[0].note


def test_history_is_trimmed_to_fit_and_an_oversized_message_is_refused(tiny_components):
    backend = tiny_components.backend
    long_history = [Turn("user" if i % 2 == 0 else "assistant", "word " * 60) for i in range(20)]
    result = run(backend.generate("base", [*long_history, Turn("user", "short?")], GREEDY))
    assert result.prompt_tokens <= 512 - GREEDY.max_new_tokens
    with pytest.raises(InputTooLong, match="tokens"):
        run(backend.generate("base", [Turn("user", "word " * 600)], GREEDY))
