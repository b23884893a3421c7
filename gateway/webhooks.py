"""Webhook endpoints: verify, parse, dedupe, enqueue, answer at once."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.dispatch import QueueUnavailable
from gateway.errors import ApiError

log = logging.getLogger(__name__)

webhooks = APIRouter()

# Also what `switchboard telegram set-webhook` registers and the status callback Twilio is given.
TELEGRAM_PATH = "/webhooks/telegram"
WHATSAPP_PATH = "/webhooks/whatsapp"
WHATSAPP_STATUS_PATH = "/webhooks/whatsapp/status"


@webhooks.post(TELEGRAM_PATH)
async def telegram_update(request: Request) -> JSONResponse:
    from bots.telegram import peek_update, secret_matches

    channels = request.app.state.channels
    telegram, settings = channels.telegram, request.app.state.components.settings
    if telegram is None or settings.telegram_webhook_secret is None:
        raise ApiError(404, "Telegram is not configured on this server.")
    header = request.headers.get("X-Telegram-Bot-Api-Secret-Token")
    if not secret_matches(header, settings.telegram_webhook_secret.get_secret_value()):
        raise ApiError(403, "Wrong or missing X-Telegram-Bot-Api-Secret-Token.")
    if not channels.telegram_ready:
        raise ApiError(503, "The Telegram connection is starting; Telegram will retry.")
    try:
        payload = json.loads(await request.body())
    except ValueError:
        raise ApiError(400, "The body is not valid JSON.") from None
    except RecursionError:
        raise ApiError(400, "The JSON body is nested too deeply.") from None
    accepted = await _accept(channels, telegram, peek_update(payload))  # parsed when answered
    return JSONResponse({"ok": True, "duplicate": not accepted})


@webhooks.post(WHATSAPP_PATH)
async def whatsapp_message(request: Request) -> Response:
    from bots.whatsapp import EMPTY_TWIML, TWIML_CONTENT_TYPE, parse_message

    channels = request.app.state.channels
    whatsapp = await _verified_whatsapp(request, WHATSAPP_PATH)
    await _accept(channels, whatsapp, parse_message(await request.form()))
    # Answer with empty TwiML now; the reply goes out through the REST API when ready.
    return Response(EMPTY_TWIML, media_type=TWIML_CONTENT_TYPE)


@webhooks.post(WHATSAPP_STATUS_PATH)
async def whatsapp_status(request: Request) -> Response:
    from bots.whatsapp import EMPTY_TWIML, TWIML_CONTENT_TYPE, parse_status

    whatsapp = await _verified_whatsapp(request, WHATSAPP_STATUS_PATH)
    await whatsapp.handle_event(parse_status(await request.form()))
    return Response(EMPTY_TWIML, media_type=TWIML_CONTENT_TYPE)


async def _accept(channels, channel, event) -> bool:
    try:
        return await channels.dispatcher.accept(channel, event)
    except QueueUnavailable as error:
        # Refuse rather than accept and lose it: both platforms retry a 5xx later.
        log.error("%s: cannot queue a message: %s", channel.name, error)
        raise ApiError(503, "The message queue is unavailable; retry later.") from None


async def _verified_whatsapp(request: Request, path: str):
    from bots.whatsapp import signature_valid

    whatsapp = request.app.state.channels.whatsapp
    settings = request.app.state.components.settings
    if whatsapp is None:
        raise ApiError(404, "WhatsApp is not configured on this server.")
    # Twilio signs the public URL it called, which behind a proxy is not request.url.
    public_url = settings.public_url.rstrip("/") + path
    form = await request.form()
    token = settings.twilio_auth_token.get_secret_value()
    if not signature_valid(token, public_url, form, request.headers.get("X-Twilio-Signature")):
        raise ApiError(403, "Invalid X-Twilio-Signature.")
    return whatsapp
