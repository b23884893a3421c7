"""Read data files into raw rows, reporting every problem instead of stopping at the first.

A data file may be JSONL, a JSON array or CSV, and its own key names do not
matter: a mapping ("instruction=question,output=answer") renames them to ours.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.company import BUNDLED_COMPANY
from knowledge.handbook import Fact, parse_handbook

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv")

# The cap keeps an exception readable; .problems always holds every problem.
_MAX_LISTED_PROBLEMS = 100

MappingSpec = Mapping[str, str] | str | Sequence[str] | None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data file, printed as `path:line: field 'x' message`."""

    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = self.message if self.field is None else f"field '{self.field}' {self.message}"
        return f"{where}: {what}"


class DatasetError(ValueError):
    """A data file could not be loaded; `.problems` says exactly why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        listed = [f"  {p}" for p in self.problems[:_MAX_LISTED_PROBLEMS]]
        if len(self.problems) > _MAX_LISTED_PROBLEMS:
            listed.append(f"  ... and {len(self.problems) - _MAX_LISTED_PROBLEMS} more")
        super().__init__(f"{len(self.problems)} problem(s) in the data:\n" + "\n".join(listed))


@dataclass(frozen=True)
class Row:
    """One raw record with our field names; `line` points back into the file."""

    line: int
    values: dict[str, object]


def display_path(path: str | Path) -> str:
    """Bundled files are shown relative to the bundled company folder (hr/train.jsonl), others as given."""
    try:
        return Path(path).resolve().relative_to(BUNDLED_COMPANY.resolve()).as_posix()
    except ValueError:
        return str(path)


def parse_mapping(spec: str | Sequence[str] | None) -> dict[str, str]:
    """Parse "target=source" pairs, comma separated, from one spec or several."""
    if spec is None:
        return {}
    specs = [spec] if isinstance(spec, str) else list(spec)
    mapping: dict[str, str] = {}
    for one in specs:
        for pair in one.split(","):
            if not pair.strip():
                continue  # tolerate "a=b," and "a=b,,c=d"
            target, eq, source = (part.strip() for part in pair.partition("="))
            if not eq or not target or not source or "=" in source:
                raise ValueError(
                    f"malformed mapping pair {pair.strip()!r} in {one!r}: "
                    "expected target=source, e.g. instruction=question"
                )
            if target in mapping:
                raise ValueError(f"mapping target {target!r} is given twice in {spec!r}")
            mapping[target] = source
    return mapping


def as_mapping(mapping: MappingSpec) -> dict[str, str]:
    """A mapping given as a dict, or as spec string(s) for parse_mapping()."""
    if mapping is None or isinstance(mapping, (str, list, tuple)):
        return parse_mapping(mapping)
    return dict(mapping)


def json_type(value: object) -> str:
    """JSON's name for a value's type, as users see it in their files."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    return "object" if isinstance(value, dict) else type(value).__name__


def _read_text(path: Path, shown: str) -> tuple[str | None, list[Problem]]:
    try:
        # utf-8-sig: files saved by spreadsheet tools start with a BOM.
        return path.read_text(encoding="utf-8-sig"), []
    except FileNotFoundError:
        return None, [Problem(shown, None, None, "file not found")]
    except UnicodeDecodeError as exc:
        return None, [Problem(shown, None, None, f"is not UTF-8 text ({exc.reason} at byte {exc.start})")]


def _object_or_problem(value: object, line: int, shown: str) -> Row | Problem:
    if isinstance(value, dict):
        return Row(line, value)
    return Problem(shown, line, None, f"expected a JSON object, got {json_type(value)}")


def _scan_jsonl(text: str, shown: str) -> tuple[list[Row | Problem], set[str] | None]:
    items: list[Row | Problem] = []
    # Split on "\n" only: str.splitlines() would also split on U+2028, which
    # JSON allows raw inside strings, and shift every later line number.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append(_object_or_problem(json.loads(line), number, shown))
        except json.JSONDecodeError as exc:
            items.append(Problem(shown, number, None, f"invalid JSON: {exc.msg} (column {exc.colno})"))
    return items, None


def _scan_json(text: str, shown: str) -> tuple[list[Row | Problem], set[str] | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return [Problem(shown, exc.lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})")], None
    if not isinstance(data, list):
        return [Problem(shown, None, None, f"expected a top-level JSON array of objects, got {json_type(data)}")], None
    # A JSON array has no useful physical lines, so `line` is the 1-based item number.
    return [_object_or_problem(item, number, shown) for number, item in enumerate(data, start=1)], None


def _scan_csv(text: str, shown: str) -> tuple[list[Row | Problem], set[str] | None]:
    reader = csv.reader(io.StringIO(text, newline=""))
    items: list[Row | Problem] = []
    header: list[str] | None = None
    try:
        end_of_previous = 0
        for cells in reader:
            start, end_of_previous = end_of_previous + 1, reader.line_num  # quoted cells may span lines
            if not cells or not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = [cell.strip() for cell in cells]
            elif len(cells) != len(header):
                items.append(Problem(shown, start, None, f"has {len(cells)} values; the header has {len(header)}"))
            else:
                items.append(Row(start, dict(zip(header, cells))))
    except csv.Error as exc:
        items.append(Problem(shown, reader.line_num, None, f"invalid CSV: {exc}"))
    if header is None:
        return [Problem(shown, None, None, "has no header row")], None
    return items, set(header)


_SCANNERS = {".jsonl": _scan_jsonl, ".json": _scan_json, ".csv": _scan_csv}


def _csv_list(value: object) -> object:
    """CSV cells hold no lists, so `expected` is a JSON array or "a|b|c" there."""
    if not isinstance(value, str):
        return value
    if value.strip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value  # left as a string, so validation reports the wrong type
    return [part.strip() for part in value.split("|")] if value.strip() else []


def scan_rows(path: str | Path, mapping: MappingSpec = None) -> tuple[list[Row], list[Problem]]:
    """Read what can be read and report the rest, instead of stopping at the first error."""
    path = Path(path)
    shown = display_path(path)
    mapping = as_mapping(mapping)
    suffix = path.suffix.lower()
    if suffix not in _SCANNERS:
        return [], [Problem(shown, None, None, f"unsupported file type '{suffix or path.name}'; "
                            f"supported: {', '.join(SUPPORTED_SUFFIXES)}")]
    text, problems = _read_text(path, shown)
    if text is None:
        return [], problems
    items, columns = _SCANNERS[suffix](text, shown)
    rows = [item for item in items if isinstance(item, Row)]
    problems = [item for item in items if isinstance(item, Problem)]
    if columns is None:  # JSON(L): the file's columns are every key any record uses
        columns = {key for row in rows for key in row.values}
    absent = [(target, source) for target, source in mapping.items() if source not in columns]
    if absent:
        # Nothing can be read correctly with a mapping that does not fit the
        # file, so report that once rather than a missing field on every row.
        where = "the header" if suffix == ".csv" else "the file"
        return [], problems + [
            Problem(shown, 1 if suffix == ".csv" else None, None,
                    f"mapped column '{source}' (for '{target}') is not in {where}")
            for target, source in absent
        ]
    renamed = []
    for row in rows:
        values = {**row.values, **{target: row.values[source] for target, source in mapping.items()
                                   if source in row.values}}
        if suffix == ".csv" and "expected" in values:
            values["expected"] = _csv_list(values["expected"])
        renamed.append(Row(row.line, values))
    return renamed, problems


def scan_handbook(path: str | Path) -> tuple[list[Fact], list[Problem]]:
    """Every fact bullet in a handbook, plus lines that look like broken facts."""
    path = Path(path)
    shown = display_path(path)
    text, problems = _read_text(path, shown)
    if text is None:
        return [], problems
    handbook = parse_handbook(text)
    problems += [Problem(shown, line, None, "looks like a fact but is not '- **ID** text' (e.g. '- **HR-07** ...')")
                 for line in handbook.suspicious]
    return list(handbook.facts), problems
