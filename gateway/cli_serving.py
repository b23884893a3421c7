"""`switchboard serve` and `switchboard worker`: the long-running processes."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from core.redaction import hide_password
from gateway.cli_common import cli_settings, console, fail, started

log = logging.getLogger("gateway.cli")


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default from settings).")] = None,
    telegram_polling: Annotated[
        bool, typer.Option("--telegram-polling", help="Fetch Telegram updates by long polling (no public URL needed).")
    ] = False,
) -> None:
    """Run the HTTP server: OpenAI-compatible API, health, readiness and metrics."""
    import uvicorn

    from gateway.app import create_app

    settings = cli_settings()
    host, port = host or settings.host, port or settings.port
    console.print(
        f"Switchboard on http://{host}:{port}  (chat: `switchboard chat`, "
        f"API: POST /v1/chat/completions, ready when /readyz says so)",
        highlight=False,
    )
    if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        log.warning("serving on %s without an API key: anyone who can reach it can use /v1; "
                    "set SWITCHBOARD_API_KEY", host)
    if telegram_polling and settings.telegram_bot_token is None:
        fail("--telegram-polling needs SWITCHBOARD_TELEGRAM_BOT_TOKEN", 2)
    app_ = create_app(settings, telegram_polling=telegram_polling)
    uvicorn.run(
        app_, host=host, port=port, log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,  # open requests; then queued messages get as long
    )


def worker() -> None:
    """Answer messages queued in Redis (run as many as you like, on any machines)."""
    from gateway.worker_process import run_worker

    settings = cli_settings()
    if settings.redis_url is None:
        fail("a worker takes messages from Redis: set SWITCHBOARD_REDIS_URL (e.g. redis://localhost:6379/0)", 2)
    components = started(settings)
    console.print(
        f"worker: answering messages queued in {hide_password(settings.redis_url)}; Ctrl-C stops after in-flight ones"
    )
    try:
        asyncio.run(run_worker(components))
    finally:
        components.close()


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)
