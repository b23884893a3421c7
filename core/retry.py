"""The one retry policy of the project: capped exponential backoff with jitter, on tenacity.

Two shapes cover the callers:

- "N tries, then raise the last error": `retrying(on=..., attempts=N, ...)`.
- "until it works": `retrying(on=..., attempts=None, ...)`, cancelled by
  cancelling the task (CancelledError is never retried), or by an event through
  `unless_stopped`.

Use a fresh `retrying(...)` per operation: an `AsyncRetrying` keeps the state of
its current run on itself, so one instance must not serve two runs at once.

    async for attempt in retrying(on=OSError, log=log, what="redis: XREADGROUP"):
        with attempt:
            entries = await read()

    sid = await retrying(on=Unavailable, attempts=4, log=log, what="send")(create, body)

Called, it needs an `async def` function: a lambda returning a coroutine is not
awaited by tenacity, so its errors would escape the retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_never,
)

T = TypeVar("T")
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]
# Past this exponent every delay is capped anyway; stopping there keeps a loop that
# has failed for days from overflowing a float.
_MAX_EXPONENT = 64


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 = the first try).

    `base_s` doubling per attempt, capped at `max_s`, then scaled by a random 50-100%:
    callers that failed together (one outage) must not all come back in lockstep.
    """
    capped = min(max_s, base_s * 2.0 ** min(max(attempt - 1, 0), _MAX_EXPONENT))
    return capped * random.uniform(0.5, 1.0)


def backoff(
    base_s: float, max_s: float, *, hint: Callable[[BaseException], float | None] | None = None
) -> Callable[[RetryCallState], float]:
    """`backoff_delay` as a tenacity `wait`.

    `hint(error)` may return the wait a server asked for (Telegram's retry_after,
    an HTTP Retry-After); the wait is then at least that long, even above `max_s`,
    since retrying sooner is refused anyway.
    """

    def wait(state: RetryCallState) -> float:
        delay = backoff_delay(state.attempt_number, base_s, max_s)
        outcome = state.outcome
        if hint is not None and outcome is not None and outcome.failed:
            asked = hint(outcome.exception())
            if asked is not None:
                delay = max(delay, asked)
        return delay

    return wait


def retrying(
    *,
    on: ExceptionTypes,
    log: logging.Logger,
    what: str,
    attempts: int | None = None,
    base_s: float = 1.0,
    max_s: float = 30.0,
    except_on: ExceptionTypes = (),
    hint: Callable[[BaseException], float | None] | None = None,
    describe: Callable[[BaseException], str] | None = None,
    level: int = logging.INFO,
) -> AsyncRetrying:
    """An `AsyncRetrying` with the project's policy: iterate it (`async for attempt in ...`) or call it.

    Retries errors of the types `on`, except those of `except_on` (subclasses that
    retrying cannot fix); any other error is raised at once. `attempts` counts every
    try, the first included; `None` retries until success. When tries run out the
    last error itself is raised, not tenacity's RetryError. Before each wait one
    line is logged at `level`: "<what> failed (<describe(error)>); retry 2/3 in
    1.23s"; `describe` defaults to the error's class name, which cannot leak a
    URL or token the message might hold.
    """
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be at least 1")
    condition = retry_if_exception_type(on)
    if except_on:
        condition = condition & retry_if_not_exception_type(except_on)
    of = "" if attempts is None else f"/{attempts - 1}"
    reason = describe or _class_name

    def before_sleep(state: RetryCallState) -> None:
        # Only a failure is retried (never a result), so outcome holds an exception here.
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.log(
            level, "%s failed (%s); retry %d%s in %.2fs",
            what, reason(error) if error is not None else "?", state.attempt_number, of, delay,
        )

    return AsyncRetrying(
        retry=condition,
        stop=stop_never if attempts is None else stop_after_attempt(attempts),
        wait=backoff(base_s, max_s, hint=hint),
        before_sleep=before_sleep,
        reraise=True,
    )


def _class_name(error: BaseException) -> str:
    return type(error).__name__


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await `work` (say, a retry loop) unless `stop` is set first: then cancel it and return None.

    A result that is ready when `stop` gets set is still returned.
    """
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        pending = [future for future in (task, stopped) if not future.done()]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()
