"""Tokens/s through Switchboard's pipeline vs a bare `model.generate`, same model, same run.

    python bench/pipeline_vs_generate.py [--tokens 96] [--rounds 3]

Both sides decode the same prompt with the same greedy settings on the same
loaded SmolLM2; rounds alternate so drift in machine load hits both equally.
Target: pipeline >= 0.9 of bare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import torch

from core.messages import IncomingMessage, Turn
from gateway.components import build_components
from gateway.settings import Settings
from inference.chat_format import encode_chat

PROMPT = "Write a detailed paragraph about the history of the Indian railways."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=96, help="max new tokens per reply")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    settings = Settings(max_new_tokens=args.tokens, models_dir=None)
    components = build_components(settings)
    components.start(show_progress=True)
    pipeline, backend = components.pipeline, components.backend
    served = backend._served["base"]
    model, tokenizer = served.model, served.tokenizer
    prompt_ids = encode_chat(tokenizer, backend._prompts["base"], [Turn("user", PROMPT)], add_generation_prompt=True)
    defaults = settings.generation_defaults()

    def bare() -> int:
        ids = torch.tensor([prompt_ids])
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.tokens,
                do_sample=False, repetition_penalty=defaults.repetition_penalty,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, len(prompt_ids):].tolist()
        return len(new) - (1 if new and new[-1] == tokenizer.eos_token_id else 0)

    async def through_pipeline() -> int:
        message = IncomingMessage("bench", f"bench:{uuid.uuid4()}", PROMPT)
        return (await pipeline.handle(message)).completion_tokens

    def timed(fn) -> float:
        started = time.perf_counter()
        tokens = fn()
        return tokens / (time.perf_counter() - started)

    timed(bare)  # warm-up: first call allocates caches
    bare_rates, pipeline_rates = [], []
    for _ in range(args.rounds):
        bare_rates.append(timed(bare))
        pipeline_rates.append(timed(lambda: asyncio.run(through_pipeline())))
    bare_rate, pipeline_rate = statistics.median(bare_rates), statistics.median(pipeline_rates)
    print(f"bare model.generate : {bare_rate:6.1f} tokens/s  (median of {args.rounds})")
    print(f"switchboard pipeline: {pipeline_rate:6.1f} tokens/s")
    print(f"ratio pipeline/bare : {pipeline_rate / bare_rate:.3f}  (target >= 0.9)")
    components.close()


if __name__ == "__main__":
    main()
