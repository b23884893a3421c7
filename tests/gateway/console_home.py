"""A Switchboard home with history for the console: hr trained twice (a live full model and an older
adapter) and evaluated; the other departments untrained and never evaluated."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from core.company import load_company
from gateway.app import create_app
from gateway.components import Components, build_components
from tests.conftest import LiveServer, make_settings

DEPARTMENTS = load_company().ids


def _version(method: str, kind: str, path: str, accuracy: float, created: str) -> dict:
    return {"kind": kind, "path": path, "method": method, "accuracy": accuracy, "base_accuracy": 0.25,
            "created": created, "base_model": "tiny"}


def answer(question: str, expected: str, answer: str, correct: bool) -> dict:
    return {"question": question, "expected": [expected], "answer": answer, "correct": correct, "entries": []}


def write_console_home(home: Path, live_model: Path) -> None:
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    hr = {
        "live": _version("full", "full", str(live_model), 0.75, "2026-12-01T10:00:00"),
        "previous": [_version("lora", "adapter", "hr/lora-20261120", 0.5, "2026-11-20T09:00:00")],
        "candidates": [],
    }
    (models / "registry.json").write_text(json.dumps({"departments": {"hr": hr}}))
    reports = home / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    answers = [
        answer("How many casual leaves a year?", "12 days", "You get 12 days of casual leave.", True),
        answer("Who approves leave?", "reporting manager", "HR approves it.", False),
        answer("How early to apply for earned leave?", "7 days", "Apply 7 days ahead.", True),
        answer("Is leave encashable?", "encash", "No.", False),
    ]
    report = {"department": "hr", "base_model": "tiny", "questions": "eval.jsonl", "evaluations": [
        {"label": "base", "accuracy": 0.25, "answers": answers[:1] + [dict(a, correct=False) for a in answers[1:]],
         "seconds": 1.0, "grounded": True, "questions": "facts"},
        {"label": "full full-20261201", "accuracy": 0.5, "answers": answers, "seconds": 1.0, "grounded": True,
         "questions": "facts"},
    ]}
    # An older report first: the console reads the newest.
    (reports / "hr-20261120-090000.json").write_text(json.dumps({"department": "hr", "evaluations": []}))
    (reports / "hr-20261201-100500.json").write_text(json.dumps(report))


@contextlib.contextmanager
def console_server(home: Path, model: Path, **values: object) -> Iterator[tuple[LiveServer, Components]]:
    """`serve` on that home, with the tiny model as hr's live version."""
    write_console_home(home, model)
    settings = make_settings(home, model, router="commands", reload_interval_seconds=0, repetition_penalty=1.3,
                             **values)
    components = build_components(settings)
    components.start()
    try:
        with LiveServer(create_app(components=components)) as live:
            yield live, components
    finally:
        components.close()
