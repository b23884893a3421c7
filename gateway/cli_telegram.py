"""`switchboard telegram set-webhook | delete-webhook`: register this server with the Bot API."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from core.redaction import scrub
from gateway.cli_common import cli_settings, console, fail
from gateway.settings import Settings
from gateway.webhooks import TELEGRAM_PATH

telegram_app = typer.Typer(help="Register the Telegram webhook.", no_args_is_help=True)


@telegram_app.command("set-webhook")
def telegram_set_webhook(
    url: Annotated[str | None, typer.Option(help=f"Public https URL (default: <public_url>{TELEGRAM_PATH}).")] = None,
) -> None:
    """Point Telegram at this server's webhook, with the secret and the update types we handle."""
    from bots.telegram import ALLOWED_UPDATES, new_secret, set_webhook

    settings = cli_settings()
    token, secret = settings.telegram_bot_token, settings.telegram_webhook_secret
    if token is None:
        fail("set SWITCHBOARD_TELEGRAM_BOT_TOKEN (from @BotFather) first", 2)
    if secret is None:
        fail(f"set SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET first, for example to {new_secret()}", 2)
    if url is None and settings.public_url is None:
        fail(f"give --url https://...{TELEGRAM_PATH} or set SWITCHBOARD_PUBLIC_URL", 2)
    url = url or settings.public_url.rstrip("/") + TELEGRAM_PATH
    if not url.startswith("https://"):
        fail(f"Telegram only calls https URLs; got {url}", 2)
    _with_bot(settings, lambda bot: set_webhook(bot, url, secret.get_secret_value()))
    console.print(f"Telegram now sends {', '.join(ALLOWED_UPDATES)} updates to {url}")


@telegram_app.command("delete-webhook")
def telegram_delete_webhook() -> None:
    """Stop Telegram from calling the webhook (use before switching to --telegram-polling)."""
    from bots.telegram import delete_webhook

    settings = cli_settings()
    if settings.telegram_bot_token is None:
        fail("set SWITCHBOARD_TELEGRAM_BOT_TOKEN first", 2)
    _with_bot(settings, delete_webhook)
    console.print("Telegram webhook deleted")


def _with_bot(settings: Settings, action) -> None:
    """Run `action(bot)` against the Bot API; a refusal or an unreachable API is a one-line error."""
    from telegram.error import TelegramError

    from gateway.components import telegram_sender

    async def run() -> None:
        sender = telegram_sender(settings)
        await sender.start()
        try:
            await action(sender.bot)
        finally:
            await sender.close()

    try:
        asyncio.run(run())
    except TelegramError as error:
        fail(
            f"the Telegram Bot API ({settings.telegram_api_url}) did not do it: {scrub(str(error))}. "
            "Check SWITCHBOARD_TELEGRAM_BOT_TOKEN and that this machine can reach the API."
        )


def register(app: typer.Typer) -> None:
    app.add_typer(telegram_app, name="telegram")
