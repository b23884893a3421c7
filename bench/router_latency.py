"""Per-message latency of a trained router's `route()` on its held-out TEST split.

    python -m bench.router_latency ROUTER_DIR [--rounds 3]

One message at a time, empty history, as the gateway calls it; a warm-up pass
first so that lazy loading (MiniLM) is not counted. Target: p50 <= 5 ms.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.base import Router
from router.learned import load_learned_router
from training.datasets import DATA_DIR
from training.router_training import load_examples, split_examples


@dataclass(frozen=True)
class Latency:
    messages: int
    p50_ms: float
    p99_ms: float


def measure_latency(router: Router, texts: Sequence[str], rounds: int = 3) -> Latency:
    """p50/p99 milliseconds of `router.route(text, [])` over `rounds` passes of `texts`."""
    for text in texts[:20]:
        router.route(text, [])
    samples = []
    for _ in range(rounds):
        for text in texts:
            started = time.perf_counter()
            router.route(text, [])
            samples.append((time.perf_counter() - started) * 1000)
    return Latency(len(samples), float(np.percentile(samples, 50)), float(np.percentile(samples, 99)))


def test_texts(router_dir: Path, data_dir: Path = DATA_DIR) -> list[str]:
    """The texts of the TEST split the router in `router_dir` was held out from."""
    seed = load_learned_router(router_dir).metadata.seed
    return [e.text for e in split_examples(load_examples(data_dir), seed).test]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("router_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    router = load_learned_router(args.router_dir)
    latency = measure_latency(router, test_texts(args.router_dir, args.data_dir), args.rounds)
    print(f"{latency.messages} routes: p50 {latency.p50_ms:.2f} ms, p99 {latency.p99_ms:.2f} ms")


if __name__ == "__main__":
    main()
