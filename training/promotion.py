"""Writing the model registry: candidates, the promotion gate, history, rollback.

The registry is `<models_dir>/registry.json`; the server reads only each
department's `live` entry (see inference/registry.py). Writes are atomic
(temp file + rename) so a running server never reads half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from inference.registry import REGISTRY_FILE


@dataclass(frozen=True)
class ModelVersion:
    kind: str  # "adapter" or "full"
    path: str  # relative to the models directory
    method: str
    accuracy: float | None
    base_accuracy: float | None
    created: str
    base_model: str
    # Set when `accuracy` and `base_accuracy` were measured as llama.cpp serves them: the
    # GGUF storage type, and the model's accuracy before conversion.
    gguf: str | None = None
    unconverted_accuracy: float | None = None


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str


class RegistryError(ValueError):
    """The registry cannot be changed as asked."""


def live_version(models_dir: Path, department: str) -> ModelVersion | None:
    entry = _department(_read(models_dir), department).get("live")
    return _version(entry) if entry else None


def register_candidate(models_dir: Path, department: str, version: ModelVersion) -> None:
    document = _read(models_dir)
    entry = _department(document, department)
    entry["candidates"] = [c for c in entry.get("candidates", []) if c["path"] != version.path] + [asdict(version)]
    _write(models_dir, document)


def promote(models_dir: Path, department: str, version: ModelVersion, *, force: bool = False) -> Decision:
    """Make `version` live if its fact accuracy is not below the live one's (or `force`)."""
    document = _read(models_dir)
    entry = _department(document, department)
    live = entry.get("live")
    bar = (live or {}).get("accuracy") if live else version.base_accuracy
    if not force and bar is not None and (version.accuracy is None or version.accuracy < bar):
        against = "the live model" if live else "the base model"
        return Decision(False, f"accuracy {_pct(version.accuracy)} is below {against}'s {_pct(bar)}; "
                               "kept as a candidate (use --force to promote anyway)")
    if live:
        entry.setdefault("previous", []).append(live)
    entry["live"] = asdict(version)
    entry["candidates"] = [c for c in entry.get("candidates", []) if c["path"] != version.path]
    _write(models_dir, document)
    reason = "forced" if force else f"accuracy {_pct(version.accuracy)} vs {_pct(bar)}"
    return Decision(True, reason)


def rollback(models_dir: Path, department: str) -> ModelVersion | None:
    """Bring back the previous live version (None: the base model); the current one becomes a candidate."""
    document = _read(models_dir)
    entry = _department(document, department)
    live = entry.get("live")
    if live is None:
        raise RegistryError(f"{department} has no live model to roll back; it is serving the base model")
    entry.setdefault("candidates", []).append(live)
    previous = entry.get("previous", [])
    entry["live"] = previous.pop() if previous else None
    _write(models_dir, document)
    return _version(entry["live"]) if entry["live"] else None


def _read(models_dir: Path) -> dict:
    path = models_dir / REGISTRY_FILE
    if not path.exists():
        return {"departments": {}}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise RegistryError(f"{path}: not valid JSON ({error}); fix or remove it") from None
    if not isinstance(document.get("departments"), dict):
        raise RegistryError(f"{path}: expected an object with a 'departments' object")
    return document


def _department(document: dict, department: str) -> dict:
    return document["departments"].setdefault(department, {})


def _write(models_dir: Path, document: dict) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=models_dir, prefix=".registry-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
    os.replace(temporary, models_dir / REGISTRY_FILE)


def _version(entry: dict) -> ModelVersion:
    return ModelVersion(**{name: entry.get(name) for name in ModelVersion.__dataclass_fields__})


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1%}"
