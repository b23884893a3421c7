"""`switchboard chat | ask | route`: the pipeline from the terminal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from core.messages import IncomingMessage, Route
from gateway.cli_common import DataOption, cli_settings, console, fail, started


def chat() -> None:
    """Talk to Switchboard in the terminal, through the same pipeline as every channel."""
    components = started(cli_settings())
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
            # style=, not markup: "[hr ...]" would be read as a rich tag and vanish.
            console.print(f"({route.department}, confidence {route.confidence:.2f}, {route.reason})", style="dim")
            console.print(reply.text, highlight=False, markup=False)
            for entry in reply.sources:
                console.print(f"  [{entry.id}] {entry.text}", style="dim", highlight=False, markup=False)
    finally:
        loop.close()
        components.close()


def ask(text: Annotated[str, typer.Argument(help="The message to answer.")]) -> None:
    """Answer one message and print JSON: department, confidence, reply, latency_ms."""
    components = started(cli_settings())
    try:
        reply = asyncio.run(components.pipeline.handle(IncomingMessage("cli", "cli:ask", text)))
    finally:
        components.close()
    print(json.dumps({
        **_route_json(reply.route),
        "reply": reply.text,
        "sources": [{"id": e.id, "text": e.text, "score": e.score} for e in reply.sources],
        "latency_ms": reply.latency_ms,
    }, ensure_ascii=False))


def route(
    text: Annotated[str | None, typer.Argument(help="The message to route.")] = None,
    jsonl: Annotated[
        Path | None,
        typer.Option("--jsonl", help='File of lines {"text": ...}; one JSON result per line.'),
    ] = None,
    data: DataOption = None,
) -> None:
    """Show where a message would go: department, confidence, reason."""
    from gateway.components import build_router

    if (text is None) == (jsonl is None):
        fail("give either TEXT or --jsonl FILE", 2)
    router = build_router(cli_settings(data))
    if text is not None:
        print(json.dumps(_route_json(router.route(text, []))))
        return
    try:
        lines = jsonl.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        fail(f"{jsonl}: {error.strerror}", 2)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            message = item["text"]
            if not isinstance(message, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            fail(f'{jsonl}:{number}: expected a JSON object like {{"text": "..."}}', 2)
        print(json.dumps(_route_json(router.route(message, []))))


def _route_json(route: Route) -> dict:
    return {"department": route.department, "confidence": route.confidence, "reason": route.reason}


def register(app: typer.Typer) -> None:
    app.command()(chat)
    app.command()(ask)
    app.command()(route)
