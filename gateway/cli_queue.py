"""`switchboard queue status`: the Redis message queue at a glance."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.redaction import hide_password, scrub
from gateway.cli_common import cli_settings, fail

queue_app = typer.Typer(help="The Redis message queue.")


@queue_app.command("status")
def queue_status(
    recent: Annotated[int, typer.Option(help="How many dead letters to show.")] = 5,
) -> None:
    """Entries waiting, in flight per worker, and dead letters with their errors."""
    from redis.exceptions import RedisError

    from gateway.components import build_queue, redis_client

    settings = cli_settings()
    if settings.redis_url is None:
        fail("no queue to show: messages are queued in process unless SWITCHBOARD_REDIS_URL is set", 2)

    async def read():
        client = redis_client(settings)
        try:
            return await build_queue(settings, client).status(recent)
        finally:
            await client.aclose()

    try:
        status = asyncio.run(read())
    except (RedisError, OSError) as error:
        fail(f"cannot reach Redis at {hide_password(settings.redis_url)}: {scrub(str(error))}")
    out = Console()
    out.print(f"waiting: {status.waiting}   in flight: {status.pending}   dead letters: {status.dead_letters}")
    if status.consumers:
        table = Table("worker", "in flight", "idle (s)")
        for name, pending, idle_ms in status.consumers:
            table.add_row(name, str(pending), f"{idle_ms / 1000:.1f}")
        out.print(table)
    if status.recent_dead:
        table = Table("dead letter", "conversation", "attempts", "error", title="most recent dead letters")
        for dead in status.recent_dead:
            table.add_row(dead.id, dead.conversation, str(dead.attempts), dead.error)
        out.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(queue_app, name="queue")
