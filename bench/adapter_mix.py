"""What a decode step costs as a batch mixes more departments: PEFT's mixed batch vs gathered LoRA.

    python bench/adapter_mix.py [--rows 8] [--steps 24] [--context 96]

On the real SmolLM2 with five untrained LoRA adapters (all-linear, r=16, B non-zero),
both ways of serving them are timed in this run on the same batch of `rows` rows, each
with `context` tokens already in its KV cache: decode steps with every row on the base
model, every row on one adapter, and the rows spread over all five adapters. Prints the
median step time and its ratio to the all-base step. PEFT loops over the distinct adapters
in every layer; the gathered layers (inference/gathered_lora.py) run one batched matmul
pair for any mix, so their five-adapter step should cost about what a one-adapter step does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.batching_throughput import make_adapters
from gateway.settings import Settings
from inference.artifacts import attach_adapter, load_causal_lm
from inference.base_model import resolve_base_model
from inference.gathered_lora import NO_ADAPTER, gather_adapters
from inference.registry import Artifact


def load(base_path: str, adapters: dict[str, Path]) -> Any:
    model = load_causal_lm(base_path)
    for department, path in adapters.items():
        model = attach_adapter(model, Artifact(department, "adapter", path))
    return model


def step_seconds(model: Any, rows: list[str | None], steps: int, context: int, gathered: bool) -> float:
    """Median time of one decode step for these rows' adapters, after a `context`-token prefill."""
    from transformers import DynamicCache

    torch.manual_seed(0)
    ids = torch.randint(100, 10_000, (len(rows), context))

    def forward(input_ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        if gathered:
            model.adapter_rows.select(rows, "cpu")
            return model(input_ids=input_ids, cache=cache, use_cache=True).logits
        names = [row or NO_ADAPTER for row in rows]
        return model(input_ids=input_ids, cache=cache, use_cache=True, adapter_names=names).logits

    times = []
    with torch.inference_mode():
        cache = DynamicCache()
        logits = forward(ids, cache)
        for _ in range(steps):
            started = time.perf_counter()
            logits = forward(logits[:, -1:].argmax(-1), cache)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--context", type=int, default=96)
    args = parser.parse_args()
    base_path = resolve_base_model(Settings().base_model, Settings().home)
    with tempfile.TemporaryDirectory() as folder:
        adapters = make_adapters(base_path, Path(folder))
        peft = load(base_path, adapters)
        gathered = gather_adapters(load(base_path, adapters))
    names = list(adapters)
    mixes = {
        "all base": [None] * args.rows,
        "one adapter": [names[0]] * args.rows,
        f"{len(names)} adapters": [names[i % len(names)] for i in range(args.rows)],
    }
    print(f"decode step, {args.rows} rows, {args.context} tokens of context, median of {args.steps} "
          f"(SmolLM2-135M, fp32, {torch.get_num_threads()} threads)")
    print(f"{'mix':<14}{'PEFT ms':>10}{'x base':>8}{'gathered ms':>14}{'x base':>8}{'PEFT / gathered':>17}")
    results = {}
    for label, rows in mixes.items():
        results[label] = (step_seconds(peft, rows, args.steps, args.context, gathered=False),
                          step_seconds(gathered, rows, args.steps, args.context, gathered=True))
    peft_base, gathered_base = results["all base"]
    for label, (p, g) in results.items():
        print(f"{label:<14}{p * 1000:>10.1f}{p / peft_base:>8.2f}{g * 1000:>14.1f}{g / gathered_base:>8.2f}{p / g:>17.2f}")


if __name__ == "__main__":
    main()
