"""The `switchboard` command line: the global --config option, and each area's commands mounted."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway import cli_chat, cli_models, cli_queue, cli_serving, cli_telegram
from gateway.cli_common import CliState
from training import cli as training_cli
from training import data_cli

app = typer.Typer(
    help="Switchboard: department models for your people on Telegram, WhatsApp and HTTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML settings file (environment variables win)."),
    ] = None,
) -> None:
    CliState.config = config


cli_serving.register(app)
cli_chat.register(app)
cli_models.register(app)
cli_queue.register(app)
cli_telegram.register(app)
training_cli.register(app, cli_models.models_app)
data_cli.register(app)

if __name__ == "__main__":
    app()
