"""Switchboard's engine against llama.cpp on the same model, prompt and token count, same run.

    pip install llama-cpp-python   # builds llama.cpp with the system compiler (minutes)
    python -m bench.llamacpp_anchor [--tokens 96] [--rounds 3]

llama.cpp runs the GGUF the bundled model ships as (Q4_1, as users would try it);
Switchboard's engine runs the converted fp32 cache it serves. Both get the same chat
prompt token ids and decode greedily, without a stop token, for `--tokens` tokens on all
cores. Prints time to first token and decode tokens/s (medians), and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

from core.company import load_company
from core.messages import Turn
from gateway.settings import Settings
from inference.artifacts import load_causal_lm
from inference.base import GenerationParams
from inference.base_model import bundled_gguf, resolve_base_model
from inference.batching import BatchEngine, DecodeRequest
from inference.chat_format import encode_chat

QUESTION = "How many days of casual leave do I get in a year, and can I take them all at once?"


def llamacpp_run(llama, prompt: list[int], tokens: int) -> tuple[float, float]:
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


def engine_run(engine: BatchEngine, prompt: list[int], tokens: int) -> tuple[float, float]:
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        from llama_cpp import Llama
    except ImportError:
        sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python (it builds llama.cpp, minutes)")
    threads = os.cpu_count() or 1
    base_path = resolve_base_model(Settings().base_model, Settings().home)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    prompt = encode_chat(tokenizer, load_company().system_prompts()["base"], [Turn("user", QUESTION)],
                         add_generation_prompt=True)
    llama = Llama(str(bundled_gguf()), n_ctx=1024, n_threads=threads, verbose=False)
    engine = BatchEngine(load_causal_lm(base_path), window_s=0, prefix_capacity=0)  # no reuse across rounds
    results = {}
    for label, run in (("llama.cpp, Q4_1 GGUF", lambda: llamacpp_run(llama, prompt, args.tokens)),
                       ("switchboard engine, fp32", lambda: engine_run(engine, prompt, args.tokens))):
        run()  # warm-up
        rounds = [run() for _ in range(args.rounds)]
        results[label] = (statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds))
    engine.close(drain=True)
    engine.join()
    print(f"SmolLM2-135M-Instruct, {len(prompt)}-token chat prompt, {args.tokens} new tokens, {threads} threads, "
          f"median of {args.rounds}")
    for label, (first, rate) in results.items():
        print(f"  {label:<26} first token {first * 1000:6.0f} ms   decode {rate:6.1f} tokens/s")
    (_, theirs), (_, ours) = results.values()
    print(f"  decode speed, ours / llama.cpp: {ours / theirs:.2f}x (target >= 0.8x)")


if __name__ == "__main__":
    main()
