"""Which handbook facts answer a question: TF-IDF over each fact and the questions asked about it.

A fact's document is its handbook text plus every question written for it.
Questions carry the words people use ("privilege leave", "kitni chutti"), the
handbook the words policy uses: over the fact text alone the right fact is in
the top 3 for 57-83% of the held-out questions, with the questions for 94-100%
(`python -m bench.retrieval`). Word 1-2-grams match terms, character 3-5-grams
typos, inflections and Hinglish spellings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from core.messages import Entry
from knowledge.handbook import Fact

# How much the previous question of the same conversation counts, next to the new one:
# enough to carry "and for the third child?" to maternity leave, not enough to outvote
# a new question that names its own topic.
CONTEXT_WEIGHT = 0.5
# Longest entry text put in a prompt; longer facts are cut at a word boundary.
MAX_ENTRY_CHARS = 480


class FactIndex:
    """Ranks one department's facts for a question, in about 2 ms."""

    def __init__(self, facts: Sequence[Fact], questions: Mapping[str, Sequence[str]] | None = None) -> None:
        if not facts:
            raise ValueError("a handbook index needs at least one fact")
        self.facts = tuple(facts)
        self.questions = {fact_id: tuple(asked) for fact_id, asked in (questions or {}).items()}
        documents = [" ".join([fact.text, *self.questions.get(fact.id, ())]) for fact in self.facts]
        self._vectorizer = FeatureUnion([
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)),
        ])
        # Each half is L2-normalised; halving their concatenation makes scores cosines in [0, 1].
        self._matrix = self._vectorizer.fit_transform(documents).T.tocsr() * 0.5

    def scores(self, text: str, context: str = "") -> np.ndarray:
        """Cosine similarity of every fact to `text` (plus `context`, weighted down)."""
        query = self._vectorizer.transform([text, context] if context else [text])
        vector = query[0] + CONTEXT_WEIGHT * query[1] if context else query[0]
        norm = np.sqrt(vector.multiply(vector).sum()) / np.sqrt(2)
        if norm == 0:
            return np.zeros(len(self.facts))
        return np.asarray((vector @ self._matrix).todense()).ravel() / norm

    def search(self, text: str, k: int, context: str = "") -> list[Entry]:
        """The `k` best facts, best first."""
        scores = self.scores(text, context)
        best = np.argsort(-scores, kind="stable")[:k]
        return [_entry(self.facts[i], float(scores[i])) for i in best]


def _entry(fact: Fact, score: float) -> Entry:
    text = fact.text
    if len(text) > MAX_ENTRY_CHARS:
        text = text[:MAX_ENTRY_CHARS].rsplit(" ", 1)[0] + " …"
    return Entry(fact.id, text, round(score, 4), fact.section)
