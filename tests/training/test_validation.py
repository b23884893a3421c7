"""Validation, answer matching and stats, on crafted files in tmp_path."""

import json
from pathlib import Path

import pytest

from core.company import load_company
from tests.company_folder import write_company_file
from training.datasets import DATA_DIR
from training.records import Problem, display_path
from training.scoring import contains_all, missing, normalise
from training.validation import (
    DepartmentStats,
    department_stats,
    validate_bundle,
    validate_department,
    validate_file,
)

DEPARTMENTS = load_company().ids  # the bundled example company

ANSWER = " ".join(["Leave requests go through Saathi and need manager approval."] * 5)  # 45 words
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()


def write_jsonl(path: Path, *records: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [record if isinstance(record, str) else json.dumps(record) for record in records]  # str: raw line
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train(instruction: str, fact: str = "HR-01", **extra: object) -> dict:
    return {"instruction": instruction, "input": "", "output": ANSWER, "fact": fact, **extra}


def evalrec(instruction: str, fact: str = "HR-01", **extra: object) -> dict:
    return {"instruction": instruction, "output": ANSWER + " Casual leave is Rs. 5,000.", "fact": fact,
            "expected": ["₹5,000", "saathi"], **extra}


def make_department(root: Path, dept: str, facts: int = 2) -> None:
    """A small department that passes every check: 4 train and 1 eval question per fact."""
    write_company_file(root)
    prefix = load_company().department(dept).fact_prefix
    ids = [f"{prefix}-{n:02d}" for n in range(1, facts + 1)]
    (root / dept).mkdir(parents=True, exist_ok=True)
    (root / dept / "handbook.md").write_text(
        "# Handbook\n\n" + "".join(f"- **{i}** Fact number {n}.\n" for n, i in enumerate(ids, 1)), encoding="utf-8")
    write_jsonl(root / dept / "train.jsonl",
                *(train(f"Train question {WORDS[k]} about {fid}?", fid) for fid in ids for k in range(4)))
    write_jsonl(root / dept / "eval.jsonl", *(evalrec(f"Held out check {WORDS[n + 4]} {n}", fid)
                                              for n, fid in enumerate(ids)))
    write_jsonl(root / dept / "not_covered_eval.jsonl", {"instruction": "Is there a dress code on Fridays?"})


def make_bundle(root: Path) -> Path:
    for dept in DEPARTMENTS:
        make_department(root, dept)
    write_jsonl(root / "router" / "out_of_scope.jsonl", {"text": "hello", "category": "greeting"},
                {"text": "what is the weather today"})
    return root


def problems_of(path: Path, *records: object, **kwargs: object) -> list[str]:
    write_jsonl(path, *records)
    return [str(p) for p in validate_file(path, **kwargs)]


# --- Problem ---------------------------------------------------------------


def test_problem_str() -> None:
    assert str(Problem("hr/train.jsonl", 57, "output", "is empty")) == "hr/train.jsonl:57: field 'output' is empty"
    assert str(Problem("hr/train.jsonl", 3, None, "invalid JSON")) == "hr/train.jsonl:3: invalid JSON"
    assert str(Problem("hr/handbook.md", None, None, "has no facts")) == "hr/handbook.md: has no facts"


def test_bundled_paths_are_shown_relative_to_the_data_dir(tmp_path: Path) -> None:
    assert display_path(DATA_DIR / "hr" / "train.jsonl") == "hr/train.jsonl"
    assert display_path(tmp_path / "train.jsonl") == str(tmp_path / "train.jsonl")


# --- one file --------------------------------------------------------------


def test_a_valid_file_has_no_problems(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "train.jsonl", train("How do I apply for leave?")) == []


def test_empty_output(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    assert problems_of(path, train("How do I apply for leave?", output="  ")) == [
        f"{path}:1: field 'output' is empty"]


def test_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    record = train("How do I apply for leave?")
    del record["fact"]
    assert problems_of(path, record) == [f"{path}:1: field 'fact' is missing"]


def test_wrong_types(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    assert problems_of(path, evalrec(["a list"], expected="₹5,000"), evalrec("Second?", expected=[]),
                       evalrec("Third?", expected=["₹5,000", 7, " "]), evalrec("Fourth?", input=None)) == [
        f"{path}:1: field 'instruction' must be a string, got list",
        f"{path}:1: field 'expected' must be a list of strings, got string",
        f"{path}:2: field 'expected' is empty",
        f"{path}:3: field 'expected' item 2 must be a string, got number",
        f"{path}:3: field 'expected' item 3 is empty",
        f"{path}:4: field 'input' must be a string, got null",
    ]


def test_malformed_json_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    assert problems_of(path, train("How do I apply for leave?"), '{"instruction": "Who approves?",', "[1, 2]") == [
        f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes (column 33)",
        f"{path}:3: expected a JSON object, got list",
    ]


def test_length_limits(tmp_path: Path) -> None:
    path = tmp_path / "preference.jsonl"
    record = {"prompt": "?", "chosen": "Too short.", "rejected": "No."}
    assert problems_of(path, record, {**record, "prompt": "x" * 501, "chosen": "word " * 151}) == [
        f"{path}:1: field 'prompt' has 1 character; expected 2-500",
        f"{path}:1: field 'chosen' has 2 words; expected 40-150",
        f"{path}:1: field 'rejected' has 1 word; expected 10-200",
        f"{path}:2: field 'prompt' has 501 characters; expected 2-500",
        f"{path}:2: field 'chosen' has 151 words; expected 40-150",
        f"{path}:2: field 'rejected' has 1 word; expected 10-200",
    ]


def test_duplicate_names_the_earlier_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    assert problems_of(path, train("How do I apply for leave?"), train("Who approves leave?"),
                       train("  how do I   APPLY for leave?")) == [
        f"{path}:3: field 'instruction' duplicates line 1"]


def test_expected_not_in_output(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    # "₹5,000" matches "Rs. 5,000" in the output once normalised; "12 days" does not appear.
    assert problems_of(path, evalrec("How much is it?", expected=["₹5,000", "12 days"])) == [
        f"{path}:1: field 'expected' not found in output: '12 days'"]


def test_unknown_fact_id_and_uncovered_fact_against_a_handbook(tmp_path: Path) -> None:
    handbook = tmp_path / "handbook.md"
    handbook.write_text("- **HR-01** One.\n- **HR-02** Two.\n", encoding="utf-8")
    path = tmp_path / "train.jsonl"
    records = [train(f"Question {word}?") for word in WORDS[:4]] + [train("Odd one?", "HR-99")]
    assert problems_of(path, *records, handbook=handbook) == [
        f"{path}:5: field 'fact' is 'HR-99', which is not in the handbook",
        f"{path}: fact 'HR-02' has 0 records; needs at least 4",
    ]
    eval_path = tmp_path / "eval.jsonl"
    assert problems_of(eval_path, evalrec("Held out?"), handbook=handbook) == [
        f"{eval_path}: fact 'HR-02' has 0 records; needs at least 1"]


def test_handbook_problems(tmp_path: Path) -> None:
    path = tmp_path / "handbook.md"
    path.write_text("# HR\n- **HR-01** One.\n- **HR-01** One again.\n", encoding="utf-8")
    assert [str(p) for p in validate_file(path)] == [f"{path}:3: fact id 'HR-01' duplicates line 2"]
    path.write_text("# HR\n\nNothing here yet.\n", encoding="utf-8")
    assert [str(p) for p in validate_file(path)] == [
        f"{path}: has no facts (expected bullet lines like '- **HR-07** text')"]


def test_csv_with_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(f"question,answer,fact\nHow do I apply?,{ANSWER},HR-01\nHi,,HR-02\n", encoding="utf-8")
    mapping = "instruction=question,output=answer"
    assert [str(p) for p in validate_file(path, "sft", mapping)] == [f"{path}:3: field 'output' is empty"]
    assert [str(p) for p in validate_file(path, "sft", "instruction=question,ouptut=answer")] == [
        f"{path}: mapping target 'ouptut' is not a sft field; fields are: instruction, input, output, fact"]


def test_json_array_input(tmp_path: Path) -> None:
    path = tmp_path / "out_of_scope.json"
    path.write_text(json.dumps([{"text": "hello"}, {"text": "hello "}, {"category": "x"}]), encoding="utf-8")
    assert [str(p) for p in validate_file(path)] == [
        f"{path}:2: field 'text' duplicates line 1",
        f"{path}:3: field 'text' is missing",
    ]


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "train.xlsx"
    path.write_bytes(b"PK")
    assert [str(p) for p in validate_file(path)] == [
        f"{path}: unsupported file type '.xlsx'; supported: .jsonl, .json, .csv"]


def test_unknown_kind_asks_for_an_explicit_one(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mine.jsonl", train("How do I apply for leave?"))
    assert [str(p) for p in validate_file(path)] == [
        f"{path}: cannot tell the kind of file from its name; "
        "pass kind= one of: sft, eval, preference, out_of_scope, not_covered, phrasings, questions, handbook"]
    assert validate_file(path, "sft") == []


# --- departments and the bundle --------------------------------------------


def test_a_clean_bundle_has_no_problems(tmp_path: Path) -> None:
    assert validate_bundle(make_bundle(tmp_path)) == []


def test_leak_names_the_train_line(tmp_path: Path) -> None:
    make_department(tmp_path, "hr")
    eval_path = tmp_path / "hr" / "eval.jsonl"
    # 9 shared tokens out of 11 -> 0.82; the train question is line 2 of train.jsonl.
    write_jsonl(tmp_path / "hr" / "train.jsonl", train("Train question alpha about HR-01?"),
                train("How many casual leave days do I get each year?"),
                *(train(f"Train question {w} about {fid}?", fid) for fid in ("HR-01", "HR-02")
                  for w in WORDS[1:5]))
    write_jsonl(eval_path, evalrec("How many casual leave days do I get per year?"), evalrec("Second fact?", "HR-02"))
    assert [str(p) for p in validate_department("hr", tmp_path)] == [
        f"{eval_path}:1: field 'instruction' leaks from {tmp_path / 'hr' / 'train.jsonl'}:2 (Jaccard 0.82 >= 0.5)"]


def test_handbook_ids_must_use_the_department_prefix(tmp_path: Path) -> None:
    make_department(tmp_path, "hr")
    handbook = tmp_path / "hr" / "handbook.md"
    handbook.write_text(handbook.read_text(encoding="utf-8") + "- **FIN-01** Not an HR fact.\n", encoding="utf-8")
    problems = [str(p) for p in validate_department("hr", tmp_path)]
    assert problems[0] == f"{handbook}:5: fact id 'FIN-01' should start with 'HR-' in the hr handbook"


def test_minimum_sizes(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    problems = [str(p) for p in validate_bundle(tmp_path, require_minimums=True)]
    hr, finance = tmp_path / "hr", tmp_path / "finance"
    assert problems[:3] == [
        f"{hr / 'handbook.md'}: has 2 facts; the bundled data needs at least 40",
        f"{hr / 'train.jsonl'}: has 8 records; the bundled data needs at least 300",
        f"{hr / 'eval.jsonl'}: has 2 records; the bundled data needs at least 60",
    ]
    assert f"{finance / 'preference.jsonl'}: file not found" in problems
    assert f"{hr / 'not_covered_eval.jsonl'}: has 1 question; the bundled data needs at least 40" in problems
    assert problems[-1] == (f"{tmp_path / 'router' / 'out_of_scope.jsonl'}: has 2 records; "
                            "the bundled data needs at least 150")
    assert validate_bundle(tmp_path) == []  # minimums apply to the bundled data only


def test_department_stats(tmp_path: Path) -> None:
    make_department(tmp_path, "hr", facts=3)
    write_jsonl(tmp_path / "hr" / "train.jsonl", *(train(f"Train question {w} about {fid}?", fid)
                                                  for fid in ("HR-01", "HR-02") for w in WORDS[:4]),
                train("Extra question on the third fact?", "HR-03"))
    assert department_stats("hr", lambda text: len(text.split()), tmp_path) == DepartmentStats(
        department="hr", facts=3, train_records=9, eval_records=3, facts_covered_4plus=2,
        mean_answer_tokens=45.0, preference_pairs=0)


# --- answer matching -------------------------------------------------------


@pytest.mark.parametrize("text", ["₹5,000", "Rs 5000", "rs.5,000", "INR 5,000", "₹ 5000", "Rs. 5,000/-"])
def test_rupee_amounts_normalise_alike(text: str) -> None:
    assert normalise(text) == "₹5000"


@pytest.mark.parametrize(("text", "expected"), [
    ("1,50,000", "150000"), ("150,000", "150000"), ("12,34,567", "1234567"), ("1,2,3", "1 2 3"),
    ("  Casual   LEAVE\n", "casual leave"), ("Form SA-HR-12.", "form sa-hr-12"), ("12 %", "12%"),
    ("₹12.75 lakh", "₹12.75 lakh"), ("“Saathi”, (the portal)!", "saathi the portal"),
    ("2–3 days", "2-3 days"),
])
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_contains_all_and_missing() -> None:
    answer = "You get Rs. 1,50,000 a year; apply on Saathi using form SA-HR-12."
    assert contains_all(answer, ["₹1,50,000", "SAATHI", "sa-hr-12"])
    assert contains_all(answer, [])
    assert missing(answer, ["150000", "₹15,000", "Kosh"]) == ["₹15,000", "Kosh"]
    assert missing("Casual leave is 112 days", ["12 days"]) == ["12 days"]  # numbers match whole


# --- the bundled data --------------------------------------------------------


def test_bundled_data_is_valid() -> None:
    problems = validate_bundle()
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(map(str, problems[:50]))


def test_paraphrases_are_validated_and_leak_checked_like_train(tmp_path: Path) -> None:
    make_department(tmp_path, "hr")
    assert validate_department("hr", tmp_path) == []
    eval_path = tmp_path / "hr" / "eval.jsonl"
    paraphrases = write_jsonl(
        tmp_path / "hr" / "paraphrases.jsonl",
        train("A new wording about the first fact?"),
        train("Which fact is this?", "HR-99"),
        train(json.loads(eval_path.read_text(encoding="utf-8").splitlines()[0])["instruction"]),
    )
    problems = [str(p) for p in validate_department("hr", tmp_path)]
    assert any(p.startswith(f"{paraphrases}:2: field 'fact'") and "HR-99" in p for p in problems)
    assert any(p.startswith(f"{eval_path}:1: field 'instruction' leaks from {paraphrases}:3") for p in problems)
