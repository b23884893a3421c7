"""Where each message we sent stands, from Twilio's delivery callbacks."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from bots.events import DeliveryStatus
from core.redaction import tag

log = logging.getLogger(__name__)

# Progress of a message that is going well. Callbacks are separate HTTP requests
# and can arrive out of order ("delivered" before "sent"), so a status only counts
# if it is further along than what we already know.
_PROGRESS = {"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "read": 5}
# Final failures: nothing after them changes the outcome.
_FAILED = frozenset({"failed", "undelivered", "canceled"})
# Once the user has the message, a late failure callback cannot be true of it.
_ARRIVED = frozenset({"delivered", "read"})


class DeliveryLog:
    """The latest known delivery status per MessageSid, in bounded memory.

    Failures (e.g. 63016, outside the 24-hour window) are logged once, with the
    recipient redacted, and not retried: the same text would fail the same way.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, DeliveryStatus] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()  # callbacks may be handled on several threads

    def record(self, status: DeliveryStatus) -> bool:
        """Take in one callback; True if it moved the message to a new state."""
        new = status.status.lower()
        if new not in _PROGRESS and new not in _FAILED:
            log.debug("ignoring whatsapp status %r for %s", new, status.message_sid)
            return False
        with self._lock:
            current = self._entries.get(status.message_sid)
            if current is not None and not _advances(current.status, new):
                return False
            self._entries[status.message_sid] = status
            self._entries.move_to_end(status.message_sid)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        if new in _FAILED:
            log.warning(
                "whatsapp message %s to %s %s (error %s); not retried",
                status.message_sid, tag(status.recipient), new, status.error_code or "none",
            )
        return True

    def get(self, sid: str) -> DeliveryStatus | None:
        """The callback that set the current state, with its recipient and error code."""
        with self._lock:
            return self._entries.get(sid)


def _advances(current: str, new: str) -> bool:
    current = current.lower()
    if current in _FAILED:
        return False
    if new in _FAILED:
        return current not in _ARRIVED
    return _PROGRESS[new] > _PROGRESS.get(current, -1)
