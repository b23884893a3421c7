"""Delivery callbacks: out of order, duplicated, failed."""

from __future__ import annotations

import logging

from bots.events import DeliveryStatus
from bots.whatsapp.inbound import parse_status
from bots.whatsapp.status import DeliveryLog
from tests.bots.whatsapp.conftest import load_form

TO = "whatsapp:+12015550123"


def status_of(log: DeliveryLog, sid: str) -> str | None:
    entry = log.get(sid)
    return entry.status.lower() if entry else None


def status(sid: str, value: str, code: str | None = None) -> DeliveryStatus:
    return DeliveryStatus(message_sid=sid, status=value, recipient=TO, error_code=code)


def test_in_order():
    log = DeliveryLog()
    assert status_of(log, "SM1") is None
    for value in ("queued", "sending", "sent", "delivered", "read"):
        assert log.record(status("SM1", value))
        assert status_of(log, "SM1") == value


def test_out_of_order_keeps_the_later_stage():
    log = DeliveryLog()
    assert log.record(parse_status(load_form("status_delivered.txt")))  # type: ignore[arg-type]
    sid = "SM0000000000000000000000000000b003"
    sent = {**load_form("status_delivered.txt"), "MessageStatus": "sent", "SmsStatus": "sent"}
    assert not log.record(parse_status(sent))  # type: ignore[arg-type]
    assert status_of(log, sid) == "delivered"
    assert not log.record(status(sid, "queued"))
    assert not log.record(status(sid, "delivered"))  # a duplicate changes nothing
    assert log.record(status(sid, "read"))
    assert status_of(log, sid) == "read"


def test_failure_is_terminal_and_logged_once(caplog):
    log = DeliveryLog()
    log.record(status("SM2", "sent"))
    with caplog.at_level(logging.WARNING, logger="bots.whatsapp.status"):
        assert log.record(status("SM2", "failed", "63016"))
        assert not log.record(status("SM2", "failed", "63016"))
        assert not log.record(status("SM2", "delivered"))
        assert not log.record(status("SM2", "undelivered"))
    assert status_of(log, "SM2") == "failed"
    assert log.get("SM2").error_code == "63016"  # type: ignore[union-attr]
    failures = [r for r in caplog.records if "SM2" in r.getMessage()]
    assert len(failures) == 1 and "63016" in failures[0].getMessage()
    assert "2015550123" not in caplog.text  # the recipient is redacted


def test_failure_first_then_earlier_stages():
    log = DeliveryLog()
    assert log.record(status("SM3", "undelivered", "63016"))
    assert not log.record(status("SM3", "queued"))
    assert not log.record(status("SM3", "sent"))
    assert status_of(log, "SM3") == "undelivered"


def test_late_failure_does_not_undo_delivery():
    log = DeliveryLog()
    log.record(status("SM4", "delivered"))
    assert not log.record(status("SM4", "failed", "30008"))
    assert status_of(log, "SM4") == "delivered"


def test_unknown_status_ignored_and_memory_bounded():
    log = DeliveryLog(max_entries=3)
    assert not log.record(status("SM5", "receiving"))
    assert status_of(log, "SM5") is None
    for i in range(5):
        log.record(status(f"SM{i + 10}", "sent"))
    assert status_of(log, "SM10") is None and status_of(log, "SM14") == "sent"
