"""`switchboard init` and `switchboard data validate | import | stats`: the company folder's data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli_common import DataOption, cli_settings, console, fail, resolved_base

data_app = typer.Typer(help="Check and summarise the training data.", no_args_is_help=True)


@data_app.command("validate")
def data_validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files to check (default: the whole company folder).")] = None,
    kind: Annotated[
        str | None, typer.Option(help="sft, eval, preference, out_of_scope or handbook (default: from the name).")
    ] = None,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="Column mapping, e.g. instruction=question,output=answer.")
    ] = None,
    handbook: Annotated[Path | None, typer.Option(help="Handbook whose fact ids the files must use.")] = None,
    data: DataOption = None,
) -> None:
    """Validate data files; exits 1 if anything is wrong, listing file:line: field problems."""
    from training.records import parse_mapping
    from training.validation import validate_bundle, validate_file

    try:
        columns = parse_mapping(mapping)
    except ValueError as error:
        fail(f"--map: {error}", 2)
    if paths:
        problems = [p for path in paths for p in validate_file(path, kind, columns, handbook)]
    else:
        folder = cli_settings(data).data_path
        problems = validate_bundle(folder)
    for problem in problems:
        print(problem)
    if problems:
        fail(f"{len(problems)} problem(s) found")
    console.print(f"[green]ok[/green]: {', '.join(map(str, paths)) if paths else folder} is valid")


@data_app.command("import")
def data_import(
    file: Annotated[Path, typer.Argument(help="CSV, JSON or JSONL export of a spreadsheet.")],
    department: Annotated[str, typer.Option(help="The department the records belong to.")],
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="Our field=their column, e.g. instruction=question,output=answer.")
    ] = None,
    kind: Annotated[str, typer.Option(help="sft (train.jsonl), eval, preference, not_covered or phrasings.")] = "sft",
    data: DataOption = None,
) -> None:
    """Append a spreadsheet's records to a department's data, after validating every one (all or nothing)."""
    from core.company import CompanyError
    from training.data_import import import_records
    from training.records import DatasetError, parse_mapping

    folder = cli_settings(data).data_path
    try:
        result = import_records(file, department, folder, kind=kind, mapping=parse_mapping(mapping))
    except DatasetError as error:
        for problem in error.problems:
            print(problem)
        fail(f"{len(error.problems)} problem(s) in {file}; nothing was imported")
    except (CompanyError, ValueError) as error:
        fail(str(error), 2)
    skipped = f" ({result.skipped} already there, skipped)" if result.skipped else ""
    console.print(f"[green]imported[/green] {result.added} record(s) into {result.target}{skipped}; "
                  f"next: switchboard data validate --data {folder}")


@data_app.command("stats")
def data_stats(data: DataOption = None) -> None:
    """Per department: facts, records, coverage, mean answer tokens, preference pairs."""
    from transformers import AutoTokenizer

    from training.records import DatasetError
    from training.validation import department_stats

    settings = cli_settings(data)
    tokenizer = AutoTokenizer.from_pretrained(resolved_base(settings))

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    table = Table("department", "facts", "train", "eval", "facts covered 4+", "mean answer tokens",
                  "preference pairs")
    for department in settings.company().ids:
        try:
            stats = department_stats(department, count, settings.data_path)
        except DatasetError as error:
            fail(f"{department}: {error} (run `switchboard data validate`)")
        table.add_row(department, str(stats.facts), str(stats.train_records), str(stats.eval_records),
                      f"{stats.facts_covered_4plus}/{stats.facts}", f"{stats.mean_answer_tokens:.0f}",
                      str(stats.preference_pairs))
    Console().print(table)


def init(directory: Annotated[Path, typer.Argument(help="Where to create the company folder (new or empty).")]) -> None:
    """Start a company folder: departments.yaml with comments and an example `it` department."""
    import shutil

    from core.company import TEMPLATE

    directory = directory.expanduser()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        fail(f"{directory} already exists and is not an empty folder; choose a new one", 2)
    shutil.copytree(TEMPLATE, directory, dirs_exist_ok=True)
    console.print(
        f"[green]created[/green] {directory}: edit departments.yaml and the it/ folder (README.md says what each "
        f"file is for), then\n  switchboard data validate --data {directory}\n  switchboard train all --data "
        f"{directory}\n  SWITCHBOARD_DATA_DIR={directory} switchboard serve"
    )


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.add_typer(data_app, name="data")
