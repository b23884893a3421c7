"""Keeping secrets and people's ids out of logs and error text.

`tag` stands in for a chat id, phone number or conversation id in a log line.
`hide_secrets` installs a log-record factory that blanks every configured secret
(tokens, auth keys, passwords in URLs) in every record of every logger, third-party
ones included, before any handler sees it; `scrub` does the same for text that
leaves by another way (an error body, a CLI message).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Channel prefixes of conversation ids: dropped so "whatsapp:+91..." and "+91..." get one tag.
_PREFIXES = ("whatsapp:", "telegram:")
# Shorter values would blank ordinary words or numbers all over the logs.
_MIN_SECRET_CHARS = 6
# Libraries that log request URLs (the Bot API token is in the path), payloads (chat ids,
# reply texts, the webhook secret) or account ids at INFO or DEBUG: only their warnings pass.
CHATTY_LIBRARIES = ("httpx", "httpx2", "httpcore", "telegram", "twilio", "openai", "urllib3", "hpack", "multipart")

_secrets: tuple[str, ...] = ()
_lock = threading.Lock()


def tag(value: object) -> str:
    """A short, stable stand-in for an id in logs: correlates lines without exposing who.

    Twelve hex digits of an unsalted SHA-256: enough to tell people apart, not a
    secret (phone numbers are a small space), so logs still deserve care.
    """
    if value is None or value == "":
        return "-"
    text = str(value).strip()
    for prefix in _PREFIXES:
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def hide_password(url: str) -> str:
    """`url` with the password of its user part masked (redis://:pw@host -> redis://:***@host)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))
    except ValueError:  # not parseable as a URL: show nothing of it
        return MASK


def scrub(text: str) -> str:
    """`text` with every secret registered by `hide_secrets` masked."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def hide_secrets(values: Iterable[str | None]) -> None:
    """Mask these values in every log record from now on, and in `scrub`.

    A URL counts by its password. Installs the record factory once; later calls
    add values. Also quiets the libraries that log requests (CHATTY_LIBRARIES).
    """
    global _secrets
    found = set(_secrets)
    for value in values:
        if not value:
            continue
        password = urlsplit(value).password if "://" in value else None
        for secret in (password, value if password is None else None):
            if secret and len(secret) >= _MIN_SECRET_CHARS:
                found.add(secret)
    with _lock:
        # Longest first: a token that contains another secret is masked whole.
        _secrets = tuple(sorted(found, key=len, reverse=True))
        factory = logging.getLogRecordFactory()
        if not getattr(factory, "_scrubs", False):
            logging.setLogRecordFactory(_scrubbing(factory))
    for name in CHATTY_LIBRARIES:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def _scrubbing(make_record):
    def factory(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if not _secrets:
            return record
        try:  # format now, so a secret passed as an argument is masked too
            record.msg, record.args = scrub(record.getMessage()), None
        except Exception:  # a malformed call: logging reports it when the record is emitted
            pass
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return record

    factory._scrubs = True  # type: ignore[attr-defined]
    return factory
