"""Every department's handbook index, read from a data directory and re-read when it changes.

A department's folder holds `handbook.md` plus the questions written for its
facts (`train.jsonl`, `paraphrases.jsonl`, `phrasings.jsonl`, and the router's
`router/extra_<dept>.jsonl`). Editing any of them (a policy changes: casual
leave goes from 8 to 10 days) takes effect at the next `refresh()`, with no
retraining: the model reads the entry it is given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from core.company import Company, CompanyError, load_company
from core.files import file_signature
from core.messages import Grounding, Turn
from knowledge.handbook import Handbook, not_covered_reply, read_handbook
from knowledge.index import FactIndex

log = logging.getLogger(__name__)

HANDBOOK_FILE = "handbook.md"
# Questions written for each fact: the words people use, which the handbook's wording lacks.
QUESTION_FILES = ("train.jsonl", "paraphrases.jsonl", "phrasings.jsonl")
ROUTER_QUESTIONS = "router/extra_{department}.jsonl"  # relative to the data dir; `category` is the fact id

Signature = tuple[tuple[int, int] | None, ...]


@dataclass(frozen=True)
class DepartmentKnowledge:
    handbook: Handbook
    index: FactIndex
    signature: Signature
    not_covered: str  # the reply when no entry answers: names the department and its helpdesk


class HandbookLibrary:
    """`retrieve(department, text, k, history)` for every department with a handbook.

    Departments without one (such as `base`) get no grounding.
    """

    def __init__(self, company: Company) -> None:
        self.data_dir = company.root
        self.departments = company.ids
        self._loaded: dict[str, DepartmentKnowledge] = {}
        self.refresh()

    def handbook(self, department: str) -> Handbook | None:
        loaded = self._loaded.get(department)
        return loaded.handbook if loaded else None

    def retrieve(self, department: str, text: str, k: int, history: Sequence[Turn] = ()) -> Grounding | None:
        """The `k` facts that best answer `text`, best first; None when the department has no handbook.

        A follow-up ("and for the third child?") is searched together with the
        previous question when that one went to the same department.
        """
        loaded = self._loaded.get(department)
        if loaded is None:
            return None
        entries = loaded.index.search(text, k, context=previous_question(history, department))
        return Grounding(tuple(entries), loaded.not_covered)

    def refresh(self) -> list[str]:
        """Re-read the departments whose files changed; returns their names.

        A handbook that cannot be read keeps its previous index (and logs why).
        """
        changed = []
        for department in self.departments:
            signature = self._signature(department)
            loaded = self._loaded.get(department)
            if loaded is not None and loaded.signature == signature:
                continue
            if signature[0] is None:  # no handbook (any more)
                if self._loaded.pop(department, None) is not None:
                    changed.append(department)
                continue
            try:
                self._loaded[department] = load_department(self.data_dir, department, signature)
            except (OSError, ValueError) as error:
                log.error("%s: cannot read its handbook (%s); keeping the previous index", department, error)
                if loaded is not None:  # said once: not again until the files change again
                    self._loaded[department] = replace(loaded, signature=signature)
                continue
            changed.append(department)
        return changed

    def _signature(self, department: str) -> Signature:
        return tuple(file_signature(path) for path in department_files(self.data_dir, department))


def department_files(data_dir: Path, department: str) -> list[Path]:
    """The handbook first, then the files of questions written for its facts."""
    folder = data_dir / department
    return [folder / HANDBOOK_FILE, *(folder / name for name in QUESTION_FILES),
            data_dir / ROUTER_QUESTIONS.format(department=department)]


def load_department(data_dir: Path, department: str, signature: Signature = ()) -> DepartmentKnowledge:
    """A department's handbook and its index (raises OSError or ValueError if unreadable)."""
    handbook_path, *question_paths = department_files(Path(data_dir), department)
    handbook = read_handbook(handbook_path)
    try:
        config = load_company(data_dir).department(department)
        not_covered = not_covered_reply(config.name, config.helpdesk or handbook.helpdesk)
    except CompanyError:  # a loose folder of handbooks: the handbook names itself
        not_covered = handbook.not_covered
    fact_ids = {fact.id for fact in handbook.facts}
    questions: dict[str, list[str]] = {}
    for fact_id, question in (pair for path in question_paths for pair in read_questions(path)):
        if fact_id in fact_ids:
            questions.setdefault(fact_id, []).append(question)
    return DepartmentKnowledge(handbook, FactIndex(handbook.facts, questions), signature, not_covered)


def previous_question(history: Sequence[Turn], department: str) -> str:
    """The last user message, if the assistant's answer to it came from `department`."""
    for answer, question in zip(reversed(history[1:]), reversed(history[:-1])):
        if answer.role == "assistant" and question.role == "user":
            return question.content if answer.department == department else ""
    return ""


def read_questions(path: Path) -> list[tuple[str, str]]:
    """(fact id, question) pairs of a JSONL file; lines without both are skipped.

    `switchboard data validate` reports bad lines; the index only needs the good ones.
    """
    if not path.exists():
        return []
    pairs = []
    for line in path.read_text(encoding="utf-8-sig").split("\n"):
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        question = record.get("instruction", record.get("text"))
        fact = record.get("fact", record.get("category"))
        if isinstance(question, str) and isinstance(fact, str) and question.strip():
            pairs.append((fact, question))
    return pairs

