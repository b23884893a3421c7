"""Fixtures: the Twilio sample payloads (tests/fixtures/twilio) and a loopback fake Twilio."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bots.whatsapp.outbound import WhatsAppSender
from tests.bots.whatsapp.fake_twilio import FakeTwilio
from tests.conftest import FIXTURES

SAMPLES = FIXTURES / "twilio"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "rest_token_for_the_fake_api"
FROM = "whatsapp:+15005550006"


def load_form(name: str) -> dict[str, str]:
    """A sample payload: one Name=value per line, values decoded, split on the first '='."""
    form: dict[str, str] = {}
    for line in (SAMPLES / name).read_text(encoding="utf-8").splitlines():
        if line:
            name_, _, value = line.partition("=")
            form[name_] = value
    return form


@pytest.fixture(scope="session")
def signatures() -> dict:
    return json.loads((SAMPLES / "signatures.json").read_text(encoding="utf-8"))


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def sender(fake_twilio: FakeTwilio) -> WhatsAppSender:
    """A sender for the fake; each test closes it inside its own event loop (aiohttp's session lives there)."""
    # Tiny backoff keeps the retry tests fast; timeout bounds a hung test.
    return WhatsAppSender(
        ACCOUNT_SID, AUTH_TOKEN, FROM, api_base_url=fake_twilio.url,
        backoff_base=0.01, backoff_max=0.05, timeout=5,
    )
