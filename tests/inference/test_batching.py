"""Continuous batching on the tiny random Llama with real PEFT adapters.

Rows of one forward pass mix departments (adapters and base); each must decode
what it would alone, finish on its own, and let newcomers join mid-flight.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time

import pytest
import torch

from core.company import load_company
from core.messages import Turn
from inference.artifacts import attach_adapter, load_causal_lm
from inference.base import GenerationParams
from inference.batching import NO_ADAPTER, BatchEngine
from inference.chat_format import encode_chat
from inference.gathered_lora import gather_adapters
from inference.local import LocalBackend
from inference.registry import Artifact
from inference.sampling import choose_tokens
from inference.tickets import DecodeRequest, EngineStopped
from tests.conftest import run, write_registry

ADAPTER_DEPARTMENTS = ("hr", "finance", "sales")
# Largest top-2 logit gap still called a tie when batched and solo decoding disagree:
# fp32 rounding differs between batch shapes by ~1e-6 on this model's logits.
NEAR_TIE = 1e-4


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """One LoRA adapter per department, each with its own non-zero weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    for seed, department in enumerate(ADAPTER_DEPARTMENTS, start=1):
        torch.manual_seed(seed)
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        )
        model.save_pretrained(root / department)
    return {department: root / department for department in ADAPTER_DEPARTMENTS}


@pytest.fixture(scope="module")
def models_dir(adapters, tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    write_registry(directory, {d: {"kind": "adapter", "path": str(p)} for d, p in adapters.items()})
    return directory


def loaded(models_dir, tiny_model_dir, **options) -> LocalBackend:
    backend = LocalBackend(models_dir, load_company().system_prompts(), **options)
    backend.load(str(tiny_model_dir))
    return backend


def ask(question: str) -> list[Turn]:
    return [Turn("user", question)]


# --- the engine against transformers' own one-at-a-time generate ---------------------


@pytest.fixture(scope="module")
def peft_model(tiny_model_dir, adapters):
    model = load_causal_lm(tiny_model_dir)
    for department, path in adapters.items():
        model = attach_adapter(model, Artifact(department, "adapter", path))
    return model


@pytest.fixture(scope="module")
def gathered_model(tiny_model_dir, adapters):
    """The same adapters on their own base, gathered into stacked per-layer weights."""
    model = load_causal_lm(tiny_model_dir)
    for department, path in adapters.items():
        model = attach_adapter(model, Artifact(department, "adapter", path))
    return gather_adapters(model)


def test_gathered_layers_give_peft_logits_for_any_mix_of_rows(peft_model, gathered_model):
    torch.manual_seed(0)
    ids = torch.randint(100, 2000, (6, 12))
    adapters = [None, "hr", "finance", "sales", "hr", None]
    with torch.inference_mode():
        expected = peft_model(input_ids=ids, adapter_names=[a or NO_ADAPTER for a in adapters]).logits
        gathered_model.adapter_rows.select(adapters, "cpu")
        got = gathered_model(input_ids=ids).logits
        gathered_model.adapter_rows.select([None] * 6, "cpu")
        plain = gathered_model(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4), float((got - expected).abs().max())
    assert not torch.allclose(got[1], plain[1], atol=1e-3)  # the adapters really change the rows
    assert torch.allclose(got[0], plain[0], atol=1e-5) and torch.allclose(got[5], plain[5], atol=1e-5)


def test_adapters_that_cannot_be_gathered_stay_with_peft(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = LoraConfig(r=4, target_modules=["q_proj"], use_dora=True)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config)
    assert gather_adapters(model) is None and hasattr(model, "peft_config")


def prompt_ids(tokenizer, department: str, question: str) -> list[int]:
    return encode_chat(tokenizer, load_company().system_prompts()[department], ask(question), add_generation_prompt=True)


def solo_greedy(model, tokenizer, request: DecodeRequest) -> list[int]:
    """transformers' generate for one request, cut at its stop token, like the old backend."""
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    ids = torch.tensor([request.prompt_ids])
    penalty = RepetitionPenaltyLogitsProcessor(request.params.repetition_penalty, prompt_ignore_length=ids.shape[1])
    with torch.inference_mode():
        output = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
            max_new_tokens=request.params.max_new_tokens, logits_processor=LogitsProcessorList([penalty]),
            eos_token_id=sorted(request.stop_ids), pad_token_id=tokenizer.pad_token_id,
            adapter_names=[request.adapter or NO_ADAPTER],
        )
    new = output[0, len(request.prompt_ids):].tolist()
    stop = next((i for i, token in enumerate(new) if token in request.stop_ids), len(new))
    return new[:stop]


def assert_same_or_near_tie(model, request: DecodeRequest, expected: list[int], got: list[int]) -> None:
    """Equal tokens, or a first difference where the solo logits' top two are a float tie."""
    if got == expected:
        return
    step = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
    context = torch.tensor([request.prompt_ids + expected[:step]])
    with torch.inference_mode():
        logits = model(input_ids=context, adapter_names=[request.adapter or NO_ADAPTER]).logits[0, -1].float()
    penalty = request.params.repetition_penalty
    seen = torch.tensor(expected[:step], dtype=torch.long).unique()  # the answer's tokens, not the prompt's
    logits[seen] = torch.where(logits[seen] < 0, logits[seen] * penalty, logits[seen] / penalty)
    top = logits.topk(2)
    gap = float(top.values[0] - top.values[1])
    assert gap < NEAR_TIE, f"step {step}: batched {got[step:step + 3]} vs solo {expected[step:step + 3]}, gap {gap}"


@pytest.mark.parametrize("layers", ["gathered", "peft"])
def test_a_mixed_adapter_batch_decodes_each_row_as_it_would_alone(layers, peft_model, gathered_model, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    stop = frozenset({tokenizer.eos_token_id})
    cases = [  # department (base: no adapter), question, max_new_tokens, repetition penalty
        ("base", "How many casual leaves do I get?", 9, 1.0),
        ("hr", "Can I carry leave over to next year?", 40, 1.3),
        ("finance", "When is Form 16 issued?", 17, 1.0),
        ("sales", "Quote me a price for 40 seats", 28, 1.2),
        ("hr", "Who approves work from home?", 33, 1.0),
        ("finance", "hi", 23, 1.1),
    ]
    requests = [
        DecodeRequest(prompt_ids(tokenizer, department, question),
                      None if department == "base" else department,
                      GenerationParams(max_new_tokens=tokens, repetition_penalty=penalty), stop)
        for department, question, tokens, penalty in cases
    ]
    assert len({len(r.prompt_ids) for r in requests}) > 1  # rows really need left padding
    expected = [solo_greedy(peft_model, tokenizer, r) for r in requests]
    engine = BatchEngine(gathered_model if layers == "gathered" else peft_model, max_batch_size=16, window_s=0.05)

    async def batched():
        tickets = [engine.submit(r) for r in requests]
        return [await t.result for t in tickets]

    decoded = run(batched())
    engine.close(drain=True)
    for request, solo, got in zip(requests, expected, decoded):
        assert_same_or_near_tie(peft_model, request, solo, got.token_ids)
        assert got.finish_reason == ("length" if len(got.token_ids) == request.params.max_new_tokens else "stop")
    stats = engine.stats
    assert stats.max_rows == len(requests) and stats.prefills == len(requests)
    assert stats.decode_steps < sum(r.params.max_new_tokens for r in requests) / 2


def test_choose_tokens_applies_each_rows_own_settings():
    logits = torch.tensor([[2.0, -1.0, 1.9, 0.0]] * 3)
    seen = torch.tensor([[True, False, False, False], [True, True, False, False], [False] * 4])
    penalty = torch.tensor([1.0, 2.0, 1.0])
    greedy = choose_tokens(logits, seen, penalty, torch.zeros(3), torch.ones(3))
    # Row 1: 2.0 / 2 = 1.0 falls below 1.9; a seen negative logit would only fall further.
    assert greedy.tolist() == [0, 2, 0]
    # A vanishing top_p keeps only the best token; a hot row with the full nucleus wanders.
    temperature, top_p = torch.tensor([0.0, 1.0, 50.0]), torch.tensor([1.0, 1e-6, 1.0])
    draws = [choose_tokens(logits, seen, penalty, temperature, top_p).tolist() for _ in range(40)]
    assert all(d[0] == 0 and d[1] == 2 for d in draws)
    assert len({d[2] for d in draws}) > 1


# --- through the backend ---------------------------------------------------------------


def test_requests_join_a_running_batch_and_a_short_one_finishes_first(models_dir, tiny_model_dir):
    earlier = set(threading.enumerate())  # engines of other tests' backends may still be idling out
    backend = loaded(models_dir, tiny_model_dir)
    short = (ask("When is Form 16 issued?"), GenerationParams(max_new_tokens=4))
    alone = run(backend.generate("finance", *short))  # nothing else running: a batch of one

    async def scenario():
        long_stream = backend.stream("hr", ask("How many casual leaves do I get?"), GenerationParams(max_new_tokens=300))
        long_task = asyncio.create_task(_collect(long_stream))
        while backend.batch_stats("hr").decode_steps < alone.completion_tokens + 3:
            await asyncio.sleep(0.002)  # the long request is decoding
        joined = await asyncio.gather(
            backend.generate("finance", *short), backend.generate("base", ask("hi"), GenerationParams(max_new_tokens=6))
        )
        still_running = not long_task.done()
        return joined, still_running, await long_task

    (finance, base), still_running, (parts, long_result) = run(scenario())
    assert still_running  # both short requests came back while the long one decoded on
    assert long_result.completion_tokens == 300 and "".join(parts) == long_result.text
    assert finance == alone
    assert base.completion_tokens == 6
    stats = backend.batch_stats("hr")
    assert stats.joined_running >= 2 and stats.max_rows >= 2  # both joined the long one's batch
    engines = [t for t in threading.enumerate() if t.name.startswith("batch-") and t not in earlier]
    assert engines
    backend.close()
    # Shutdown waits for the engine threads: a process exiting under one can abort (exit 134).
    assert not [t.name for t in engines if t.is_alive()]


def test_streams_match_non_streamed_answers_in_one_batch(models_dir, tiny_model_dir):
    # A wide window: every request arrives (prompts are fitted on worker threads) before decoding starts.
    backend = loaded(models_dir, tiny_model_dir, batch_window_ms=500)
    cases = [("hr", "How many casual leaves do I get?", 12), ("finance", "When is Form 16 issued?", 20),
             ("base", "hi", 7), ("sales", "Quote me a price for 40 seats", 15)]

    async def both_ways():
        streams = [backend.stream(d, ask(q), GenerationParams(max_new_tokens=n)) for d, q, n in cases]
        plain = [backend.generate(d, ask(q), GenerationParams(max_new_tokens=n)) for d, q, n in cases]
        return await asyncio.gather(*(_collect(s) for s in streams), *plain)

    results = run(both_ways())
    streamed, plain = results[:len(cases)], results[len(cases):]
    for (parts, result), expected in zip(streamed, plain):
        assert "".join(parts) == result.text == expected.text
        assert result == expected
    assert backend.batch_stats("base").max_rows == 2 * len(cases)
    backend.close()


def test_a_cancelled_stream_frees_its_row_at_the_next_step(models_dir, tiny_model_dir):
    backend = loaded(models_dir, tiny_model_dir)
    params = GenerationParams(max_new_tokens=300)

    async def scenario():
        other = asyncio.create_task(backend.generate("finance", ask("When is Form 16 issued?"), params))
        stream = backend.stream("hr", ask("How many casual leaves do I get?"), params)
        deltas = aiter(stream)
        await anext(deltas)  # hr's adapter gives visible text from the first token
        await deltas.aclose()  # the client goes away
        deadline = time.monotonic() + 10
        while backend.batch_stats("hr").cancelled == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        return await other

    other = run(scenario())
    assert other.completion_tokens == 300  # the batch went on without the cancelled row
    stats = backend.batch_stats("hr")
    assert stats.cancelled == 1
    # The finance row decoded 299 steps; the hr row only until it was cancelled.
    assert stats.rows_decoded < 299 + 100
    backend.close()


def test_a_department_whose_adapter_fails_is_a_base_row_in_the_batch(adapters, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(adapters["finance"], broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    models_dir = tmp_path / "models"
    write_registry(models_dir, {"hr": {"kind": "adapter", "path": str(adapters["hr"])},
                                "finance": {"kind": "adapter", "path": str(broken)}})
    backend = loaded(models_dir, tiny_model_dir, batch_window_ms=500)
    plain = loaded(tmp_path / "no-models", tiny_model_dir, max_batch_size=1)
    serving = {m.department: m for m in backend.models()}
    assert serving["finance"].serving == "base" and "failed to load" in serving["finance"].note
    assert serving["hr"].serving == "adapter"
    params = GenerationParams(max_new_tokens=10)
    departments = ("finance", "hr", "base", "marketing")

    async def together():
        return await asyncio.gather(*(backend.generate(d, ask("When is Form 16 issued?"), params) for d in departments))

    answers = dict(zip(departments, run(together())))
    assert backend.batch_stats("hr").max_rows == len(departments)
    for department in ("finance", "base", "marketing"):  # no adapter: the plain base model's answer
        assert answers[department] == run(plain.generate(department, ask("When is Form 16 issued?"), params))
    assert answers["hr"] != answers["finance"]
    backend.close()


def test_a_reload_lets_running_requests_finish_on_the_old_models(adapters, tiny_model_dir, tmp_path):
    models_dir = tmp_path / "models"
    write_registry(models_dir, {"hr": {"kind": "adapter", "path": str(adapters["hr"])}})
    backend = loaded(models_dir, tiny_model_dir)
    question, params = ask("When is Form 16 issued?"), GenerationParams(max_new_tokens=200)
    before = run(backend.generate("finance", question, params))  # finance on base
    old_engine = backend._served["finance"].engine

    async def scenario():
        running = asyncio.create_task(backend.generate("finance", question, params))
        while old_engine.stats.decode_steps < before.completion_tokens + 5:
            await asyncio.sleep(0.002)
        # Holding the backend's step lock stalls the old engine mid-request while the new models load.
        with backend._runtime._step_lock:
            write_registry(models_dir, {d: {"kind": "adapter", "path": str(adapters[d])} for d in ("hr", "finance")})
            await asyncio.to_thread(backend.reload)
            assert not running.done()
        after = await backend.generate("finance", question, params)
        return await running, after

    during, after = run(scenario())
    assert during == before  # started on the old models, finished on them
    assert after != before  # the new finance adapter serves new requests
    deadline = time.monotonic() + 10
    while True:  # drained, the old engine stops and takes nothing more
        try:
            run(_submit_empty(old_engine))
        except EngineStopped:
            break
        assert time.monotonic() < deadline, "the retired engine kept running"
        time.sleep(0.01)
    backend.close()


async def _submit_empty(engine: BatchEngine) -> None:
    ticket = engine.submit(DecodeRequest([1], None, GenerationParams(max_new_tokens=0), frozenset()))
    await ticket.result


async def _collect(stream):
    parts = [delta async for delta in stream]
    return parts, stream.result


# --- failures: a broken step fails its own rows, never the engine -----------------------


class FlakyModel:
    """The tiny Llama, except that some forward passes go wrong on purpose.

    `raise_next` forward passes raise; `widen_next` decode steps return logits wider than
    the vocabulary, whose argmax is a token the engine cannot record (an error that
    escapes the step's own guard and reaches the batch loop).
    """

    def __init__(self, model) -> None:
        self.model, self.device = model, model.device
        self.raise_next = self.widen_next = 0

    def __call__(self, **inputs):
        if self.raise_next:
            self.raise_next -= 1
            raise RuntimeError("forward failed on purpose")
        output = self.model(**inputs)
        if self.widen_next and "logits_to_keep" not in inputs:  # a decode step (prefill keeps one logit)
            self.widen_next -= 1
            output.logits = torch.nn.functional.pad(output.logits, (0, 8), value=1e4)
        return output


@pytest.fixture
def flaky(tiny_model_dir):
    return FlakyModel(load_causal_lm(tiny_model_dir))


def plain_request(n: int = 5) -> DecodeRequest:
    return DecodeRequest([1, 2, 3, 4], None, GenerationParams(max_new_tokens=n, repetition_penalty=1.0), frozenset())


async def outcomes(engine: BatchEngine, count: int) -> list:
    tickets = [engine.submit(plain_request()) for _ in range(count)]
    return await asyncio.gather(*(t.result for t in tickets), return_exceptions=True)


def test_a_forward_that_raises_once_fails_only_its_request(flaky):
    engine = BatchEngine(flaky, window_s=0.05)
    flaky.raise_next = 1  # the first prefill
    first = run(outcomes(engine, 1))
    assert isinstance(first[0], RuntimeError)
    assert all(len(d.token_ids) == 5 for d in run(outcomes(engine, 3)))
    assert engine.failure is None
    engine.close(drain=True)


def test_an_error_escaping_the_step_fails_that_batch_and_the_loop_restarts(flaky):
    engine = BatchEngine(flaky, window_s=0.05)
    flaky.widen_next = 1
    failed = run(outcomes(engine, 3))
    assert all(isinstance(outcome, IndexError) for outcome in failed)  # the rows of the broken step
    later = run(outcomes(engine, 3))
    assert all(len(d.token_ids) == 5 for d in later)  # the same engine serves on
    assert engine.failure is None
    engine.close(drain=True)


def test_a_loop_that_keeps_failing_stops_the_engine_and_readiness_says_why(models_dir, tiny_model_dir):
    backend = loaded(models_dir, tiny_model_dir)
    engine = backend._entry("base").engine  # the shared model's engine, wrapped to break
    flaky = FlakyModel(engine._model)
    engine._model = flaky
    flaky.widen_next = 1000
    for _ in range(4):
        with pytest.raises((IndexError, EngineStopped)):
            run(backend.generate("base", ask("hi"), GenerationParams(max_new_tokens=4, repetition_penalty=1.0)))
    assert engine.failure and "failed 3 times in a row" in engine.failure
    assert "IndexError" in backend.problem
    backend.close()


# --- prefix cache ------------------------------------------------------------------------


def test_a_repeated_prefix_is_not_computed_again_and_answers_do_not_change(peft_model, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    params = GenerationParams(max_new_tokens=12, repetition_penalty=1.2)
    first = DecodeRequest(prompt_ids(tokenizer, "hr", "How many casual leaves do I get?"), "hr", params, frozenset())
    second = DecodeRequest(prompt_ids(tokenizer, "hr", "Who approves my comp-off?"), "hr", params, frozenset())
    shared = next(i for i, (a, b) in enumerate(zip(first.prompt_ids, second.prompt_ids)) if a != b)
    assert shared > 40  # the system prompt and chat template
    engine = BatchEngine(peft_model, window_s=0)

    async def answer(request: DecodeRequest) -> list[int]:
        return (await engine.submit(request).result).token_ids

    answers = [run(answer(request)) for request in (first, second, second)]
    stats = engine.stats
    engine.close(drain=True)
    # The second prompt reuses the system prompt; the same prompt again reuses all but its last token.
    assert stats.reused_tokens == shared + len(second.prompt_ids) - 1
    assert stats.prefill_tokens == len(first.prompt_ids) + len(second.prompt_ids) - shared + 1
    assert answers[1] == answers[2] == solo_greedy(peft_model, tokenizer, second)


def test_prefix_cache_keeps_adapters_apart_and_forgets_the_least_recent():
    from transformers import DynamicCache

    from inference.prefix_cache import MIN_REUSE_TOKENS, PrefixCache

    def cache_of(n: int) -> DynamicCache:
        return DynamicCache([(torch.zeros(1, 1, n, 2), torch.zeros(1, 1, n, 2))])

    prefixes = PrefixCache(capacity=2)
    tokens = list(range(40))
    prefixes.store("hr", tokens, cache_of(40))
    assert prefixes.lookup("finance", tokens)[0] == 0  # another adapter computes other values
    reused, cache = prefixes.lookup("hr", tokens + [99])
    assert reused == 40 and cache.get_seq_length() == 40
    assert prefixes.lookup("hr", tokens)[0] == 39  # the last token is always computed
    assert prefixes.lookup("hr", tokens[: MIN_REUSE_TOKENS - 1] + [7] * 30)[0] == 0  # too short to bother
    prefixes.store("hr", [5] * 30, cache_of(30))
    prefixes.store("hr", [6] * 30, cache_of(30))  # capacity 2: the 0..39 prompt goes
    assert prefixes.lookup("hr", tokens + [99])[0] == 0


# --- the batch's stacked KV cache --------------------------------------------------------


def test_rows_of_different_lengths_are_left_padded_and_a_dropped_row_takes_its_padding_along():
    from transformers import DynamicCache

    from inference.batch_cache import Batch

    def prefilled(length: int, value: float) -> DynamicCache:
        return DynamicCache([(torch.full((1, 2, length, 4), value), torch.full((1, 2, length, 4), -value))] * 2)

    batch: Batch[str] = Batch("cpu")
    batch.add("short", prefilled(3, 1.0), torch.tensor([[True, False]]))
    batch.add("long", prefilled(5, 2.0), torch.tensor([[False, True]]))
    assert batch.rows == ["short", "long"]
    assert batch.mask.tolist() == [[False, False, True, True, True], [True] * 5]
    for layer in batch.cache.layers:
        assert layer.keys.shape == layer.values.shape == (2, 2, 5, 4)
        assert (layer.keys[0, :, :2] == 0).all() and (layer.keys[0, :, 2:] == 1).all()
        assert (layer.values[1] == -2).all()
    assert batch.seen.tolist() == [[True, False], [False, True]]

    batch.drop([1])  # the long row goes: the short one's padding columns are cut off
    assert batch.rows == ["short"]
    assert batch.mask.tolist() == [[True, True, True]]
    assert batch.cache.get_seq_length() == 3 and (batch.cache.layers[0].keys == 1).all()
    assert batch.seen.tolist() == [[True, False]]
    batch.drop([0])
    assert batch.rows == [] and batch.mask.shape == (0, 0)
