"""The model registry: which artifact serves each department.

`<models_dir>/registry.json` looks like

    {"departments": {"hr": {"live": {"kind": "full", "path": "hr/full-20261127"}},
                     "finance": {"live": {"kind": "adapter", "path": "finance/dpo-20261127"}}}}

`kind` is `adapter` (a PEFT adapter over the shared base) or `full` (a complete
model directory); `path` is relative to the models directory. A department with
no entry is served by the base model with its system prompt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REGISTRY_FILE = "registry.json"
KINDS = ("adapter", "full")


@dataclass(frozen=True)
class Artifact:
    department: str
    kind: str
    path: Path


@dataclass(frozen=True)
class RegistryView:
    """The live artifact per department, and why any entry was ignored."""

    artifacts: dict[str, Artifact]
    problems: dict[str, str]


def read_registry(models_dir: Path, departments: Sequence[str]) -> RegistryView:
    """Read the manifest for `departments`; never raises: a bad entry is reported and skipped."""
    manifest = models_dir / REGISTRY_FILE
    if not manifest.exists():
        return RegistryView({}, {})
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
        departments = document["departments"]
        if not isinstance(departments, dict):
            raise TypeError("'departments' must be an object")
    except (OSError, ValueError, KeyError, TypeError) as error:
        problem = f"{manifest}: unreadable registry ({error}); serving the base model"
        return RegistryView({}, dict.fromkeys(departments, problem))

    artifacts: dict[str, Artifact] = {}
    problems: dict[str, str] = {}
    for department, entry in departments.items():
        if department not in departments:
            problems[department] = f"{manifest}: {department!r} is not a department of the company folder; ignored"
            continue
        live = entry.get("live") if isinstance(entry, dict) else None
        if live is None:
            continue
        kind, path = (live.get("kind"), live.get("path")) if isinstance(live, dict) else (None, None)
        if kind not in KINDS or not isinstance(path, str) or not path:
            problems[department] = (
                f"{manifest}: departments.{department}.live needs 'kind' ({' or '.join(KINDS)}) "
                "and a non-empty 'path'"
            )
            continue
        artifacts[department] = Artifact(department, kind, (models_dir / path).resolve())
    return RegistryView(artifacts, problems)


def department_entries(models_dir: Path) -> dict[str, dict]:
    """Every department's whole registry entry (live, candidates, previous), for display; {} when unreadable."""
    try:
        document = json.loads((models_dir / REGISTRY_FILE).read_text(encoding="utf-8"))
        entries = document["departments"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}
