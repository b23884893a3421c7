"""Loading: file formats, mappings and typed records, on real files in tmp_path."""

import json
from pathlib import Path

import pytest

from knowledge.handbook import Fact
from training.datasets import (
    DATA_DIR,
    EvalRecord,
    PreferenceRecord,
    SftRecord,
    department_files,
    load_eval,
    load_handbook,
    load_out_of_scope,
    load_preferences,
    load_sft,
)
from training.records import DatasetError, Row, parse_mapping, scan_rows

FIXTURES = Path(__file__).parent / "fixtures"
ANSWER = " ".join(["Leave requests go through Saathi and need manager approval."] * 5)  # 45 words


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sft(instruction: str, fact: str = "HR-01", **extra: object) -> str:
    return json.dumps({"instruction": instruction, "input": "", "output": ANSWER, "fact": fact, **extra})


def problem_lines(excinfo: pytest.ExceptionInfo[DatasetError]) -> list[str]:
    return [str(problem) for problem in excinfo.value.problems]


# --- mappings --------------------------------------------------------------


def test_parse_mapping_reads_target_equals_source_pairs() -> None:
    assert parse_mapping("instruction=question, output=answer") == {"instruction": "question", "output": "answer"}
    assert parse_mapping(["instruction=question", "fact=fact_id"]) == {"instruction": "question", "fact": "fact_id"}
    assert parse_mapping(None) == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("instruction,output=answer",
         "malformed mapping pair 'instruction' in 'instruction,output=answer': "
         "expected target=source, e.g. instruction=question"),
        ("=question", "malformed mapping pair '=question' in '=question': "
                      "expected target=source, e.g. instruction=question"),
        ("output=a=b", "malformed mapping pair 'output=a=b' in 'output=a=b': "
                       "expected target=source, e.g. instruction=question"),
    ],
)
def test_parse_mapping_names_the_malformed_pair(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_mapping(spec)
    assert str(excinfo.value) == message


# --- formats ---------------------------------------------------------------


def test_load_sft_from_jsonl_keeps_physical_line_numbers(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", sft("How do I apply for leave?"), "",
                       json.dumps({"instruction": "Who approves leave?", "output": ANSWER, "fact": "HR-02"}))
    assert load_sft(path) == [
        SftRecord("How do I apply for leave?", "", ANSWER, "HR-01", line=1),
        SftRecord("Who approves leave?", "", ANSWER, "HR-02", line=3),  # blank line 2 skipped, input defaults to ""
    ]


def test_load_sft_from_csv_with_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "questions.csv"
    path.write_text(
        "question,context,answer,fact_id\n"
        f'"How do I apply\nfor leave?",,{ANSWER},HR-01\n'  # a quoted cell spanning two lines
        f"Who approves leave?,,{ANSWER},HR-02\n",
        encoding="utf-8",
    )
    records = load_sft(path, "instruction=question,input=context,output=answer,fact=fact_id")
    assert [(r.instruction, r.fact, r.line) for r in records] == [
        ("How do I apply\nfor leave?", "HR-01", 2),
        ("Who approves leave?", "HR-02", 4),
    ]


def test_csv_mapping_to_an_absent_column_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "questions.csv"
    path.write_text(f"prompt,answer,fact\nHow do I apply?,{ANSWER},HR-01\n", encoding="utf-8")
    with pytest.raises(DatasetError) as excinfo:
        load_sft(path, {"instruction": "question", "output": "answer"})
    assert problem_lines(excinfo) == [f"{path}:1: mapped column 'question' (for 'instruction') is not in the header"]


def test_load_eval_from_a_json_array_with_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    items = [{"q": "How many casual leaves do I get?", "a": ANSWER + " You get 12 days.", "id": "HR-01",
              "must": ["12 days", "Saathi"]}]
    path.write_text(json.dumps(items, indent=2), encoding="utf-8")
    records = load_eval(path, "instruction=q,output=a,fact=id,expected=must")
    assert records == [EvalRecord("How many casual leaves do I get?", "", ANSWER + " You get 12 days.", "HR-01",
                                  expected=("12 days", "Saathi"), line=1)]


def test_json_array_problems_use_item_numbers(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps([json.loads(sft("How do I apply for leave?")), "oops"]), encoding="utf-8")
    with pytest.raises(DatasetError) as excinfo:
        load_sft(path)
    assert problem_lines(excinfo) == [f"{path}:2: expected a JSON object, got string"]


def test_json_that_is_not_an_array_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text('{"instruction": "x"}', encoding="utf-8")
    rows, problems = scan_rows(path)
    assert rows == [] and [str(p) for p in problems] == [f"{path}: expected a top-level JSON array of objects, got object"]


def test_csv_expected_may_be_a_json_array_or_pipe_separated(tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_text(
        "instruction,output,fact,expected\n"
        f"How many leaves?,{ANSWER} 12 days,HR-01,12 days|Saathi\n"
        f'Who approves?,{ANSWER} manager,HR-02,"[""manager"", ""Saathi""]"\n',
        encoding="utf-8",
    )
    assert [r.expected for r in load_eval(path)] == [("12 days", "Saathi"), ("manager", "Saathi")]


def test_a_mapping_renames_keys_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "data.jsonl", json.dumps({"q": "hi", "category": "greeting"}))
    assert scan_rows(path, "text=q") == ([Row(1, {"q": "hi", "category": "greeting", "text": "hi"})], [])


def test_unsupported_extension_names_the_file_and_the_supported_ones(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.txt", "How do I apply for leave?")
    with pytest.raises(DatasetError) as excinfo:
        load_sft(path)
    assert problem_lines(excinfo) == [f"{path}: unsupported file type '.txt'; supported: .jsonl, .json, .csv"]


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as excinfo:
        load_sft(tmp_path / "train.jsonl")
    assert problem_lines(excinfo) == [f"{tmp_path / 'train.jsonl'}: file not found"]


def test_dataset_error_message_lists_every_problem(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", "{not json", sft("Who approves leave?", output=""))
    with pytest.raises(DatasetError) as excinfo:
        load_sft(path)
    assert str(excinfo.value) == (
        "2 problem(s) in the data:\n"
        f"  {path}:1: invalid JSON: Expecting property name enclosed in double quotes (column 2)\n"
        f"  {path}:2: field 'output' is empty"
    )


# --- the other record kinds ------------------------------------------------


def test_load_preferences_defaults_optional_fields(tmp_path: Path) -> None:
    rejected = "Just file it whenever you like, nobody checks those claims anyway."
    path = write_lines(tmp_path / "preference.jsonl",
                       json.dumps({"prompt": "When are claims due?", "chosen": ANSWER, "rejected": rejected}))
    assert load_preferences(path) == [PreferenceRecord("When are claims due?", "", ANSWER, rejected, "", line=1)]


def test_load_out_of_scope_returns_the_texts(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "out_of_scope.jsonl", json.dumps({"text": "hello", "category": "greeting"}),
                       json.dumps({"text": "tell me a joke"}))
    assert load_out_of_scope(path) == ["hello", "tell me a joke"]


def test_load_handbook_reads_fact_bullets(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "handbook.md",
        "# HR handbook",
        "",
        "- **HR-01** Casual leave is 12 days a year,",
        "  credited on 1 April.",
        "- **HR-02** Leave is applied for in Saathi.",
        "- A bullet that is not a fact.",
    )
    assert load_handbook(path) == [
        Fact("HR-01", "Casual leave is 12 days a year, credited on 1 April.", 3),
        Fact("HR-02", "Leave is applied for in Saathi.", 5),
    ]


def test_load_handbook_reports_broken_fact_bullets(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "handbook.md", "- **HR-01** Fine.", "- **HR-2** Too few digits.",
                       "- **HR-03**: colon after the id.")
    with pytest.raises(DatasetError) as excinfo:
        load_handbook(path)
    message = "looks like a fact but is not '- **ID** text' (e.g. '- **HR-07** ...')"
    assert problem_lines(excinfo) == [f"{path}:2: {message}", f"{path}:3: {message}"]


def test_fixture_files_load() -> None:
    assert [r.fact for r in load_sft(FIXTURES / "train_mapped.csv", "instruction=question,output=answer")] == [
        "HR-01", "HR-02"]


def test_department_files() -> None:
    files = department_files("hr")
    assert files.handbook == DATA_DIR / "hr" / "handbook.md"
    assert files.train == DATA_DIR / "hr" / "train.jsonl"
    assert files.eval == DATA_DIR / "hr" / "eval.jsonl"
    assert files.preference == DATA_DIR / "hr" / "preference.jsonl"
    with pytest.raises(ValueError, match="unknown department 'legal'"):
        department_files("legal")
