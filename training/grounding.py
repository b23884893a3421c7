"""Retrieval-aware fine-tuning (RAFT, Zhang et al. 2024): examples that show handbook entries.

The untrained base model ignores entries put in its prompt, so it is taught to
read them. Each training question is shown the entries retrieval finds for it,
with its own fact (the oracle) always among them, and its answer starts with the
oracle's id. A share of questions is shown other facts only and answered with
the department's "not covered" reply, as are the questions written to be
outside the handbook (`not_covered.jsonl`): that is how the model learns to say
so instead of inventing a number.

Training questions are themselves in the index, so searching for one finds its
own fact first every time; served questions are new, and their fact is first
for only 87-93% of them. Rankings are therefore cross-fitted: each training
question is searched in an index built without the fold of questions it belongs
to, so the model sees the entry order it will meet in service and learns when
to look past the first entry.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.messages import Entry, Grounding
from inference.chat_format import cite
from knowledge.index import FactIndex
from knowledge.library import DepartmentKnowledge
from training.datasets import PreferenceRecord, SftRecord
from training.examples import Example, PreferenceExample, user_text

FOLDS = 5
Order = Literal["retrieved", "shuffled"]


@dataclass(frozen=True)
class GroundingPlan:
    """Entries per prompt, how often none of them is the answer, and their order
    ("retrieved": best first, as served; "shuffled": RAFT's random order)."""

    k: int = 3
    no_oracle_share: float = 0.05
    order: Order = "retrieved"
    seed: int = 0
    # "entry": the oracle entry's text, as the handbook words it; "record": the record's own answer.
    answer: Literal["record", "entry"] = "entry"


class Grounder:
    """Builds a department's grounded examples from its knowledge."""

    def __init__(self, knowledge: DepartmentKnowledge, plan: GroundingPlan) -> None:
        self.knowledge = knowledge
        self.plan = plan
        self._random = random.Random(plan.seed)
        index = knowledge.index
        # Fold f's index holds every question except those of fold f.
        self._folds = [
            FactIndex(index.facts, {fact: [q for q in asked if _fold(q) != fold] for fact, asked in index.questions.items()})
            for fold in range(FOLDS)
        ]

    @property
    def not_covered(self) -> str:
        return self.knowledge.not_covered

    def examples(self, records: Sequence[SftRecord], not_covered_questions: Sequence[str] = ()) -> list[Example]:
        examples = []
        for record in records:
            question = user_text(record.instruction, record.input)
            if self._random.random() < self.plan.no_oracle_share:
                examples.append(Example(question, self.not_covered, self._without(question, record.fact)))
            else:
                grounding = self._with(question, record.fact)
                answer = record.output
                if self.plan.answer == "entry":
                    answer = next(e.text for e in grounding.entries if e.id == record.fact)
                examples.append(Example(question, cite(record.fact, answer), grounding))
        examples += [Example(q, self.not_covered, self.retrieved(q)) for q in not_covered_questions]
        return examples

    def preferences(self, records: Sequence[PreferenceRecord]) -> list[PreferenceExample]:
        """Preference pairs shown the oracle like SFT examples; both answers cite it, so the
        pair differs only in what the answer says."""
        pairs = []
        for record in records:
            question = user_text(record.prompt, record.input)
            if record.fact:
                pairs.append(PreferenceExample(question, cite(record.fact, record.chosen),
                                               cite(record.fact, record.rejected), self._with(question, record.fact)))
            else:
                pairs.append(PreferenceExample(question, record.chosen, record.rejected, self.retrieved(question)))
        return pairs

    def retrieved(self, question: str) -> Grounding:
        """What serving shows for a question that is not in the index."""
        return self._grounding(self.knowledge.index.search(question, self.plan.k))

    def _ranked(self, question: str) -> list[Entry]:
        index = self._folds[_fold(question)]
        return index.search(question, len(index.facts))

    def _with(self, question: str, fact: str) -> Grounding:
        """The top k with the oracle kept, or put in last place when retrieval missed it."""
        ranked = self._ranked(question)
        top = ranked[: self.plan.k]
        if all(entry.id != fact for entry in top):
            top[-1] = next(entry for entry in ranked if entry.id == fact)
        return self._grounding(top)

    def _without(self, question: str, fact: str) -> Grounding:
        return self._grounding([entry for entry in self._ranked(question) if entry.id != fact][: self.plan.k])

    def _grounding(self, entries: list[Entry]) -> Grounding:
        if self.plan.order == "shuffled":
            self._random.shuffle(entries)
        return Grounding(tuple(entries), self.not_covered)


def _fold(question: str) -> int:
    return zlib.crc32(question.strip().casefold().encode()) % FOLDS
