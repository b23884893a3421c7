"""Send replies to WhatsApp users through Twilio's Messages REST API."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from bots.chunking import split_text, utf16_length
from bots.whatsapp.addresses import whatsapp_address
from core.redaction import tag
from core.retry import retrying

log = logging.getLogger(__name__)

# Twilio's limit on a message body. Pieces are measured in UTF-16 units, which is
# never less than characters, so a piece fits however Twilio counts emoji.
MAX_BODY_CHARS = 1600

# Twilio error codes worth a hint in the log: the usual reasons a reply can't go out.
_HINTS = {
    63016: "outside the 24-hour session window: only a template message can reach this user",
    21211: "invalid 'To' number",
    21608: "sandbox: the user has not joined the sandbox",
    63003: "the channel could not find this WhatsApp user",
}


class DeliveryError(Exception):
    """A reply (or part of it) did not go out. `sent` holds the SIDs of pieces that did."""

    def __init__(self, code: int | None, message: str, sent: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}" if code is not None else message)
        self.code = code
        self.message = message
        self.sent = list(sent or [])


class DeliveryRefused(DeliveryError):
    """Twilio refused the message for good (4xx other than 429): retrying cannot help."""


class DeliveryUnavailable(DeliveryError):
    """Twilio stayed unreachable or overloaded (network, 5xx, 429) through every retry."""


class WhatsAppSender:
    """Sends plain-text WhatsApp messages from one Twilio sender.

    Requests go through twilio's aiohttp-based client on the event loop, not a
    thread per send. An aiohttp session belongs to the loop that made it, so it
    is opened on the first send and must be closed (`await close()`, or
    `async with`) on that same loop.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_address: str,
        api_base_url: str | None = None,
        *,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        timeout: float = 15.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.from_address = whatsapp_address(from_address)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    async def send(self, to: str, text: str, status_callback: str | None = None) -> list[str]:
        """Send `text` to `to` ("whatsapp:+91..." or "+91..."), split to fit; the message SIDs in order.

        Pieces go one after another so they arrive in order. Raises DeliveryRefused
        on a permanent error and DeliveryUnavailable once retries are spent; either
        carries the SIDs of the pieces already sent.
        """
        recipient = whatsapp_address(to)
        sids: list[str] = []
        for piece in split_text(text, MAX_BODY_CHARS, utf16_length):
            sids.append(await self._send_piece(recipient, piece, status_callback, sids))
        return sids

    async def close(self) -> None:
        """Close the HTTP session and its pooled connections (a later send opens a new one)."""
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()

    async def __aenter__(self) -> WhatsAppSender:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _twilio(self) -> Client:
        if self._client is None:
            # Made here, inside the running loop: aiohttp's session needs one.
            self._http = AsyncTwilioHttpClient()
            self._client = Client(self._account_sid, self._auth_token, http_client=self._http)
            if self._api_base_url:
                # Every Messages call goes through the `api` domain, whose base URL
                # (https://api.twilio.com) is a plain attribute read on each request;
                # pointing it elsewhere is how tests reach a loopback fake Twilio.
                self._client.api.base_url = self._api_base_url
        return self._client

    async def _send_piece(self, to: str, body: str, status_callback: str | None, sent: list[str]) -> str:
        kwargs: dict[str, Any] = {"to": to, "from_": self.from_address, "body": body}
        if status_callback:
            kwargs["status_callback"] = status_callback
        try:
            async for attempt in retrying(
                on=DeliveryUnavailable,
                attempts=self.max_attempts,
                base_s=self.backoff_base,
                max_s=self.backoff_max,
                log=log,
                what=f"whatsapp send to {tag(to)}",
                describe=lambda error: str(getattr(error, "message", error)),
            ):
                with attempt:
                    return await self._create(to, kwargs, sent)
        except DeliveryUnavailable as error:
            log.warning(
                "whatsapp reply to %s not sent after %d attempts: %s", tag(to), self.max_attempts, error.message
            )
            raise
        raise AssertionError("unreachable: the last failure is re-raised")

    async def _create(self, to: str, kwargs: dict[str, Any], sent: list[str]) -> str:
        """One try at one message: its SID, or DeliveryRefused / DeliveryUnavailable."""
        try:
            # twilio's aiohttp client ignores its own `timeout` and asks aiohttp for none:
            # without this bound a hung connection would hold the reply forever.
            async with asyncio.timeout(self.timeout):
                message = await self._twilio().messages.create_async(**kwargs)
        except TwilioException as error:
            status = getattr(error, "status", None)
            code = getattr(error, "code", None)
            reason = str(getattr(error, "msg", None) or getattr(error, "title", None) or error)
            if _transient_status(status):
                raise DeliveryUnavailable(code, reason, sent) from error
            hint = _HINTS.get(code, "") if isinstance(code, int) else ""
            log.warning("whatsapp reply to %s refused: HTTP %s, code %s %s", tag(to), status, code, hint or reason)
            raise DeliveryRefused(code, reason, sent) from error
        except (aiohttp.ClientConnectionError, TimeoutError) as error:
            # Retried although a timeout may hide a message Twilio did accept:
            # a rare duplicate answer beats a lost one.
            raise DeliveryUnavailable(None, f"network: {type(error).__name__}", sent) from error
        return str(message.sid)


def _transient_status(status: object) -> bool:
    """5xx and 429 (rate limit) pass; other errors (bad number, 24 h window, auth) are final."""
    return isinstance(status, int) and (status == 429 or status >= 500)
