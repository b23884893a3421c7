"""Validate a company folder across files, and describe its data.

Each check reports precise Problems (`hr/train.jsonl:57: field 'output' is
empty`) instead of stopping at the first, so one run lists everything to fix.
Checks that need only one file live in schema.py and run on every load; the
cross-file ones (fact ids, coverage, train/eval leakage) and the minimum sizes
of the bundled data run here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.company import COMPANY_FILE, CompanyError, load_company
from knowledge.handbook import Fact
from training.datasets import (
    DATA_DIR,
    OUT_OF_SCOPE_FILE,
    department_files,
    load_eval,
    load_handbook,
    load_preferences,
    load_sft,
)
from training.records import MappingSpec, Problem, Row, display_path, scan_rows
from training.schema import FIELDS, Kind, check_file_rows, check_handbook_file, infer_kind, plural

# Train/eval leakage: token-set Jaccard similarity of an eval instruction with
# any train instruction of the same department. At 0.5 at least half of all
# the words the two questions use are shared, i.e. the eval question is a light
# rewording of a train one and would measure recall of that question rather
# than knowledge of the fact; two genuinely different questions about the same
# fact share only topic words and stay well below it.
LEAK_JACCARD = 0.5
# A fact asked only once or twice in train is learnt as one phrasing; four
# differently worded questions make the model learn the fact itself.
MIN_TRAIN_QUESTIONS_PER_FACT = 4
MIN_EVAL_QUESTIONS_PER_FACT = 1

# Minimum sizes, enforced for the bundled data only: users' own data sets may
# be as small as they like.
MIN_BUNDLED_FACTS = 40
MIN_BUNDLED_TRAIN = 300
MIN_BUNDLED_EVAL = 60
MIN_BUNDLED_PREFERENCES = {"finance": 200}  # departments that must ship preference data
MIN_BUNDLED_OUT_OF_SCOPE = 150
MIN_BUNDLED_NOT_COVERED_EVAL = 40  # the abstention target is measured on at least this many

_TOKEN = re.compile(r"[a-z0-9]+")


# --- checks across files --------------------------------------------------


def check_fact_ids(rows: Sequence[Row], path: str | Path, fact_ids: set[str]) -> list[Problem]:
    """Records whose fact id is not one of the handbook's."""
    shown = display_path(path)
    problems = []
    for row in rows:
        fact = row.values.get("fact")
        if isinstance(fact, str) and fact.strip() and fact not in fact_ids:  # type problems are reported already
            problems.append(Problem(shown, row.line, "fact", f"is '{fact}', which is not in the handbook"))
    return problems


def _check_coverage(rows: Sequence[Row], path: str | Path, facts: Sequence[Fact], needed: int) -> list[Problem]:
    counts = Counter(row.values.get("fact") for row in rows)
    shown = display_path(path)
    seen: set[str] = set()
    problems = []
    for fact in facts:
        if fact.id not in seen and counts[fact.id] < needed:
            problems.append(Problem(shown, None, None,
                                    f"fact '{fact.id}' has {plural(counts[fact.id], 'record')}; "
                                    f"needs at least {needed}"))
        seen.add(fact.id)
    return problems


def _tokens(text: object) -> frozenset[str]:
    return frozenset(_TOKEN.findall(text.lower())) if isinstance(text, str) else frozenset()


def check_leakage(train_rows: Sequence[Row], train_path: str | Path,
                  eval_rows: Sequence[Row], eval_path: str | Path) -> list[Problem]:
    """Eval instructions that reword a train instruction (Jaccard >= LEAK_JACCARD)."""
    train = [(row.line, tokens) for row in train_rows if (tokens := _tokens(row.values.get("instruction")))]
    train_shown, eval_shown = display_path(train_path), display_path(eval_path)
    problems = []
    for row in eval_rows:
        tokens = _tokens(row.values.get("instruction"))
        if not tokens:
            continue
        best_line, best = 0, 0.0
        for line, train_tokens in train:
            score = len(tokens & train_tokens) / len(tokens | train_tokens)
            if score > best:
                best_line, best = line, score
        if best >= LEAK_JACCARD:
            problems.append(Problem(eval_shown, row.line, "instruction",
                                    f"leaks from {train_shown}:{best_line} (Jaccard {best:.2f} >= {LEAK_JACCARD})"))
    return problems


def _data_report(path: Path, kind: str, mapping: MappingSpec,
                 facts: Sequence[Fact] | None) -> tuple[list[Row], list[Problem]]:
    rows, problems = check_file_rows(path, kind, mapping)
    # Without facts (or without the file) the problem already reported says it
    # all; checking against nothing would flag every record or every fact.
    if facts and path.exists():
        problems += check_fact_ids(rows, path, {fact.id for fact in facts})
        if kind == "sft":
            problems += _check_coverage(rows, path, facts, MIN_TRAIN_QUESTIONS_PER_FACT)
        elif kind == "eval":
            problems += _check_coverage(rows, path, facts, MIN_EVAL_QUESTIONS_PER_FACT)
    return rows, problems


# --- public entry points --------------------------------------------------


def validate_file(path: str | Path, kind: Kind | None = None, mapping: MappingSpec = None,
                  handbook: str | Path | Sequence[Fact] | None = None) -> list[Problem]:
    """Every problem in one data file; with a handbook, also fact ids and coverage."""
    path = Path(path)
    kind = kind or infer_kind(path)
    if kind is None:
        return [Problem(display_path(path), None, None,
                        "cannot tell the kind of file from its name; pass kind= one of: "
                        f"{', '.join([*FIELDS, 'handbook'])}")]
    if kind == "handbook":
        return check_handbook_file(path)[1]
    facts, handbook_problems = None, []
    if isinstance(handbook, (str, Path)):
        facts, handbook_problems = check_handbook_file(Path(handbook))
    elif handbook is not None:
        facts = list(handbook)
    _, problems = _data_report(path, kind, mapping, facts)
    return problems + handbook_problems


def _is_bundled(data_dir: str | Path) -> bool:
    return Path(data_dir).resolve() == DATA_DIR.resolve()


def _too_few(path: Path, what: str, count: int, needed: int) -> list[Problem]:
    if not path.exists() or count >= needed:
        return []  # a missing file is already reported as such
    return [Problem(display_path(path), None, None,
                    f"has {plural(count, what)}; the bundled data needs at least {needed}")]


def validate_department(dept: str, data_dir: str | Path = DATA_DIR, *,
                        require_minimums: bool | None = None) -> list[Problem]:
    """Every problem in one department's handbook, train, eval and preference files.

    Minimum sizes apply to the bundled data only, unless require_minimums says otherwise.
    """
    files = department_files(dept, data_dir)
    minimums = _is_bundled(data_dir) if require_minimums is None else require_minimums
    prefix = load_company(data_dir).department(dept).fact_prefix
    facts, problems = check_handbook_file(files.handbook, dept, prefix)
    train_rows, train_problems = _data_report(files.train, "sft", None, facts)
    eval_rows, eval_problems = _data_report(files.eval, "eval", None, facts)
    problems += train_problems + eval_problems + check_leakage(train_rows, files.train, eval_rows, files.eval)
    if files.paraphrases.exists():
        paraphrase_rows, paraphrase_problems = _data_report(files.paraphrases, "sft", None, facts)
        problems += paraphrase_problems + check_leakage(paraphrase_rows, files.paraphrases, eval_rows, files.eval)
    if files.phrasings.exists():
        phrasing_rows, phrasing_problems = _data_report(files.phrasings, "phrasings", None, facts)
        problems += phrasing_problems + check_leakage(phrasing_rows, files.phrasings, eval_rows, files.eval)
    # Questions the handbook does not answer: training's, and the held-out ones abstention is scored on.
    outside_train: list[Row] = []
    outside_rows: list[Row] = []
    if files.not_covered.exists():
        outside_train, outside_problems = _data_report(files.not_covered, "not_covered", None, None)
        problems += outside_problems
    if files.not_covered_eval.exists() or minimums:
        outside_rows, outside_problems = _data_report(files.not_covered_eval, "not_covered", None, None)
        problems += outside_problems + check_leakage(outside_train, files.not_covered, outside_rows,
                                                     files.not_covered_eval)
    preference_rows: list[Row] = []
    if files.preference.exists() or (minimums and dept in MIN_BUNDLED_PREFERENCES):
        preference_rows, preference_problems = _data_report(files.preference, "preference", None, facts)
        problems += preference_problems
    if minimums:
        problems += _too_few(files.handbook, "fact", len({fact.id for fact in facts}), MIN_BUNDLED_FACTS)
        problems += _too_few(files.train, "record", len(train_rows), MIN_BUNDLED_TRAIN)
        problems += _too_few(files.eval, "record", len(eval_rows), MIN_BUNDLED_EVAL)
        problems += _too_few(files.preference, "pair", len(preference_rows), MIN_BUNDLED_PREFERENCES.get(dept, 0))
        problems += _too_few(files.not_covered_eval, "question", len(outside_rows), MIN_BUNDLED_NOT_COVERED_EVAL)
    return problems


def validate_bundle(data_dir: str | Path = DATA_DIR, *, require_minimums: bool | None = None) -> list[Problem]:
    """Every problem in a company folder: departments.yaml, each department's files, the router's data."""
    minimums = _is_bundled(data_dir) if require_minimums is None else require_minimums
    try:
        company = load_company(data_dir)
    except CompanyError as error:
        return [Problem(str(error.path or Path(data_dir) / COMPANY_FILE), error.line, None, error.detail)]
    problems = [problem for dept in company.ids
                for problem in validate_department(dept, data_dir, require_minimums=minimums)]
    problems += _router_files(Path(data_dir), company.targets)
    out_of_scope = Path(data_dir) / OUT_OF_SCOPE_FILE
    if not out_of_scope.exists() and not minimums:
        return problems  # the router then learns "out of scope" from the bundled example's set
    rows, router_problems = check_file_rows(out_of_scope, "out_of_scope")
    problems += router_problems
    if minimums:
        problems += _too_few(out_of_scope, "record", len(rows), MIN_BUNDLED_OUT_OF_SCOPE)
    return problems


def _router_files(data_dir: Path, targets: Sequence[str]) -> list[Problem]:
    """router/extra_<id>.jsonl and field_<id>.jsonl name a department (or base); field_eval.jsonl labels too."""
    problems: list[Problem] = []
    folder = data_dir / OUT_OF_SCOPE_FILE.parent
    for path in sorted([*folder.glob("extra_*.jsonl"), *folder.glob("field_*.jsonl")]):
        if path.name == "field_eval.jsonl":
            rows, file_problems = scan_rows(path)
            problems += file_problems + [
                Problem(display_path(path), row.line, "department", f"is {row.values.get('department')!r}; "
                        f"use one of {', '.join(targets)}")
                for row in rows if row.values.get("department") not in targets]
            continue
        target = path.stem.split("_", 1)[1]
        if target not in targets:
            problems.append(Problem(display_path(path), None, None, f"names {target!r}, which departments.yaml "
                                    f"does not list ({', '.join(targets)})"))
            continue
        problems += check_file_rows(path, "out_of_scope")[1]
    return problems


# --- stats ----------------------------------------------------------------


@dataclass(frozen=True)
class DepartmentStats:
    department: str
    facts: int
    train_records: int
    eval_records: int
    facts_covered_4plus: int  # facts with >= MIN_TRAIN_QUESTIONS_PER_FACT train records
    mean_answer_tokens: float  # over train outputs
    preference_pairs: int


def department_stats(dept: str, count_tokens: Callable[[str], int],
                     data_dir: str | Path = DATA_DIR) -> DepartmentStats:
    """Sizes of a department's data; raises DatasetError if a file is invalid."""
    files = department_files(dept, data_dir)
    facts = load_handbook(files.handbook)
    train = load_sft(files.train)
    evals = load_eval(files.eval)
    preferences = load_preferences(files.preference) if files.preference.exists() else []
    per_fact = Counter(record.fact for record in train)
    return DepartmentStats(
        department=dept,
        facts=len(facts),
        train_records=len(train),
        eval_records=len(evals),
        facts_covered_4plus=sum(per_fact[fact.id] >= MIN_TRAIN_QUESTIONS_PER_FACT for fact in facts),
        mean_answer_tokens=sum(count_tokens(r.output) for r in train) / len(train) if train else 0.0,
        preference_pairs=len(preferences),
    )
