from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bots.telegram.fake_bot_api import FakeBotApi


@pytest.fixture(scope="session")
def _fake_api_server() -> Iterator[FakeBotApi]:
    server = FakeBotApi().start()
    yield server
    server.stop()


@pytest.fixture
def api(_fake_api_server: FakeBotApi) -> FakeBotApi:
    """The loopback Bot API, with no calls recorded and nothing arranged."""
    _fake_api_server.reset()
    return _fake_api_server
