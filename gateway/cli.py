"""The `switchboard` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from gateway.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    help="Switchboard: department models for your people on Telegram, WhatsApp and HTTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Soft wrap: error lines name files and must stay whole for copy-paste and grep.
console = Console(stderr=True, soft_wrap=True)


class _State:
    config: Path | None = None


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        settings = load_settings(_State.config)
    except SettingsError as error:
        _fail(str(error), 2)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return settings


def _started(settings: Settings):  # noqa: ANN202
    from gateway.components import build_components
    from inference.base_model import BaseModelError

    components = build_components(settings)
    try:
        with console.status("Loading models..."):
            components.start(show_progress=True)
    except BaseModelError as error:
        _fail(str(error))
    return components


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML settings file (environment variables win)."),
    ] = None,
) -> None:
    _State.config = config


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Run the HTTP server: OpenAI-compatible API, health, readiness and metrics."""
    import uvicorn

    from gateway.app import create_app

    settings = _settings()
    host, port = host or settings.host, port or settings.port
    console.print(
        f"Switchboard on http://{host}:{port}  (chat: `switchboard chat`, "
        f"API: POST /v1/chat/completions, ready when /readyz says so)",
        highlight=False,
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level)


@app.command()
def prepare() -> None:
    """Convert the bundled base model once (about 30 s) so later starts take a second."""
    from inference.base_model import BaseModelError, resolve_base_model

    settings = _settings()
    try:
        path = resolve_base_model(settings.base_model, settings.home, show_progress=True)
    except BaseModelError as error:
        _fail(str(error))
    console.print(f"base model ready: {path}")


@app.command()
def chat() -> None:
    """Talk to Switchboard in the terminal, through the same pipeline as every channel."""
    from core.messages import IncomingMessage

    components = _started(_settings())
    pipeline = components.pipeline
    console.print("Type a message; /help lists commands, /reset forgets, Ctrl-D quits.")
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                text = console.input("[bold]you>[/bold] ")
            except (EOFError, KeyboardInterrupt):
                break
            if not text.strip():
                continue
            message = IncomingMessage("console", "console:local", text, user_id="local")
            reply = loop.run_until_complete(pipeline.handle(message))
            route = reply.route
            console.print(f"[dim][{route.department} {route.confidence:.2f} {route.reason}][/dim]")
            console.print(reply.text, highlight=False, markup=False)
    finally:
        loop.close()
        components.close()


@app.command()
def ask(text: Annotated[str, typer.Argument(help="The message to answer.")]) -> None:
    """Answer one message and print JSON: department, confidence, reply, latency_ms."""
    from core.messages import IncomingMessage

    components = _started(_settings())
    try:
        reply = asyncio.run(components.pipeline.handle(IncomingMessage("cli", "cli:ask", text)))
    finally:
        components.close()
    print(json.dumps({
        "department": reply.route.department,
        "confidence": reply.route.confidence,
        "reason": reply.route.reason,
        "reply": reply.text,
        "latency_ms": reply.latency_ms,
    }, ensure_ascii=False))


@app.command()
def models() -> None:
    """Show what serves each department and where it came from."""
    components = _started(_settings())
    table = Table("department", "serving", "source", "note")
    for entry in components.backend.models():
        note = f"[yellow]{entry.note}[/yellow]" if entry.note else ""
        table.add_row(entry.department, entry.serving, entry.source, note)
    components.close()
    Console().print(table)


@app.command()
def route(
    text: Annotated[str | None, typer.Argument(help="The message to route.")] = None,
    jsonl: Annotated[
        Path | None,
        typer.Option("--jsonl", help='File of lines {"text": ...}; one JSON result per line.'),
    ] = None,
) -> None:
    """Show where a message would go: department, confidence, reason."""
    from gateway.components import build_router

    if (text is None) == (jsonl is None):
        _fail("give either TEXT or --jsonl FILE", 2)
    router = build_router(_settings())
    if text is not None:
        print(json.dumps(_route_json(router.route(text, []))))
        return
    try:
        lines = jsonl.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        _fail(f"{jsonl}: {error.strerror}", 2)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            message = item["text"]
            if not isinstance(message, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            _fail(f'{jsonl}:{number}: expected a JSON object like {{"text": "..."}}', 2)
        print(json.dumps(_route_json(router.route(message, []))))


data_app = typer.Typer(help="Check and summarise the training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("validate")
def data_validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files to check (default: the bundled data).")] = None,
    kind: Annotated[
        str | None, typer.Option(help="sft, eval, preference, out_of_scope or handbook (default: from the name).")
    ] = None,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="Column mapping, e.g. instruction=question,output=answer.")
    ] = None,
    handbook: Annotated[Path | None, typer.Option(help="Handbook whose fact ids the files must use.")] = None,
) -> None:
    """Validate data files; exits 1 if anything is wrong, listing file:line: field problems."""
    from training.datasets import parse_mapping
    from training.validation import validate_bundle, validate_file

    try:
        columns = parse_mapping(mapping)
    except ValueError as error:
        _fail(f"--map: {error}", 2)
    if paths:
        problems = [p for path in paths for p in validate_file(path, kind, columns, handbook)]
    else:
        problems = validate_bundle()
    for problem in problems:
        print(problem)
    if problems:
        _fail(f"{len(problems)} problem(s) found")
    console.print(f"[green]ok[/green]: {', '.join(map(str, paths)) if paths else 'bundled data'} is valid")


@data_app.command("stats")
def data_stats() -> None:
    """Per department: facts, records, coverage, mean answer tokens, preference pairs."""
    from core.departments import DEPARTMENTS
    from training.datasets import DatasetError
    from training.validation import department_stats

    tokenizer = _base_tokenizer(_settings())
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    table = Table("department", "facts", "train", "eval", "facts covered 4+", "mean answer tokens",
                  "preference pairs")
    for department in DEPARTMENTS:
        try:
            stats = department_stats(department, count)
        except DatasetError as error:
            _fail(f"{department}: {error} (run `switchboard data validate`)")
        table.add_row(department, str(stats.facts), str(stats.train_records), str(stats.eval_records),
                      f"{stats.facts_covered_4plus}/{stats.facts}", f"{stats.mean_answer_tokens:.0f}",
                      str(stats.preference_pairs))
    Console().print(table)


def _base_tokenizer(settings: Settings):  # noqa: ANN202
    from transformers import AutoTokenizer

    from inference.base_model import BaseModelError, resolve_base_model

    try:
        return AutoTokenizer.from_pretrained(resolve_base_model(settings.base_model, settings.home))
    except BaseModelError as error:
        _fail(str(error))


def _route_json(route) -> dict:  # noqa: ANN001
    return {"department": route.department, "confidence": route.confidence, "reason": route.reason}


if __name__ == "__main__":
    app()
