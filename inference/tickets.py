"""What a caller hands an engine and gets back: requests, tickets, results.

An engine runs on its own thread; a ticket lives on the caller's event loop and is
only touched from the engine through `loop.call_soon_threadsafe` (deliver,
send_token), except its cancel flag, a threading.Event.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from inference.base import GenerationParams


class EngineStopped(RuntimeError):
    """The engine was closed: a reload retired its model, or the backend shut down."""


@dataclass(frozen=True)
class DecodeRequest:
    prompt_ids: list[int]
    adapter: str | None  # None: the model's own weights (a plain model, or PEFT's "__base__")
    params: GenerationParams
    stop_ids: frozenset[int]


@dataclass(frozen=True)
class Decoded:
    token_ids: list[int]  # the answer, without the stop token
    finish_reason: str  # "stop" or "length", as in Generation
    first_token_at: float | None = None  # time.perf_counter() when prefill chose the first token


@dataclass
class EngineStats:
    """Counters for tests, benchmarks and logs; written only by the engine thread."""

    prefills: int = 0
    decode_steps: int = 0
    rows_decoded: int = 0  # summed over steps: rows_decoded / decode_steps is the mean batch
    max_rows: int = 0  # the most rows in one decode step
    joined_running: int = 0  # requests merged into a batch that was already decoding
    cancelled: int = 0
    prefill_seconds: float = 0.0
    prefill_tokens: int = 0  # prompt tokens computed by prefills
    reused_tokens: int = 0  # prompt tokens whose keys and values came from the prefix cache
    decode_seconds: float = 0.0  # decode steps, from building inputs to choosing tokens


class Ticket:
    """The caller's side of one request: its result, and its tokens when streamed.

    Lives on the caller's event loop; the engine thread only touches it through
    `call_soon_threadsafe`, except for the cancel flag, which is a threading.Event.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stream: bool) -> None:
        self.loop = loop
        self.result: asyncio.Future[Decoded] = loop.create_future()
        # Each generated token, then None once `result` is settled.
        self.tokens: asyncio.Queue[int | None] | None = asyncio.Queue() if stream else None
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop decoding this request; its row leaves the batch before the next step."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _settle(self, outcome: Decoded | BaseException) -> None:  # on the loop
        if not self.result.done():
            if isinstance(outcome, BaseException):
                self.result.set_exception(outcome)
            else:
                self.result.set_result(outcome)
        if self.tokens is not None:
            self.tokens.put_nowait(None)


def deliver(ticket: Ticket, outcome: Decoded | BaseException) -> None:
    """Settle the ticket with a result or an error (from the engine thread)."""
    try:
        ticket.loop.call_soon_threadsafe(ticket._settle, outcome)
    except RuntimeError:  # the caller's event loop has closed: nobody is waiting
        pass


def send_token(ticket: Ticket, token: int) -> bool:
    """Stream one token to the caller; False when nobody is listening any more."""
    assert ticket.tokens is not None
    try:
        ticket.loop.call_soon_threadsafe(ticket.tokens.put_nowait, token)
        return True
    except RuntimeError:
        return False


def brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]
