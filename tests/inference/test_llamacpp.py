"""The llama.cpp runtime: GGUF conversion, answers equal to torch's, department models, settings."""

import shutil

import numpy as np
import pytest

from core.company import load_company
from core.messages import Turn
from inference.base import GenerationParams
from inference.base_model import bundled_gguf
from inference.gguf_export import export_gguf, gguf_path
from inference.llamacpp import GgufServing, LlamaCppRuntime
from inference.local import LocalBackend
from tests.conftest import make_settings, run, write_registry

pytestmark = pytest.mark.slow  # trains or converts models: seconds per test

PROMPTS = load_company().system_prompts()
QUESTIONS = ["How many casual leaves do I get?", "When is Form 16 issued?", "hi", "Who approves a travel claim?"]
# At the default penalty the random tiny model emits whitespace: 1.3 gives visible text.
PARAMS = GenerationParams(max_new_tokens=12, repetition_penalty=1.3)


@pytest.fixture(scope="module")
def department_artifacts(tiny_model_dir, tmp_path_factory):
    """A models folder with a LoRA adapter (hr) and a full model (finance), both changing the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    models = tmp_path_factory.mktemp("models")
    torch.manual_seed(1)
    adapter = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                             LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"],
                                        init_lora_weights=False))
    adapter.save_pretrained(models / "hr" / "lora-1")
    full = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for parameter in full.model.layers.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    full.save_pretrained(models / "finance" / "full-1")
    for file in tiny_model_dir.iterdir():  # the tokenizer and chat template, as training saves them
        if not (models / "finance" / "full-1" / file.name).exists():
            shutil.copy(file, models / "finance" / "full-1")
    write_registry(models, {"hr": {"kind": "adapter", "path": "hr/lora-1"},
                            "finance": {"kind": "full", "path": "finance/full-1"}})
    return models


def backends(models_dir, tiny_model_dir, tiny_gguf, quant="f32"):
    torch_backend = LocalBackend(models_dir, PROMPTS, device="cpu")
    llama_backend = LocalBackend(models_dir, PROMPTS, runtime=LlamaCppRuntime(GgufServing(tiny_gguf, quant)))
    for backend in (torch_backend, llama_backend):
        backend.load(str(tiny_model_dir))
    return torch_backend, llama_backend


def answers(backend, department, params=PARAMS):
    return [run(backend.generate(department, [Turn("user", q)], params)) for q in QUESTIONS]


def test_the_bundled_model_converts_back_to_the_very_gguf_it_shipped_as(smollm2_dir, tmp_path):
    """The converter's tensor names, q/k row order and q4_1 quantiser, checked against llama.cpp's own file."""
    import gguf

    from inference.artifacts import load_causal_lm

    ours = export_gguf(load_causal_lm(smollm2_dir), bundled_gguf(), tmp_path / "base.q4_1.gguf", "q4_1")
    shipped = {t.name: t for t in gguf.GGUFReader(bundled_gguf()).tensors}
    written = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    assert written.keys() == shipped.keys() and len(written) == 272
    for name, tensor in shipped.items():
        assert written[name].tensor_type == tensor.tensor_type, name
        assert np.array_equal(np.asarray(written[name].data), np.asarray(tensor.data)), name


def test_llama_cpp_answers_token_for_token_as_torch_does(tiny_model_dir, tiny_gguf, tmp_path):
    torch_backend, llama_backend = backends(tmp_path / "models", tiny_model_dir, tiny_gguf)
    for department in ("hr", "base"):
        expected = answers(torch_backend, department)
        assert answers(llama_backend, department) == expected
        assert any(a.text for a in expected) and {a.finish_reason for a in expected} <= {"stop", "length"}
    sampled = GenerationParams(max_new_tokens=12, temperature=1.5, top_p=0.95)
    assert len({run(llama_backend.generate("base", [Turn("user", "hi")], sampled)).text for _ in range(4)}) > 1
    for backend in (torch_backend, llama_backend):
        backend.close()


def test_streaming_joins_to_the_answer_and_a_repeated_prefix_is_not_computed_again(tiny_model_dir, tiny_gguf,
                                                                                      tmp_path):
    backend = LocalBackend(tmp_path / "models", PROMPTS, runtime=LlamaCppRuntime(GgufServing(tiny_gguf, "f32")))
    backend.load(str(tiny_model_dir))
    first = run(backend.generate("hr", [Turn("user", QUESTIONS[0])], PARAMS))
    before = backend.batch_stats("hr")

    async def collect():
        stream = backend.stream("hr", [Turn("user", QUESTIONS[1])], PARAMS)
        return [delta async for delta in stream], stream.result

    parts, result = run(collect())
    after = backend.batch_stats("hr")
    assert "".join(parts) == result.text and result.first_token_at is not None
    # The second question shares the system prompt with the first: only what follows it is computed.
    reused = after.reused_tokens - before.reused_tokens
    assert reused >= 40 and after.prefill_tokens - before.prefill_tokens == result.prompt_tokens - reused
    assert first.prompt_tokens > reused
    backend.close()


def test_department_models_are_converted_at_load_and_answer_as_under_torch(tiny_model_dir, tiny_gguf,
                                                                         department_artifacts):
    torch_backend, llama_backend = backends(department_artifacts, tiny_model_dir, tiny_gguf)
    served = {m.department: m for m in llama_backend.models()}
    assert served["hr"].serving == "adapter" and served["finance"].serving == "full"
    for department, folder in (("hr", "hr/lora-1"), ("finance", "finance/full-1")):
        converted = gguf_path(department_artifacts / folder, "f32")
        assert converted.is_file() and served[department].memory_bytes == converted.stat().st_size
        assert answers(llama_backend, department) == answers(torch_backend, department)
    # The department weights are really in there.
    assert answers(llama_backend, "base") != answers(llama_backend, "hr") != answers(llama_backend, "finance")
    for backend in (torch_backend, llama_backend):
        backend.close()


def test_a_retrained_artifact_is_converted_again_and_a_broken_one_falls_back(tiny_model_dir, tiny_gguf,
                                                                            department_artifacts, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(department_artifacts, models)
    runtime = LlamaCppRuntime(GgufServing(tiny_gguf, "f32"))
    backend = LocalBackend(models, PROMPTS, runtime=runtime)
    backend.load(str(tiny_model_dir))
    before = answers(backend, "finance")
    # Retrained in place: other weights under the same path (the stale GGUF must not be served).
    shutil.rmtree(models / "finance" / "full-1")
    shutil.copytree(tiny_model_dir, models / "finance" / "full-1")
    (models / "hr" / "lora-1" / "adapter_model.safetensors").write_bytes(b"broken")
    backend.reload()
    served = {m.department: m for m in backend.models()}
    assert served["finance"].serving == "full" and answers(backend, "finance") != before
    assert served["hr"].serving == "base" and "failed to load" in served["hr"].note
    torch_backend = LocalBackend(models, PROMPTS, device="cpu")
    torch_backend.load(str(tiny_model_dir))
    assert answers(backend, "finance") == answers(torch_backend, "finance")  # the new weights
    for each in (backend, torch_backend):
        each.close()


def test_settings_pick_llama_cpp_on_cpu_and_say_what_it_needs(tiny_model_dir, tiny_gguf, tmp_path):
    from gateway.components import build_components
    from gateway.settings import Settings

    bundled = Settings(home=tmp_path, device="cpu")
    assert bundled.gguf_serving() == GgufServing(bundled_gguf(), "f16", convert_base=True)  # auto, bundled base
    assert Settings(home=tmp_path, device="cpu", backend="local").gguf_serving() is None
    assert make_settings(tmp_path, tiny_model_dir).gguf_serving() is None  # auto: no GGUF of this base
    with pytest.raises(ValueError, match="needs base_gguf"):
        make_settings(tmp_path, tiny_model_dir, backend="llamacpp")
    with pytest.raises(ValueError, match="is not a file"):
        make_settings(tmp_path, tiny_model_dir, backend="llamacpp", base_gguf=tmp_path / "missing.gguf")
    components = build_components(make_settings(tmp_path, tiny_model_dir, backend="llamacpp", base_gguf=tiny_gguf,
                                                llamacpp_quant="f32"))
    components.start()
    try:
        assert {m.source for m in components.backend.models()} == {str(tiny_gguf)}
        reply = run(components.backend.generate("hr", [Turn("user", "hi")], PARAMS))
        assert reply.completion_tokens > 0
    finally:
        components.close()


@pytest.mark.slow
def test_the_real_smollm2_answers_alike_under_both_runtimes(smollm2_dir, tmp_path):
    """SmolLM2 as an f32 GGUF: llama.cpp's greedy replies are torch's, token for token."""
    from inference.artifacts import load_causal_lm

    exact = export_gguf(load_causal_lm(smollm2_dir), bundled_gguf(), tmp_path / "smollm2.f32.gguf", "f32")
    params = GenerationParams(max_new_tokens=48, repetition_penalty=1.1)
    torch_backend, llama_backend = backends(tmp_path / "models", smollm2_dir, exact)
    for department in ("hr", "base"):
        expected = answers(torch_backend, department, params)
        assert answers(llama_backend, department, params) == expected
        assert all(len(a.text) > 20 for a in expected)  # real answers, not empty ones
    for backend in (torch_backend, llama_backend):
        backend.close()
    # As it serves by default: the bundled base converted to f16 beside its safetensors cache.
    served = GgufServing(bundled_gguf(), "f16", convert_base=True)
    backend = LocalBackend(tmp_path / "models", PROMPTS, runtime=LlamaCppRuntime(served))
    backend.load(str(smollm2_dir))
    assert backend.models()[0].source == str(gguf_path(smollm2_dir, "f16"))
    assert "leave" in run(backend.generate("hr", [Turn("user", QUESTIONS[0])], params)).text.lower()
    backend.close()
