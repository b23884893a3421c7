"""Load Switchboard's training data into typed records.

Every loader returns fully valid records or raises DatasetError listing every
problem it found, so training never starts on half-broken data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.company import BUNDLED_COMPANY, load_company
from knowledge.handbook import Fact
from training.records import DatasetError, MappingSpec, Row
from training.schema import check_file_rows, check_handbook_file

DATA_DIR = BUNDLED_COMPANY  # the example company, the default company folder
OUT_OF_SCOPE_FILE = Path("router") / "out_of_scope.jsonl"  # relative to a data dir


@dataclass(frozen=True)
class SftRecord:
    instruction: str
    input: str
    output: str
    fact: str
    line: int


@dataclass(frozen=True)
class EvalRecord:
    instruction: str
    input: str
    output: str
    fact: str
    expected: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class PreferenceRecord:
    prompt: str
    input: str
    chosen: str
    rejected: str
    fact: str
    line: int


@dataclass(frozen=True)
class NotCoveredRecord:
    instruction: str
    input: str
    line: int


@dataclass(frozen=True)
class DepartmentFiles:
    handbook: Path
    train: Path
    eval: Path
    preference: Path
    # Optional: more question phrasings per fact with short answers, for the
    # department models only (the router splits train.jsonl and is not fed these).
    paraphrases: Path
    # Optional: more ways people ask about each fact (instruction, fact), for
    # retrieval only: they teach the handbook index the words people use.
    phrasings: Path
    # Optional: questions in the department's field that the handbook does not
    # answer; grounded training teaches the "not covered" reply on the first,
    # evaluation measures it on the held-out second.
    not_covered: Path
    not_covered_eval: Path


def department_files(dept: str, data_dir: str | Path = DATA_DIR) -> DepartmentFiles:
    """Where a department's files live inside a company folder (they may not exist).

    Raises CompanyError (a ValueError) when the folder's departments.yaml does not list `dept`.
    """
    root = Path(data_dir) / load_company(data_dir).department(dept).id
    return DepartmentFiles(
        handbook=root / "handbook.md",
        train=root / "train.jsonl",
        eval=root / "eval.jsonl",
        preference=root / "preference.jsonl",
        paraphrases=root / "paraphrases.jsonl",
        phrasings=root / "phrasings.jsonl",
        not_covered=root / "not_covered.jsonl",
        not_covered_eval=root / "not_covered_eval.jsonl",
    )


def _checked_rows(path: str | Path, kind: str, mapping: MappingSpec) -> list[Row]:
    rows, problems = check_file_rows(path, kind, mapping)
    if problems:
        raise DatasetError(problems)
    return rows


def load_sft(path: str | Path, mapping: MappingSpec = None) -> list[SftRecord]:
    """Alpaca-style SFT records (instruction, input, output, fact)."""
    records = []
    for row in _checked_rows(path, "sft", mapping):
        v = row.values
        records.append(SftRecord(v["instruction"], v.get("input", ""), v["output"], v["fact"], row.line))
    return records


def load_eval(path: str | Path, mapping: MappingSpec = None) -> list[EvalRecord]:
    """Held-out questions with the strings a correct answer must contain."""
    records = []
    for row in _checked_rows(path, "eval", mapping):
        v = row.values
        records.append(EvalRecord(v["instruction"], v.get("input", ""), v["output"], v["fact"],
                                  tuple(v["expected"]), row.line))
    return records


def load_preferences(path: str | Path, mapping: MappingSpec = None) -> list[PreferenceRecord]:
    """Chosen/rejected answer pairs for preference tuning."""
    records = []
    for row in _checked_rows(path, "preference", mapping):
        v = row.values
        records.append(PreferenceRecord(v["prompt"], v.get("input", ""), v["chosen"], v["rejected"],
                                        v.get("fact", ""), row.line))
    return records


def load_questions(path: str | Path, mapping: MappingSpec = None) -> list[EvalRecord]:
    """A question bank to score (`switchboard eval --file`): instruction and expected, the rest optional."""
    records = []
    for row in _checked_rows(path, "questions", mapping):
        v = row.values
        records.append(EvalRecord(v["instruction"], v.get("input", ""), v.get("output", ""), v.get("fact", ""),
                                  tuple(v["expected"]), row.line))
    return records


def load_not_covered(path: str | Path, mapping: MappingSpec = None) -> list[NotCoveredRecord]:
    """Questions in the department's field that its handbook does not answer."""
    return [NotCoveredRecord(row.values["instruction"], row.values.get("input", ""), row.line)
            for row in _checked_rows(path, "not_covered", mapping)]


def load_out_of_scope(path: str | Path, mapping: MappingSpec = None) -> list[str]:
    """Texts the router must send to no department."""
    return [row.values["text"] for row in _checked_rows(path, "out_of_scope", mapping)]


def load_handbook(path: str | Path) -> list[Fact]:
    """A department handbook's facts, in file order."""
    facts, problems = check_handbook_file(path)
    if problems:
        raise DatasetError(problems)
    return facts
