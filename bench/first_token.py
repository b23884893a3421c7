"""Time to first token for grounded prompts, with and without the prefix cache, same run.

    python -m bench.first_token [--questions 4]

On the real SmolLM2, each department's eval questions are asked one at a time as they are
served with grounding: system prompt, rules, the 3 handbook entries retrieval finds, the
question. Time to first token is the prefill (the engine's own clock). Engines: torch
without and with its prefix cache, and llama.cpp on the base GGUF as it serves (q8_0), which
keeps the KV cache of its last prompt (when installed). Prints, per engine:
the first question of each department (nothing to reuse), the later ones (the department's
system prompt and rules are cached), and the same question asked again (a conversation's
next turn reuses its whole history the same way); p50 over departments and questions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from core.company import load_company
from core.messages import Turn
from gateway.settings import Settings
from inference import llamacpp
from inference.artifacts import load_causal_lm
from inference.base import GenerationParams
from inference.base_model import resolve_base_model
from inference.batching import BatchEngine
from inference.chat_format import encode_chat
from inference.tickets import DecodeRequest
from knowledge.library import HandbookLibrary
from training.datasets import department_files, load_eval


def prompts(tokenizer, questions: int) -> dict[str, list[list[int]]]:
    company = load_company()
    library, system = HandbookLibrary(company), company.system_prompts()
    asked = {}
    for department in company.ids:
        records = load_eval(department_files(department).eval)[:questions]
        asked[department] = [
            encode_chat(tokenizer, system[department], [Turn("user", r.instruction)], add_generation_prompt=True,
                        grounding=library.retrieve(department, r.instruction, 3))
            for r in records
        ]
    return asked


def first_token_seconds(engine: Any, prompt: list[int]) -> float:
    request = DecodeRequest(prompt, None, GenerationParams(max_new_tokens=1), frozenset())

    async def ask() -> float:
        started = time.perf_counter()
        decoded = await engine.submit(request).result
        return decoded.first_token_at - started

    return asyncio.run(ask())


def main() -> None:
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=4, help="eval questions per department")
    args = parser.parse_args()
    base_path = resolve_base_model(Settings().base_model, Settings().home)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = load_causal_lm(base_path)
    asked = prompts(tokenizer, args.questions)
    lengths = [len(p) for ps in asked.values() for p in ps]
    print(f"grounded prompts: {len(lengths)}, {statistics.median(lengths):.0f} tokens p50 "
          f"(SmolLM2-135M, fp32, CPU); time to first token, p50 in ms")
    print(f"{'engine':<22}{'first of dept':>15}{'later':>10}{'same again':>12}")
    rows = {}
    engines: dict[str, Callable[[], Any]] = {
        "no prefix cache": lambda: BatchEngine(model, window_s=0, prefix_capacity=0),
        "prefix cache": lambda: BatchEngine(model, window_s=0, prefix_capacity=8),
    }
    serving = Settings(backend="llamacpp").gguf_serving() if llamacpp.available() else None
    if serving is not None:  # the CPU default, as it serves the base; it keeps the KV cache of its last prompt
        engines[f"llama.cpp {serving.quant}"] = lambda: serving.open(serving.served_base(base_path))
    for label, make_engine in engines.items():
        engine = make_engine()
        first_token_seconds(engine, asked[next(iter(asked))][0])  # warm-up: allocator, threads
        engine.close(drain=True)
        engine.join()
        engine = make_engine()
        first, later, again = [], [], []
        for prompts_of_department in asked.values():
            for i, prompt in enumerate(prompts_of_department):
                (first if i == 0 else later).append(first_token_seconds(engine, prompt))
            again.append(first_token_seconds(engine, prompts_of_department[-1]))
        engine.close(drain=True)
        engine.join()
        rows[label] = [statistics.median(x) for x in (first, later, again)]
        print(f"{label:<22}" + "".join(f"{v * 1000:>{w}.0f}" for v, w in zip(rows[label], (15, 10, 12))))
    plain, cached = rows["no prefix cache"], rows["prefix cache"]
    print(f"speed-up from the cache: later questions {plain[1] / cached[1]:.2f}x, same again "
          f"{plain[2] / cached[2]:.2f}x; a department's later vs first question {cached[0] / cached[1]:.2f}x")
    if serving is not None:
        first, later, _ = rows[f"llama.cpp {serving.quant}"]
        print(f"llama.cpp: a department's later vs first question {first / later:.2f}x")


if __name__ == "__main__":
    main()
