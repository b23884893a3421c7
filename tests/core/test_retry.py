"""The shared retry policy: delays, what is retried, what is raised, logging, stopping."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from tenacity import AsyncRetrying, RetryCallState

from core.retry import backoff, backoff_delay, retrying, unless_stopped

log = logging.getLogger("tests.core.retry")


class Flaky:
    """Raises the given errors, one per call, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def run_with_retries(call: Flaky, **options) -> str:
    options = {"log": log, "what": "test op", "base_s": 0.001, "max_s": 0.01, **options}
    async for attempt in retrying(**options):
        with attempt:
            return await call()
    raise AssertionError("unreachable")


def failed(error: BaseException) -> RetryCallState:
    state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    state.set_exception((type(error), error, None))
    return state


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8])
def test_delay_doubles_up_to_the_cap_with_jitter_below_it(attempt):
    ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
    delays = [backoff_delay(attempt, 0.5, 8.0) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jittered, not lockstep


def test_delay_of_a_very_long_outage_stays_capped():
    assert 15.0 <= backoff_delay(100_000, 1.0, 30.0) <= 30.0


def test_a_server_hint_lengthens_the_wait_even_past_the_cap():
    wait = backoff(0.001, 0.01, hint=lambda error: 2.5 if isinstance(error, KeyError) else None)
    assert wait(failed(KeyError("k"))) == 2.5
    assert wait(failed(ValueError("v"))) <= 0.01


def test_retries_then_succeeds_logging_each_wait(caplog):
    call = Flaky(OSError("down"), OSError("down"))
    with caplog.at_level(logging.INFO, logger=log.name):
        assert asyncio.run(run_with_retries(call, on=OSError, attempts=3)) == "done"
    assert call.calls == 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("test op failed (OSError); retry 1/2 in ")
    assert lines[1].startswith("test op failed (OSError); retry 2/2 in ")


def test_the_last_error_itself_is_raised_when_tries_run_out():
    call = Flaky(*(OSError(f"down {i}") for i in range(5)))
    with pytest.raises(OSError, match="down 2"):
        asyncio.run(run_with_retries(call, on=OSError, attempts=3))
    assert call.calls == 3


def test_errors_not_retried_are_raised_at_once():
    for error, options in [
        (KeyError("other type"), {"on": OSError}),
        (FileNotFoundError("a final subclass"), {"on": OSError, "except_on": FileNotFoundError}),
    ]:
        call = Flaky(error)
        with pytest.raises(type(error)):
            asyncio.run(run_with_retries(call, attempts=5, **options))
        assert call.calls == 1


def test_describe_and_level_shape_the_log_line(caplog):
    call = Flaky(OSError("connection refused"))
    with caplog.at_level(logging.INFO, logger=log.name):
        asyncio.run(run_with_retries(call, on=OSError, describe=str, level=logging.WARNING))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("test op failed (connection refused); retry 1 in ")  # no "/N": forever


def test_retrying_forever_ends_when_the_task_is_cancelled():
    async def main() -> tuple[int, float]:
        call = Flaky(*(OSError() for _ in range(1000)))
        task = asyncio.create_task(run_with_retries(call, on=OSError, base_s=60, max_s=60))
        await asyncio.sleep(0.05)  # now in its first 30-60 s wait
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return call.calls, time.monotonic() - started

    calls, took = asyncio.run(main())
    assert calls == 1 and took < 1.0


def test_unless_stopped_gives_up_a_waiting_retry_loop():
    async def main() -> tuple[str | None, int, str | None]:
        stop = asyncio.Event()
        call = Flaky(*(OSError() for _ in range(1000)))
        asyncio.get_running_loop().call_later(0.05, stop.set)
        stopped = await unless_stopped(run_with_retries(call, on=OSError, base_s=60, max_s=60), stop)
        finished = await unless_stopped(run_with_retries(Flaky(OSError()), on=OSError), asyncio.Event())
        return stopped, call.calls, finished

    stopped, calls, finished = asyncio.run(asyncio.wait_for(main(), timeout=5))
    assert stopped is None and calls == 1
    assert finished == "done"


def test_unless_stopped_passes_errors_through():
    async def main() -> None:
        await unless_stopped(run_with_retries(Flaky(KeyError("k")), on=OSError), asyncio.Event())

    with pytest.raises(KeyError):
        asyncio.run(main())


def test_attempts_must_be_positive():
    with pytest.raises(ValueError):
        retrying(on=OSError, log=log, what="x", attempts=0)
