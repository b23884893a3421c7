"""Single-stream decode: Switchboard's runtimes against llama.cpp itself, same model, prompt and tokens, same run.

    python -m bench.llamacpp_anchor [--tokens 96] [--rounds 5]

The anchor is llama.cpp (llama-cpp-python's own generate loop) on the GGUF the bundled
model ships as (Q4_1, as users would try it). Against it:
- Switchboard's llama.cpp runtime (inference/llamacpp.py) on that same GGUF, and on the base
  converted to f16 (how the base and department models serve by default), q8_0 and f32 (exact);
  llama.cpp itself on the f16 file too, for the ratio on the served model;
- Switchboard's torch engine (inference/batching.py) on the fp32 cache.
Every run gets the same chat prompt token ids (a different first word each round, so no
run reuses another's cache) and decodes greedily, without a stop token, for `--tokens`
tokens on all cores. Prints time to first token and decode tokens/s (medians), the ratio
to llama.cpp, and the share of the memory-bandwidth bound: the time to read the weight
bytes once, measured in this run (for fp32 weights, as the issue defines it, and for the
bytes each model really reads).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.batching_throughput import read_bound_seconds
from core.company import load_company
from core.messages import Turn
from gateway.settings import Settings
from inference.artifacts import load_causal_lm
from inference.base import GenerationParams
from inference.base_model import bundled_gguf, resolve_base_model
from inference.batching import BatchEngine
from inference.chat_format import encode_chat
from inference.gguf_export import export_gguf
from inference.llamacpp import GgufServing, available, cpu_threads
from inference.tickets import DecodeRequest

QUESTION = "How many days of casual leave do I get in a year, and can I take them all at once?"


def llamacpp_run(llama: Any, prompt: list[int], tokens: int) -> tuple[float, float]:
    """(seconds to first token, decode tokens/s) for one greedy generation."""
    llama.reset()
    started = time.perf_counter()
    first = 0.0
    for n, _ in enumerate(llama.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0), start=1):
        if n == 1:
            first = time.perf_counter()
        if n == tokens:
            break
    return first - started, (tokens - 1) / (time.perf_counter() - first)


def engine_run(engine: Any, prompt: list[int], tokens: int) -> tuple[float, float]:
    request = DecodeRequest(prompt, None, GenerationParams(max_new_tokens=tokens, repetition_penalty=1.0), frozenset())

    async def ask() -> tuple[float, float]:
        started = time.perf_counter()
        decoded = await engine.submit(request).result
        ended = time.perf_counter()
        return decoded.first_token_at - started, (len(decoded.token_ids) - 1) / (ended - decoded.first_token_at)

    return asyncio.run(ask())


def main() -> None:
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not available():
        sys.exit("llama-cpp-python is not installed: make install (or pip install -e '.[llamacpp]')")
    from llama_cpp import Llama

    threads = cpu_threads()
    base_path = resolve_base_model(Settings().base_model, Settings().home)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    system = load_company().system_prompts()["base"]
    prompts = [encode_chat(tokenizer, f"Round {i}. {system}", [Turn("user", QUESTION)], add_generation_prompt=True)
               for i in range(args.rounds + 1)]
    model = load_causal_lm(base_path)
    fp32_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    work = Path(tempfile.mkdtemp(prefix="anchor-"))
    q8 = export_gguf(model, bundled_gguf(), work / "base.q8_0.gguf", "q8_0")
    f16 = export_gguf(model, bundled_gguf(), work / "base.f16.gguf", "f16")
    f32 = export_gguf(model, bundled_gguf(), work / "base.f32.gguf", "f32")
    llama = Llama(str(bundled_gguf()), n_ctx=1024, n_threads=threads, verbose=False)
    llama_f16 = Llama(str(f16), n_ctx=1024, n_threads=threads, verbose=False)
    runs = {
        "llama.cpp itself, Q4_1": (lambda p: llamacpp_run(llama, p, args.tokens), bundled_gguf().stat().st_size),
        "llama.cpp itself, f16": (lambda p: llamacpp_run(llama_f16, p, args.tokens), f16.stat().st_size),
    }
    engines = {
        "ours, llama.cpp Q4_1": (GgufServing(bundled_gguf(), "q4_1").open(bundled_gguf()),
                                       bundled_gguf().stat().st_size),
        "ours, llama.cpp f16 (served)": (GgufServing(bundled_gguf(), "f16").open(f16), f16.stat().st_size),
        "ours, llama.cpp q8_0": (GgufServing(bundled_gguf(), "q8_0").open(q8), q8.stat().st_size),
        "ours, llama.cpp f32 (exact)": (GgufServing(bundled_gguf(), "f32").open(f32), f32.stat().st_size),
        "ours, torch fp32": (BatchEngine(model, window_s=0, prefix_capacity=0), fp32_bytes),
    }
    for label, (engine, size) in engines.items():
        runs[label] = ((lambda e: lambda p: engine_run(e, p, args.tokens))(engine), size)
    for run, _ in runs.values():
        run(prompts[-1])  # warm-up
    # Round-robin, not one engine after another: this machine's speed drifts over minutes.
    rounds: dict[str, list[tuple[float, float]]] = {label: [] for label in runs}
    for prompt in prompts[:-1]:
        for label, (run, _) in runs.items():
            rounds[label].append(run(prompt))
    results = {label: (statistics.median(r[0] for r in rounds[label]), statistics.median(r[1] for r in rounds[label]),
                       size) for label, (_, size) in runs.items()}
    for engine, _ in engines.values():
        engine.close(drain=True)
        engine.join()
    seconds_per_byte = read_bound_seconds(fp32_bytes) / fp32_bytes
    fp32_bound = 1 / (seconds_per_byte * fp32_bytes)
    print(f"SmolLM2-135M-Instruct, {len(prompts[0])}-token chat prompt, {args.tokens} new tokens, {threads} threads, "
          f"median of {args.rounds}; memory bandwidth {1 / seconds_per_byte / 1e9:.1f} GB/s, fp32 bound "
          f"{fp32_bound:.1f} tokens/s")
    anchor = results["llama.cpp itself, Q4_1"][1]
    same_model = results["ours, llama.cpp f16 (served)"][1] / results["llama.cpp itself, f16"][1]
    print(f"  {'':29} {'first token':>11} {'decode':>12} {'vs llama.cpp':>12} {'of fp32 bound':>13} "
          f"{'of own bound':>12}")
    for label, (first, rate, size) in results.items():
        own_bound = 1 / (seconds_per_byte * size)
        print(f"  {label:<29} {first * 1000:8.0f} ms {rate:6.1f} tok/s {rate / anchor:11.2f}x {rate / fp32_bound:12.0%} "
              f"{rate / own_bound:11.0%}  ({size / 2**20:.0f} MiB)")
    print(f"  served f16 model, ours / llama.cpp itself on that file: {same_model:.2f}x")
    print("  targets: >= 0.8x llama.cpp; >= 50% of the fp32 bandwidth bound")


if __name__ == "__main__":
    main()
