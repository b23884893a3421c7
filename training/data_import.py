"""Append records from a spreadsheet export (CSV, JSON, JSONL) to a department's data files.

Nothing is written unless every imported record is valid: the right fields,
fact ids that the department's handbook has, and (for training questions) no
question that rewords one of the held-out eval questions. Records already in
the target file are skipped, so an import can be re-run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from core.company import load_company
from training.datasets import department_files, load_handbook
from training.records import DatasetError, MappingSpec, scan_rows
from training.schema import FIELDS, KEY_FIELD, check_file_rows
from training.validation import check_fact_ids, check_leakage

# Which file of the department each kind of record goes to.
TARGET_FILES = {"sft": "train", "eval": "eval", "preference": "preference", "not_covered": "not_covered",
                "phrasings": "phrasings"}


@dataclass(frozen=True)
class ImportResult:
    target: Path
    added: int
    skipped: int  # already in the target file


def import_records(source: Path, department: str, data_dir: Path, *, kind: str = "sft",
                   mapping: MappingSpec = None) -> ImportResult:
    """Validate `source` and append its records to the department's file for `kind`.

    Raises DatasetError listing every problem (nothing is written), or CompanyError for an unknown department.
    """
    if kind not in TARGET_FILES:
        raise ValueError(f"cannot import kind {kind!r}; use one of {', '.join(TARGET_FILES)}")
    load_company(data_dir).department(department)  # an unknown department says which ones exist
    files = department_files(department, data_dir)
    target: Path = getattr(files, TARGET_FILES[kind])
    rows, problems = check_file_rows(source, kind, mapping)
    if files.handbook.exists():
        problems += check_fact_ids(rows, source, {fact.id for fact in load_handbook(files.handbook)})
    if kind == "sft" and files.eval.exists():
        # An imported training question that rewords an eval question would stop it being held out.
        problems += [replace(p, message=p.message.replace("leaks from", "rewords"))
                     for p in check_leakage(scan_rows(files.eval, None)[0], files.eval, rows, source)]
    if problems:
        raise DatasetError(problems)
    key = KEY_FIELD[kind]
    existing = {_key(row.values.get(key)) for row in scan_rows(target, None)[0]} if target.exists() else set()
    new = []
    for row in rows:
        if _key(row.values.get(key)) not in existing:
            existing.add(_key(row.values.get(key)))
            new.append({field: value for field, value in row.values.items() if field in FIELDS[kind]})
    if new:
        text = target.read_text(encoding="utf-8-sig") if target.exists() else ""
        lines = [json.dumps(values, ensure_ascii=False) for values in new]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + ("\n" if text and not text.endswith("\n") else "") + "\n".join(lines) + "\n",
                          encoding="utf-8")
    return ImportResult(target, len(new), len(rows) - len(new))


def _key(value: object) -> str:
    return " ".join(str(value).lower().split())
