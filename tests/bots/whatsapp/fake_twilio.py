"""A loopback stand-in for Twilio's Messages REST API, for the real twilio client to talk to."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

_PATH_PREFIX = "/2010-04-01/Accounts/"


@dataclass
class Call:
    """One POST that reached the fake, whatever it answered."""

    account_sid: str
    form: dict[str, str]
    status: int
    answered_at: float = field(default_factory=time.monotonic)


class FakeTwilio:
    """`POST /2010-04-01/Accounts/<sid>/Messages.json` on 127.0.0.1, in a background thread.

    `fail_next(n, status, code)` answers the next n calls with a Twilio error;
    `drop_next(n)` closes the connection without an answer (a network error);
    `delay` holds every answer back that many seconds.
    """

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.calls: list[Call] = []
        self.messages: list[dict[str, str]] = []  # accepted messages, each with its "Sid"
        self.delay = 0.0
        self._failures: deque[tuple[int, int | None]] = deque()  # (HTTP status, code); code None = drop
        self._lock = threading.Lock()
        # Port 0: the OS picks a free one.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )  # a short poll so shutdown() returns at once

    def __enter__(self) -> FakeTwilio:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail_next(self, n: int, status: int, code: int | None = None) -> None:
        with self._lock:
            self._failures.extend([(status, code if code is not None else status)] * n)

    def drop_next(self, n: int) -> None:
        with self._lock:
            self._failures.extend([(0, None)] * n)

    def _next_failure(self) -> tuple[int, int | None] | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            if call.status == 201:
                self.messages.append(call.form)


_ERROR_MESSAGES = {
    63016: (
        "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template."
    ),
    21211: "The 'To' number is not a valid phone number.",
    20429: "Too Many Requests",
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20500: "An internal server error has occurred",
}


def _handler(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API, so pooled connections are reused

        def log_message(self, *_: object) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
            form = {name: values[-1] for name, values in parse_qs(raw, keep_blank_values=True).items()}
            path = self.path.split("?")[0]
            if not (path.startswith(_PATH_PREFIX) and path.endswith("/Messages.json")):
                return self._error(404, 20404, form, "")
            sid = path[len(_PATH_PREFIX) : -len("/Messages.json")]
            expected = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
            if sid != fake.account_sid or self.headers.get("Authorization") != f"Basic {expected}":
                return self._error(401, 20003, form, sid)
            if fake.delay:
                time.sleep(fake.delay)
            failure = fake._next_failure()
            if failure is not None:
                status, code = failure
                if code is None:  # simulate a dropped connection: no status line at all
                    fake._record(Call(sid, form, 0))
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                return self._error(status, code, form, sid)
            message_sid = "SM" + uuid.uuid4().hex
            form = {**form, "Sid": message_sid}
            fake._record(Call(sid, form, 201))
            now = formatdate(usegmt=True)
            self._json(
                201,
                {
                    "account_sid": sid,
                    "api_version": "2010-04-01",
                    "body": form.get("Body", ""),
                    "date_created": now,
                    "date_sent": None,
                    "date_updated": now,
                    "direction": "outbound-api",
                    "error_code": None,
                    "error_message": None,
                    "from": form.get("From"),
                    "messaging_service_sid": None,
                    "num_media": "0",
                    "num_segments": "1",
                    "price": None,
                    "price_unit": None,
                    "sid": message_sid,
                    "status": "queued",
                    "subresource_uris": {
                        "media": f"{_PATH_PREFIX}{sid}/Messages/{message_sid}/Media.json"
                    },
                    "to": form.get("To"),
                    "uri": f"{_PATH_PREFIX}{sid}/Messages/{message_sid}.json",
                },
            )
            return None

        def _error(self, status: int, code: int, form: dict[str, str], sid: str) -> None:
            fake._record(Call(sid, form, status))
            self._json(
                status,
                {
                    "code": code,
                    "message": _ERROR_MESSAGES.get(code, "Error"),
                    "more_info": f"https://www.twilio.com/docs/errors/{code}",
                    "status": status,
                },
            )

        def _json(self, status: int, document: dict) -> None:
            payload = json.dumps(document).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler

