"""A loopback stand-in for api.telegram.org, for driving the real PTB client in tests.

Speaks the Bot API's HTTP shapes (POST /bot<TOKEN>/<method>, form- or JSON-encoded
parameters, `{"ok": ..., "result"|"error_code"+"description"+"parameters"}` answers),
records every call, and can be told to fail the way Telegram does: 429 with
`parameters.retry_after`, 403 "bot was blocked by the user", or a 5xx.
Served by the suite's LiveServer (uvicorn in a thread), so tests drive it from their own event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import LiveServer

TOKEN = "7000000001:FAKE-test-token-not-real"
BOT_USER = {
    "id": 7000000001,
    "is_bot": True,
    "first_name": "Example Test Bot",
    "username": "example_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
_LONG_POLL_CAP_S = 0.5  # hold an empty getUpdates at most this long: keeps tests fast


@dataclass
class Call:
    """One request as received: `params` are the raw (string) form values."""

    method: str
    params: dict[str, Any]
    status: int
    at: float  # time.monotonic() when it arrived

    def json_param(self, name: str) -> Any:
        """A parameter PTB JSON-encodes (lists, objects, numbers)."""
        value = self.params[name]
        return json.loads(value) if isinstance(value, str) else value


@dataclass
class _Failure:
    method: str
    remaining: int
    status: int
    body: dict[str, Any] = field(default_factory=dict)


class FakeBotApi:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._blocked: set[str] = set()
        self._updates: list[dict[str, Any]] = []
        self._message_id = 1000
        self.webhook: dict[str, Any] | None = None
        self.on_call: Callable[[Call], None] | None = None  # runs as each call is answered
        app = Starlette(routes=[Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])])
        self._live = LiveServer(app)
        self.port = self._live.port
        self.base_url = f"{self._live.url}/bot"
        self.base_file_url = f"{self._live.url}/file/bot"

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeBotApi:
        self._live.__enter__()
        return self

    def stop(self) -> None:
        self._live.__exit__()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._failures.clear()
            self._blocked.clear()
            self._updates.clear()
            self.webhook = None
            self.on_call = None

    # -- what tests arrange ----------------------------------------------------

    def rate_limit_next(self, n: int, retry_after: int = 1, method: str = "sendMessage") -> None:
        """Answer the next `n` calls of `method` with 429 and parameters.retry_after."""
        body = _error(429, f"Too Many Requests: retry after {retry_after}")
        body["parameters"] = {"retry_after": retry_after}
        with self._lock:
            self._failures.append(_Failure(method, n, 429, body))

    def fail_next(self, n: int, status: int = 502, method: str = "sendMessage") -> None:
        """Answer the next `n` calls of `method` with an error status (a 5xx, or 400 Bad Request)."""
        body = _error(status, "Bad Request" if status == 400 else "Bad Gateway")
        with self._lock:
            self._failures.append(_Failure(method, n, status, body))

    def block_chat(self, chat_id: int | str) -> None:
        """From now on the user of `chat_id` has blocked the bot: 403 on anything sent there."""
        with self._lock:
            self._blocked.add(str(chat_id))

    def queue_update(self, update: dict[str, Any]) -> None:
        """An update for getUpdates to hand out."""
        with self._lock:
            self._updates.append(update)

    def calls_to(self, method: str, *, ok_only: bool = False) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (c.status == 200 or not ok_only)]

    # -- the API ---------------------------------------------------------------

    async def _endpoint(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        if request.path_params["token"] != TOKEN:
            return self._answer(method, {}, 401, _error(401, "Unauthorized"))
        params = await _params(request)
        failure = self._take_failure(method, params)
        if failure is not None:
            return self._answer(method, params, failure[0], failure[1])
        if method == "getUpdates" and self.webhook is not None:
            # Telegram refuses long polling while a webhook is set.
            description = "Conflict: can't use getUpdates method while webhook is active"
            return self._answer(method, params, 409, _error(409, description))
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return self._answer(method, params, 404, _error(404, "Not Found"))
        result = await handler(params)
        return self._answer(method, params, 200, {"ok": True, "result": result})

    def _answer(self, method: str, params: dict[str, Any], status: int, body: dict[str, Any]) -> JSONResponse:
        call = Call(method, params, status, time.monotonic())
        with self._lock:
            self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        return JSONResponse(body, status_code=status)

    def _take_failure(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            if method in {"sendMessage", "sendChatAction"} and str(params.get("chat_id")) in self._blocked:
                return 403, _error(403, "Forbidden: bot was blocked by the user")
            for failure in self._failures:
                if failure.method == method and failure.remaining > 0:
                    failure.remaining -= 1
                    return failure.status, failure.body
        return None

    async def _api_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return BOT_USER

    async def _api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        with self._lock:
            self._message_id += 1
            message_id = self._message_id
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        if chat_id < 0:
            chat["title"] = "Test group"
        return {
            "message_id": message_id,
            "from": {k: BOT_USER[k] for k in ("id", "is_bot", "first_name", "username")},
            "chat": chat,
            "date": int(time.time()),
            "text": params["text"],
        }

    async def _api_sendChatAction(self, params: dict[str, Any]) -> bool:
        return True

    async def _api_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        return True

    async def _api_setWebhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self.webhook = params
        return True

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self.webhook = None
        return True

    async def _api_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        hold = min(float(params.get("timeout") or 0), _LONG_POLL_CAP_S)
        deadline = time.monotonic() + hold
        while True:
            with self._lock:
                # Asking from `offset` confirms (forgets) everything before it, as Telegram does.
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                if self._updates or time.monotonic() >= deadline:
                    return list(self._updates)
            await asyncio.sleep(0.02)


def _error(code: int, description: str) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "description": description}


async def _params(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body:
        return dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/json"):
        return json.loads(body)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
