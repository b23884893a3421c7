"""`switchboard models`: what serves each department (rollback is mounted here by training/cli.py)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli_common import cli_settings, started
from inference.base import DepartmentModel

models_app = typer.Typer(help="What serves each department; roll back a promotion.")


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context) -> None:
    """Show what serves each department and where it came from."""
    if ctx.invoked_subcommand:
        return
    components = started(cli_settings())
    table = Table("department", "serving", "memory", "source", "note")
    for entry in components.backend.models():
        note = f"[yellow]{entry.note}[/yellow]" if entry.note else ""
        table.add_row(entry.department, entry.serving, _memory(entry), entry.source, note)
    components.close()
    Console().print(table)


def _memory(entry: DepartmentModel) -> str:
    if not entry.memory_bytes:
        return "-"
    size = f"{entry.memory_bytes / 2**20:,.1f} MiB"
    return {"adapter": f"+{size}", "base": f"{size} (shared)"}.get(entry.serving, size)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
