"""Check one data file's rows against the fields, types and lengths its kind requires.

These are the checks that need only that one file, so loading runs them too;
checks across files live in validation.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from knowledge.handbook import Fact
from training.records import MappingSpec, Problem, Row, as_mapping, display_path, json_type, scan_handbook, scan_rows
from training.scoring import missing

Kind = Literal["sft", "eval", "preference", "out_of_scope", "not_covered", "phrasings", "questions", "handbook"]

# Questions: long enough to mean something, short enough for one chat turn.
MIN_QUESTION_CHARS, MAX_QUESTION_CHARS = 2, 500
# Answers the models learn from: a full, grounded reply, not a one-liner or an essay.
MIN_ANSWER_WORDS, MAX_ANSWER_WORDS = 40, 150
# A rejected answer only needs to be plausible enough to contrast with the chosen one.
MIN_REJECTED_WORDS, MAX_REJECTED_WORDS = 10, 200

# Each kind's fields; True marks the required ones (present and non-empty).
FIELDS: dict[str, dict[str, bool]] = {
    "sft": {"instruction": True, "input": False, "output": True, "fact": True},
    "eval": {"instruction": True, "input": False, "output": True, "fact": True, "expected": True},
    "preference": {"prompt": True, "input": False, "chosen": True, "rejected": True, "fact": False},
    "out_of_scope": {"text": True, "category": False},
    # Questions in a department's field that its handbook does not answer.
    "not_covered": {"instruction": True, "input": False},
    # More ways to ask about each fact, for retrieval only.
    "phrasings": {"instruction": True, "fact": True},
    # An admin's own question bank for `switchboard eval --file`: eval without the model answer.
    "questions": {"instruction": True, "input": False, "expected": True, "fact": False, "output": False},
}
_LIST_FIELDS = {"expected"}
# The field that identifies a record: duplicates and leakage are judged on it.
KEY_FIELD = {"sft": "instruction", "eval": "instruction", "preference": "prompt", "out_of_scope": "text",
             "not_covered": "instruction", "questions": "instruction", "phrasings": "instruction"}
_CHAR_LIMITS = {"instruction": (MIN_QUESTION_CHARS, MAX_QUESTION_CHARS),
                "prompt": (MIN_QUESTION_CHARS, MAX_QUESTION_CHARS),
                "text": (MIN_QUESTION_CHARS, MAX_QUESTION_CHARS)}
_WORD_LIMITS = {("sft", "output"): (MIN_ANSWER_WORDS, MAX_ANSWER_WORDS),
                ("eval", "output"): (MIN_ANSWER_WORDS, MAX_ANSWER_WORDS),
                ("preference", "chosen"): (MIN_ANSWER_WORDS, MAX_ANSWER_WORDS),
                ("preference", "rejected"): (MIN_REJECTED_WORDS, MAX_REJECTED_WORDS)}
_KIND_PREFIXES: tuple[tuple[str, Kind], ...] = (
    ("train", "sft"), ("eval", "eval"), ("preference", "preference"), ("out_of_scope", "out_of_scope"),
    ("not_covered", "not_covered"), ("phrasings", "phrasings"))


def plural(n: int, noun: str) -> str:
    """'1 record', '3 records': counts in problem messages."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def infer_kind(path: str | Path) -> Kind | None:
    """The kind of data file, from its name (train*.jsonl -> sft, ...)."""
    name = Path(path).name.lower()
    if name.startswith("handbook") and name.endswith(".md"):
        return "handbook"
    return next((kind for prefix, kind in _KIND_PREFIXES if name.startswith(prefix)), None)


def _value_problems(kind: str, name: str, value: object, required: bool) -> list[str]:
    """What is wrong with one field's value, as messages about that field."""
    if name in _LIST_FIELDS:
        if not isinstance(value, list):
            return [f"must be a list of strings, got {json_type(value)}"]
        if not value:
            return ["is empty"]
        return [f"item {i} is empty" if isinstance(item, str) else f"item {i} must be a string, got {json_type(item)}"
                for i, item in enumerate(value, start=1) if not isinstance(item, str) or not item.strip()]
    if not isinstance(value, str):
        return [f"must be a string, got {json_type(value)}"]
    if not value.strip():
        return ["is empty"] if required else []
    if name in _CHAR_LIMITS:
        low, high = _CHAR_LIMITS[name]
        if not low <= len(value.strip()) <= high:
            return [f"has {plural(len(value.strip()), 'character')}; expected {low}-{high}"]
    if (kind, name) in _WORD_LIMITS:
        low, high = _WORD_LIMITS[kind, name]
        if not low <= len(value.split()) <= high:
            return [f"has {plural(len(value.split()), 'word')}; expected {low}-{high}"]
    return []


def _dedup_key(text: str) -> str:
    return " ".join(text.casefold().split())


def check_rows(kind: str, rows: Sequence[Row], path: str | Path) -> list[Problem]:
    """Fields, types, lengths, duplicates and (eval) expected-in-output, per record."""
    shown = display_path(path)
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    key = KEY_FIELD[kind]
    for row in rows:
        values = row.values
        for name, required in FIELDS[kind].items():
            if name in values:
                messages = _value_problems(kind, name, values[name], required)
            else:
                messages = ["is missing"] if required else []
            problems += [Problem(shown, row.line, name, message) for message in messages]
        text = values.get(key)
        if isinstance(text, str) and text.strip():
            earlier = first_line.setdefault(_dedup_key(text), row.line)
            if earlier != row.line:
                problems.append(Problem(shown, row.line, key, f"duplicates line {earlier}"))
        output, expected = values.get("output"), values.get("expected")
        if kind == "eval" and isinstance(output, str) and isinstance(expected, list) \
                and all(isinstance(item, str) for item in expected):
            absent = missing(output, [item for item in expected if item.strip()])
            if absent:
                problems.append(Problem(shown, row.line, "expected",
                                        "not found in output: " + ", ".join(repr(item) for item in absent)))
    return problems


def check_mapping(kind: str, mapping: MappingSpec, path: str | Path) -> list[Problem]:
    """A mapping target that is not one of our fields is almost surely a typo."""
    fields = FIELDS[kind]
    return [Problem(display_path(path), None, None,
                    f"mapping target '{target}' is not a {kind} field; fields are: {', '.join(fields)}")
            for target in as_mapping(mapping) if target not in fields]


def check_file_rows(path: str | Path, kind: str, mapping: MappingSpec = None) -> tuple[list[Row], list[Problem]]:
    """Read a data file leniently and run every check that needs only that file."""
    if kind not in FIELDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(FIELDS)}")
    problems = check_mapping(kind, mapping, path)
    if problems:
        return [], problems
    rows, problems = scan_rows(path, mapping)
    if not rows and not problems:
        problems.append(Problem(display_path(path), None, None, "has no records"))
    return rows, problems + check_rows(kind, rows, path)


def check_handbook(facts: Sequence[Fact], path: str | Path, dept: str | None = None,
                   prefix: str | None = None) -> list[Problem]:
    """Duplicate ids, no facts at all, and (given the department's fact prefix) ids with another prefix."""
    shown = display_path(path)
    if not facts:
        return [Problem(shown, None, None, "has no facts (expected bullet lines like '- **HR-07** text')")]
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for fact in facts:
        earlier = first_line.setdefault(fact.id, fact.line)
        if earlier != fact.line:
            problems.append(Problem(shown, fact.line, None, f"fact id '{fact.id}' duplicates line {earlier}"))
        if prefix and not fact.id.startswith(prefix + "-"):
            problems.append(Problem(shown, fact.line, None,
                                    f"fact id '{fact.id}' should start with '{prefix}-' in the {dept} handbook"))
    return problems


def check_handbook_file(path: str | Path, dept: str | None = None,
                        prefix: str | None = None) -> tuple[list[Fact], list[Problem]]:
    """Read a handbook leniently and run every check that needs only that file."""
    facts, problems = scan_handbook(path)
    if Path(path).exists():  # a missing file is reported once, not also as "has no facts"
        problems += check_handbook(facts, path, dept, prefix)
    return facts, problems


