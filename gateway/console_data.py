"""What the web console's admin views show, read from the registry, the eval reports and the metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from core.company import Company
from inference.base import DepartmentModel
from inference.registry import department_entries


def latest_report(reports_dir: Path, department: str) -> Path | None:
    """The newest `switchboard eval`/`train` report of a department (reports/<dept>-<YYYYmmdd-HHMMSS>.json)."""
    name = re.compile(rf"^{re.escape(department)}-\d{{8}}-\d{{6}}\.json$")
    reports = sorted(p for p in reports_dir.glob(f"{department}-*.json") if name.match(p.name))
    return reports[-1] if reports else None


def read_report(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def scores(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each evaluated model's accuracy, without its answers."""
    return [
        {"title": _title(e), "label": e.get("label", ""), "accuracy": e.get("accuracy"),
         "grounded": bool(e.get("grounded")), "questions": e.get("questions", "facts")}
        for e in report.get("evaluations", []) if isinstance(e, dict)
    ]


def headline(report_scores: list[dict[str, Any]]) -> dict[str, float | None]:
    """Base and live fact accuracy with grounding (of `scores`), as the department answers in chat."""
    facts = [s for s in report_scores if s["grounded"] and s["questions"] == "facts"]
    base = [s["accuracy"] for s in facts if s["label"].startswith("base")]
    live = [s["accuracy"] for s in facts if not s["label"].startswith("base")]
    return {"base": base[0] if base else None, "live": live[0] if live else None}


def models_view(company: Company, models: list[DepartmentModel], models_dir: Path, reports_dir: Path) -> list[dict]:
    """Per department: what serves it now, its versions from the registry, and its latest eval scores."""
    serving = {m.department: m for m in models}
    entries = department_entries(models_dir)
    view = []
    for department in company.departments:
        entry = entries.get(department.id, {})
        model = serving.get(department.id)
        report_path = latest_report(reports_dir, department.id)
        report = read_report(report_path) if report_path else None
        report_scores = scores(report) if report else []
        view.append({
            "id": department.id,
            "name": department.name,
            "serving": model.serving if model else "base",
            "source": model.source if model else "",
            "memory_bytes": model.memory_bytes if model else 0,
            "note": model.note if model else "",
            "live": entry.get("live"),
            "candidates": entry.get("candidates", []),
            "previous": entry.get("previous", []),
            "report": report_path.name if report_path else None,
            "accuracy": headline(report_scores) if report else None,
            "scores": report_scores,
        })
    return view


def eval_view(reports_dir: Path, department: str) -> dict[str, Any] | None:
    """The latest report of a department with every answer, or None if it was never evaluated."""
    path = latest_report(reports_dir, department)
    report = read_report(path) if path else None
    if report is None:
        return None
    evaluations = [
        {"title": _title(e), "accuracy": e.get("accuracy"), "answers": e.get("answers", [])}
        for e in report.get("evaluations", []) if isinstance(e, dict)
    ]
    return {"report": path.name, "department": department, "evaluations": evaluations}


def metrics_summary(registry: CollectorRegistry) -> dict[str, dict[str, Any]]:
    """Per department: messages by outcome, mean reply seconds, tokens generated (from /metrics)."""
    summary: dict[str, dict[str, Any]] = {}
    latency: dict[str, list[float]] = {}
    for family in registry.collect():
        for sample in family.samples:
            department = sample.labels.get("department")
            if department is None:
                continue
            row = summary.setdefault(department, {"requests": {}, "mean_reply_seconds": None, "tokens": 0})
            if sample.name == "switchboard_requests_total":
                row["requests"][sample.labels["outcome"]] = int(sample.value)
            elif sample.name == "switchboard_generated_tokens_total":
                row["tokens"] = int(sample.value)
            elif sample.name in ("switchboard_reply_seconds_sum", "switchboard_reply_seconds_count"):
                latency.setdefault(department, [0.0, 0.0])[sample.name.endswith("_count")] = sample.value
    for department, (total, count) in latency.items():
        if count:
            summary[department]["mean_reply_seconds"] = round(total / count, 3)
    return summary


def _title(evaluation: dict[str, Any]) -> str:
    mode = " + grounding" if evaluation.get("grounded") else ""
    extra = ", not covered" if evaluation.get("questions") == "not_covered" else ""
    return f"{evaluation.get('label', '?')}{mode}{extra}"
