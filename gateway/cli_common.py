"""What every `switchboard` command shares: the settings file, errors, progress, department names."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from core.redaction import hide_secrets
from gateway.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from gateway.components import Components

# Soft wrap: error lines name files and must stay whole for copy-paste and grep.
console = Console(stderr=True, soft_wrap=True)


class CliState:
    """Set by the root command: the global --config file."""

    config: Path | None = None


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="Company folder (default: the data_dir setting, else the bundled example)."),
]


def cli_settings(data: Path | None = None) -> Settings:
    """The settings (--config file, environment), with --data applied; logging configured from them."""
    try:
        settings = load_settings(CliState.config)
    except SettingsError as error:
        fail(str(error), 2)
    if data is not None:
        from core.company import CompanyError, load_company

        try:
            load_company(data)
        except CompanyError as error:
            fail(f"--data: {error}", 2)
        settings = settings.model_copy(update={"data_dir": data.expanduser()})
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    hide_secrets(settings.secrets())  # and quiets the libraries that log URLs and payloads
    return settings


def started(settings: Settings) -> Components:
    """The components with every model loaded (seconds)."""
    from gateway.components import build_components
    from inference.base_model import BaseModelError

    components = build_components(settings)
    try:
        with console.status("Loading models..."):
            components.start(show_progress=True)
    except BaseModelError as error:
        fail(str(error))
    return components


def check_department(name: str, settings: Settings) -> None:
    ids = settings.company().ids
    if name not in ids:
        fail(f"unknown department {name!r}; {settings.data_path / 'departments.yaml'} lists {', '.join(ids)} "
             "(or use 'all')", 2)


def departments_of(target: str, settings: Settings) -> list[str]:
    """A department name, or 'all' for every department of the company."""
    if target == "all":
        return list(settings.company().ids)
    check_department(target, settings)
    return [target]


def resolved_base(settings: Settings, spec: str | None = None) -> str:
    """`spec` (default: the base_model setting) as something from_pretrained loads; a clear error if not."""
    from inference.base_model import BaseModelError, resolve_base_model

    try:
        return resolve_base_model(spec or settings.base_model, settings.home)
    except BaseModelError as error:
        fail(str(error))


@contextlib.contextmanager
def eval_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per evaluated model, fed by evaluation's `update(label, done, total)` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("evaluating {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console) as progress:
        tasks: dict[str, int] = {}

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        yield update
