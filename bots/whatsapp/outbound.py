"""Send replies to WhatsApp users through Twilio's Messages REST API."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from bots.chunking import split_text, utf16_length
from bots.whatsapp.addresses import whatsapp_address
from core.redaction import tag

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

    The twilio client is synchronous (requests), so each call runs in a worker
    thread and the event loop keeps serving webhooks meanwhile.
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
        # The default TwilioHttpClient has no timeout at all: a hung connection would
        # hold a worker thread forever.
        self._http = TwilioHttpClient(timeout=timeout)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        if api_base_url:
            # Every Messages call goes through the `api` domain, whose base URL
            # (https://api.twilio.com) is a plain attribute read on each request;
            # pointing it elsewhere is how tests reach a loopback fake Twilio.
            self._client.api.base_url = api_base_url.rstrip("/")

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

    def close(self) -> None:
        """Release pooled connections."""
        if self._http.session is not None:
            self._http.session.close()

    async def _send_piece(self, to: str, body: str, status_callback: str | None, sent: list[str]) -> str:
        kwargs: dict[str, Any] = {"to": to, "from_": self.from_address, "body": body}
        if status_callback:
            kwargs["status_callback"] = status_callback
        for attempt in range(1, self.max_attempts + 1):
            try:
                message = await asyncio.to_thread(self._client.messages.create, **kwargs)
                return str(message.sid)
            except TwilioException as error:
                status = getattr(error, "status", None)
                code = getattr(error, "code", None)
                reason = str(getattr(error, "msg", None) or getattr(error, "title", None) or error)
                if not _transient_status(status):
                    hint = _HINTS.get(code, "") if isinstance(code, int) else ""
                    log.warning(
                        "whatsapp reply to %s refused: HTTP %s, code %s %s",
                        tag(to), status, code, hint or reason,
                    )
                    raise DeliveryRefused(code, reason, sent) from error
                failure: tuple[int | None, str] = (code, reason)
            except (requests.ConnectionError, requests.Timeout) as error:
                # Retried although a timeout may hide a message Twilio did accept:
                # a rare duplicate answer beats a lost one.
                failure = (None, f"network: {type(error).__name__}")
            if attempt == self.max_attempts:
                break
            delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)  # jitter: replies queued together don't retry together
            log.info(
                "whatsapp send to %s failed (%s), retry %d/%d in %.2fs",
                tag(to), failure[1], attempt, self.max_attempts - 1, delay,
            )
            await asyncio.sleep(delay)
        log.warning(
            "whatsapp reply to %s not sent after %d attempts: %s", tag(to), self.max_attempts, failure[1]
        )
        raise DeliveryUnavailable(failure[0], failure[1], sent)


def _transient_status(status: object) -> bool:
    """5xx and 429 (rate limit) pass; other errors (bad number, 24 h window, auth) are final."""
    return isinstance(status, int) and (status == 429 or status >= 500)
