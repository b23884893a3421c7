"""Continuous batching vs one request at a time on the real SmolLM2, same run.

    python bench/batching_throughput.py [--tokens 32] [--turns 2] [--levels 1,4,8,16]

The five departments get LoRA adapters (all-linear, r=16, like training's
default recipe) that are untrained: random A, and B drawn small but non-zero so
each adapter changes the outputs. That is enough to time mixed-adapter batches,
not to judge answers.

Prints, all measured in this run on this machine:
- throughput (generated tokens/s) and p50/p95 request latency at each number of
  concurrent conversations spread over the five departments, for the batching
  backend (max_batch_size=16) and one request at a time (max_batch_size=1), and
  the ratios at 8 and 16 concurrent (targets >= 4x and >= 6x);
- single-stream decode tokens/s against the memory-bandwidth bound: the time to
  read the model's weight bytes once, as the sum of one tensor that size
  (target >= 50%); a bare forward loop on the plain model is shown beside it;
- parameter bytes: one base + five adapters vs five merged full copies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from core.company import load_company
from core.messages import Turn
from gateway.settings import Settings
from inference import llamacpp
from inference.artifacts import attach_adapter, load_causal_lm
from inference.base import GenerationParams
from inference.base_model import resolve_base_model
from inference.batching import BatchEngine
from inference.chat_format import encode_chat
from inference.local import LocalBackend
from inference.registry import REGISTRY_FILE, Artifact
from inference.tickets import DecodeRequest

DEPARTMENTS = load_company().ids  # the bundled example company

QUESTIONS = (
    "How many casual leaves do I get in a year?",
    "When is Form 16 issued and what does it contain?",
    "What should I do after a minor burn at home?",
    "Write a short tagline for a new eco-friendly water bottle.",
    "How do I handle a customer who says our price is too high?",
    "Explain how compound interest works with an example.",
    "What is the process for claiming travel reimbursement?",
    "Give me three tips for a good product demo.",
)
FOLLOW_UP = "Can you explain that in more detail?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32, help="max new tokens per reply")
    parser.add_argument("--turns", type=int, default=2, help="requests per conversation, one after another")
    parser.add_argument("--levels", default="1,4,8,16", help="concurrent conversations to measure")
    parser.add_argument("--single-tokens", type=int, default=48, help="tokens for the single-stream decode rate")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    settings = Settings(models_dir=None)
    base_path = resolve_base_model(settings.base_model, settings.home, show_progress=True)
    params = settings.generation_defaults().override(max_new_tokens=args.tokens)
    with tempfile.TemporaryDirectory(prefix="bench-adapters-") as scratch:
        models_dir = Path(scratch)
        adapters = make_adapters(base_path, models_dir)
        print(f"base {base_path}; adapters for {', '.join(adapters)}; {params}")
        memory_report(base_path, adapters)
        single_stream_report(base_path, adapters, args.single_tokens)
        throughput_report(base_path, models_dir, levels, params, args.turns)


def make_adapters(base_path: str, models_dir: Path) -> dict[str, Path]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path)
    paths: dict[str, Path] = {}
    for seed, department in enumerate(DEPARTMENTS):
        torch.manual_seed(seed)
        peft = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
        with torch.no_grad():
            for name, parameter in peft.named_parameters():
                if "lora_B" in name:  # PEFT starts B at zero, which would leave outputs unchanged
                    parameter.normal_(std=0.02)
        paths[department] = models_dir / department
        peft.save_pretrained(paths[department])
        model = peft.unload()
    live = {d: {"live": {"kind": "adapter", "path": str(p)}} for d, p in paths.items()}
    (models_dir / REGISTRY_FILE).write_text(json.dumps({"departments": live}))
    return paths


def parameter_bytes(model: Any, only: str | None = None) -> int:
    return sum(
        p.numel() * p.element_size() for name, p in model.named_parameters() if only is None or only in name
    )


def memory_report(base_path: str, adapters: dict[str, Path]) -> None:
    model = load_causal_lm(base_path)
    base_bytes = parameter_bytes(model)
    for department, path in adapters.items():
        model = attach_adapter(model, Artifact(department, "adapter", path))
    adapter_bytes = parameter_bytes(model, only="lora_")
    shared = base_bytes + adapter_bytes
    merged = len(adapters) * base_bytes
    print("\nparameter memory")
    print(f"  one base + {len(adapters)} adapters : {shared / 2**20:8.1f} MiB "
          f"(base {base_bytes / 2**20:.1f} + adapters {adapter_bytes / 2**20:.1f})")
    print(f"  {len(adapters)} merged full copies   : {merged / 2**20:8.1f} MiB  ({merged / shared:.1f}x more)")


def read_bound_seconds(nbytes: int, rounds: int = 9) -> float:
    """Fastest time to read `nbytes` once: the sum of an fp32 tensor that size."""
    data = torch.ones(nbytes // 4)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        data.sum()
        times.append(time.perf_counter() - started)
    return min(times)


def single_stream_report(base_path: str, adapters: dict[str, Path], tokens: int) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    system = load_company().system_prompts()["base"]
    prompt = encode_chat(tokenizer, system, [Turn("user", QUESTIONS[0])], add_generation_prompt=True)
    plain = load_causal_lm(base_path)
    weight_bytes = parameter_bytes(plain)
    served = load_causal_lm(base_path)  # its own copy: attaching adapters rewrites the model's layers
    for department, path in adapters.items():
        served = attach_adapter(served, Artifact(department, "adapter", path))
    engine = BatchEngine(served, max_batch_size=1)

    async def engine_rate(adapter: str | None) -> float:
        # No stop tokens: every run decodes exactly `tokens` tokens.
        request = DecodeRequest(prompt, adapter, GenerationParams(max_new_tokens=tokens), frozenset())
        ticket = engine.submit(request, stream=True)
        stamps = []
        assert ticket.tokens is not None
        while await ticket.tokens.get() is not None:
            stamps.append(time.perf_counter())
        await ticket.result
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])  # decode only: from the first token on

    def bare_rate(model: Any, **adapter: Any) -> float:
        """A plain greedy loop of forward passes: no engine, no scheduling."""
        from transformers import DynamicCache

        with torch.inference_mode():
            cache = DynamicCache()
            ids = torch.tensor([prompt])
            logits = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1, **adapter).logits
            token = logits[:, -1].argmax(-1)
            started = time.perf_counter()
            for _ in range(tokens - 1):
                token = model(input_ids=token[:, None], cache=cache, use_cache=True, **adapter).logits[:, -1].argmax(-1)
            return (tokens - 1) / (time.perf_counter() - started)

    adapter = DEPARTMENTS[0]
    measures = {
        "bare loop, plain model": lambda: bare_rate(plain),
        f"bare loop, PEFT, {adapter}": lambda: bare_rate(served, adapter_names=[adapter]),
        "engine, base row": lambda: asyncio.run(engine_rate(None)),
        f"engine, {adapter} adapter row": lambda: asyncio.run(engine_rate(adapter)),
    }
    asyncio.run(engine_rate(None))  # warm-up
    rounds, bounds = 3, []
    rates: dict[str, list[float]] = {label: [] for label in measures}
    for _ in range(rounds):  # interleaved, so load drift hits every measure alike
        bounds.append(read_bound_seconds(weight_bytes))
        for label, measure in measures.items():
            rates[label].append(measure())
    engine.close(drain=True)
    bound = 1 / min(bounds)
    print(f"\nsingle-stream decode ({tokens} tokens, median of {rounds})")
    print(f"  bandwidth bound             : {bound:6.1f} tokens/s  (reading {weight_bytes / 2**20:.0f} MiB once "
          f"at {weight_bytes * bound / 1e9:.1f} GB/s)")
    for label, values in rates.items():
        rate = statistics.median(values)
        print(f"  {label:<28}: {rate:6.1f} tokens/s  = {rate / bound:5.1%} of bound")
    print("  target: engine >= 50% of bound, adapter rows within 10% of base rows")


async def conversations(
    backend: LocalBackend, count: int, params: GenerationParams, turns: int
) -> tuple[int, list[float], float, dict[tuple[int, int], str]]:
    """`count` conversations at once; returns tokens generated, request latencies, wall time, replies."""
    latencies: list[float] = []
    replies: dict[tuple[int, int], str] = {}
    generated = 0

    async def conversation(index: int) -> None:
        nonlocal generated
        department = DEPARTMENTS[index % len(DEPARTMENTS)]
        history = [Turn("user", QUESTIONS[index % len(QUESTIONS)])]
        for turn in range(turns):
            started = time.perf_counter()
            reply = await backend.generate(department, history, params)
            latencies.append(time.perf_counter() - started)
            generated += reply.completion_tokens
            replies[index, turn] = reply.text
            history += [Turn("assistant", reply.text), Turn("user", FOLLOW_UP)]

    started = time.perf_counter()
    await asyncio.gather(*(conversation(i) for i in range(count)))
    return generated, latencies, time.perf_counter() - started, replies


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def throughput_report(base_path: str, models_dir: Path, levels: list[int], params: GenerationParams, turns: int) -> None:
    prompts = load_company().system_prompts()
    backends = {
        "one at a time": LocalBackend(models_dir, prompts, device="cpu", max_batch_size=1),
        "batched": LocalBackend(models_dir, prompts, device="cpu", max_batch_size=16),
    }
    serving = Settings(backend="llamacpp").gguf_serving() if llamacpp.available() else None
    if serving is not None:  # the CPU default: each department's adapter merged and converted at load
        backends["llama.cpp"] = LocalBackend(models_dir, prompts, runtime=llamacpp.LlamaCppRuntime(serving))
    for backend in backends.values():
        backend.load(base_path)
        asyncio.run(conversations(backend, 1, params.override(max_new_tokens=4), 1))  # warm-up
    print(f"\nthroughput, {turns} requests per conversation, up to {params.max_new_tokens} tokens each")
    header = (f"{'concurrent':>10} | {'mode':<13} | {'tokens/s':>8} | {'p50 s':>6} | {'p95 s':>6} | {'tokens':>6} | "
              "same replies")
    print(header + "\n" + "-" * len(header))
    rates: dict[tuple[int, str], float] = {}
    for count in levels:
        seen: dict[tuple[int, int], str] = {}
        for mode, backend in backends.items():  # both modes back to back, so load drift hits both
            generated, latencies, wall, replies = asyncio.run(conversations(backend, count, params, turns))
            rates[count, mode] = generated / wall
            # Greedy: batched replies should equal the one-at-a-time ones (bar float near-ties);
            # llama.cpp's converted weights answer differently, so its replies are not compared.
            same = f"{sum(seen[key] == text for key, text in replies.items())}/{len(replies)}" \
                if mode == "batched" else ""
            seen = replies
            print(f"{count:>10} | {mode:<13} | {generated / wall:8.1f} | {percentile(latencies, 0.5):6.2f} | "
                  f"{percentile(latencies, 0.95):6.2f} | {generated:>6} | {same}")
    stats = backends["batched"].batch_stats("base")
    steps = max(1, stats.decode_steps)
    print(f"batched engine: {stats.decode_steps} decode steps of {stats.rows_decoded / steps:.1f} rows on average "
          f"(at most {stats.max_rows}), {stats.decode_seconds / steps * 1000:.0f} ms each; {stats.prefills} prefills, "
          f"{stats.prefill_seconds / max(1, stats.prefills) * 1000:.0f} ms each; "
          f"{stats.joined_running} requests joined a running batch")
    for count in levels:
        print(f"batched / one at a time at {count:>2} concurrent: {rates[count, 'batched'] / rates[count, 'one at a time']:.2f}x"
              + {8: "  (target >= 4x)", 16: "  (target >= 6x)"}.get(count, ""))
        if (count, "llama.cpp") in rates:
            print(f"  llama.cpp / batched torch: {rates[count, 'llama.cpp'] / rates[count, 'batched']:.2f}x, "
                  f"/ torch one at a time: {rates[count, 'llama.cpp'] / rates[count, 'one at a time']:.2f}x")
    for backend in backends.values():
        backend.close()


if __name__ == "__main__":
    main()
