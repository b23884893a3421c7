"""Continuous batching: every request for one model decoded as rows of one batch.

A `BatchEngine` owns one model object and one thread. Each decode step is a
single forward pass over all running rows; rows of a PEFT model may use
different LoRA adapters (PEFT's mixed-adapter batches: `adapter_names`, one
entry per row, `"__base__"` for no adapter), and each row keeps its own stop
tokens, token limit, temperature/top_p and repetition penalty.

Between steps, finished and cancelled rows leave the batch (their callers get
their results at once) and waiting requests join it: a newcomer's prompt is
prefilled on its own, then its KV cache is stacked under the others, left-padded
(inference/batch_cache.py). The attention mask hides the padding and each row
keeps its own position ids, so a row decodes exactly as it would alone, up to
float rounding.

Requests arrive through the engine thread's queue (inference/engine_thread.py);
tokens and results go back to the caller's event loop with
`loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from inference.batch_cache import Batch
from inference.engine_thread import EngineThread
from inference.gathered_lora import NO_ADAPTER
from inference.prefix_cache import CAPACITY as PREFIX_CAPACITY
from inference.prefix_cache import PrefixCache
from inference.sampling import choose_tokens, row_settings
from inference.tickets import (
    Decoded,
    DecodeRequest,
    EngineStats,
    EngineStopped,
    Ticket,
    brief,
    deliver,
    send_token,
)

log = logging.getLogger(__name__)

# Loop failures in a row (no decode step between them) after which an engine gives up.
_MAX_CRASHES = 3


@dataclass(eq=False)
class _Row:
    request: DecodeRequest
    ticket: Ticket
    next_token: int = 0  # chosen, not yet fed to the model
    position: int = 0  # position id of `next_token`
    generated: list[int] = field(default_factory=list)
    first_token_at: float | None = None


class BatchEngine(EngineThread[_Row]):
    """Decodes every request submitted for one model object, batched on one thread."""

    def __init__(
        self,
        model: Any,
        *,
        max_batch_size: int = 16,
        window_s: float = 0.005,
        step_lock: threading.Lock | None = None,
        name: str = "batch",
        prefix_capacity: int = PREFIX_CAPACITY,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        super().__init__(name)
        self._model = model
        self._peft = hasattr(model, "peft_config")  # only PEFT models take `adapter_names`
        # A model whose adapters are gathered (inference/gathered_lora.py) is told the rows' adapters instead.
        self._adapter_rows = getattr(model, "adapter_rows", None)
        self._prefixes = PrefixCache(prefix_capacity)  # 0: every prompt is computed whole
        self._max_rows = max_batch_size
        self._window_s = window_s
        # Engines of one backend share it so two models never run forward passes at once
        # (on CPU both would fight over the same cores).
        self._step_lock = step_lock or threading.Lock()
        self._stats = EngineStats()

    @property
    def stats(self) -> EngineStats:
        return replace(self._stats)

    def submit(self, request: DecodeRequest, *, stream: bool = False) -> Ticket:
        """Queue a request (call from a running event loop); raises EngineStopped once closed."""
        ticket = Ticket(asyncio.get_running_loop(), stream)
        self._enqueue(_Row(request, ticket))
        return ticket

    # Everything below runs on the engine thread.

    def _run(self) -> None:
        waiting: deque[_Row] = deque()
        crashes = 0
        while True:
            batch: Batch[_Row] = Batch(self._model.device)
            try:
                with torch.inference_mode():
                    while self._take(batch, waiting):
                        self._admit(batch, waiting)
                        if batch.rows:
                            self._step(batch)
                            crashes = 0
                return
            except Exception as error:  # a bug below: fail the rows in hand, serve the rest
                crashes += 1
                log.exception("%s: the batch loop failed (%d in a row)", self._name, crashes)
                for row in batch.rows:
                    deliver(row.ticket, error)
                if crashes < _MAX_CRASHES:
                    continue  # a fresh batch; waiting requests are still in `waiting`
                self.failure = f"{self._name}: the batch loop failed {crashes} times in a row ({brief(error)})"
                log.error("%s; the engine stops", self.failure)
                outcome: BaseException = EngineStopped(self.failure)
            except BaseException as error:  # never leave a caller waiting forever
                outcome = error
                for row in batch.rows:
                    deliver(row.ticket, error)
            for row in [*waiting, *self._drain_incoming()]:
                deliver(row.ticket, outcome)
            return

    def _take(self, batch: Batch[_Row], waiting: deque[_Row]) -> bool:
        """Move submissions into `waiting`; False when the thread should end."""
        with self._wakeup:
            if not batch.rows and not waiting:
                if not self._wait_for_work():
                    return False
                if self._incoming and not self._closing:
                    # A few ms for company: requests arriving together start as one batch.
                    deadline = time.monotonic() + self._window_s
                    self._wakeup.wait_for(
                        lambda: len(self._incoming) >= self._max_rows or self._closing,
                        timeout=max(0.0, deadline - time.monotonic()),
                    )
            waiting.extend(self._incoming)
            self._incoming.clear()
            if self._aborting:
                self._stop()
                stopped = self._closed()
                for row in [*batch.rows, *waiting]:
                    deliver(row.ticket, stopped)
                batch.clear()
                return False
            if self._closing and not batch.rows and not waiting:
                self._stop()  # under the lock: no submission can slip in after this
                return False
            return True

    def _release(self) -> None:
        self._model = None

    def _drain_incoming(self) -> list[_Row]:
        with self._wakeup:
            self._stop()
            rows = list(self._incoming)
            self._incoming.clear()
            return rows

    def _admit(self, batch: Batch[_Row], waiting: deque[_Row]) -> None:
        """Prefill waiting requests into the free rows, one at a time."""
        while waiting and len(batch.rows) < self._max_rows:
            row = waiting.popleft()
            if row.ticket.cancelled:
                self._stats.cancelled += 1
                continue
            if row.request.params.max_new_tokens <= 0:
                deliver(row.ticket, Decoded([], "length"))
                continue
            try:
                cache, seen = self._prefill(row)
                if self._record(row):
                    continue  # done after one token: it never needs a row
                batch.add(row, cache, seen)
            except Exception as error:  # a request the model cannot take fails alone
                log.exception("%s: prefill failed", self._name)
                deliver(row.ticket, error)
                continue
            if len(batch.rows) > 1:
                self._stats.joined_running += 1

    def _prefill(self, row: _Row) -> tuple[DynamicCache, torch.Tensor]:
        """Run the prompt alone and choose its first token; returns its KV cache and seen tokens.

        Only the tokens after the longest prefix computed before (same adapter) are run.
        """
        started = time.perf_counter()
        device = self._model.device
        tokens, adapter = row.request.prompt_ids, row.request.adapter
        reused, cache = self._prefixes.lookup(adapter, tokens)
        prompt = torch.tensor([tokens[reused:]], device=device)
        with self._step_lock:
            output = self._model(
                input_ids=prompt,
                attention_mask=torch.ones((1, len(tokens)), dtype=torch.long, device=device),
                position_ids=torch.arange(reused, len(tokens), device=device)[None],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,  # the prompt's other logits would cost a vocab-sized matmul each
                **self._adapter_kwargs([row]),
            )
        self._prefixes.store(adapter, tokens, cache)
        self._stats.prefill_tokens += len(tokens) - reused
        self._stats.reused_tokens += reused
        self._stats.prefills += 1
        logits = output.logits[:, -1].float()
        # The repetition penalty counts the answer's own tokens: it stops loops, and a grounded
        # answer may still copy a number from the handbook entries in its prompt.
        seen = torch.zeros(logits.shape, dtype=torch.bool, device=device)
        row.next_token = int(choose_tokens(logits, seen, *row_settings([row.request.params], device))[0])
        row.position = len(tokens)
        row.first_token_at = time.perf_counter()
        seen[0, row.next_token] = True
        self._stats.prefill_seconds += time.perf_counter() - started
        return cache, seen

    def _step(self, batch: Batch[_Row]) -> None:
        """Decode one token for every row; rows that end leave the batch at once."""
        cancelled = [i for i, row in enumerate(batch.rows) if row.ticket.cancelled]
        if cancelled:
            self._stats.cancelled += len(cancelled)
            batch.drop(cancelled)
            if not batch.rows:
                return
        started = time.perf_counter()
        rows, device = batch.rows, batch.device
        self._stats.decode_steps += 1
        self._stats.rows_decoded += len(rows)
        self._stats.max_rows = max(self._stats.max_rows, len(rows))
        try:
            mask = F.pad(batch.mask, (0, 1), value=True)
            with self._step_lock:
                output = self._model(
                    input_ids=torch.tensor([[row.next_token] for row in rows], device=device),
                    attention_mask=mask,
                    position_ids=torch.tensor([[row.position] for row in rows], device=device),
                    cache=batch.cache,
                    use_cache=True,
                    **self._adapter_kwargs(rows),
                )
            settings = row_settings([row.request.params for row in rows], device)
            tokens = choose_tokens(output.logits[:, -1].float(), batch.seen, *settings)
        except Exception as error:  # the rows in this pass fail; the engine serves on
            log.exception("%s: decode step failed", self._name)
            for row in rows:
                deliver(row.ticket, error)
            batch.clear()
            return
        self._stats.decode_seconds += time.perf_counter() - started
        batch.mask = mask
        batch.seen[torch.arange(len(rows), device=device), tokens] = True
        for row, token in zip(rows, tokens.tolist()):
            row.next_token = token
            row.position += 1
        finished = [i for i, row in enumerate(rows) if self._record(row)]
        if finished:
            batch.drop(finished)

    def _record(self, row: _Row) -> bool:
        """Account for the row's newly chosen token; True when the row is done."""
        request, token = row.request, row.next_token
        if token in request.stop_ids:
            deliver(row.ticket, Decoded(row.generated, "stop", row.first_token_at))
            return True
        row.generated.append(token)
        if row.ticket.tokens is not None and not send_token(row.ticket, token):
            return True  # the caller's loop is gone: nobody is listening
        if len(row.generated) >= request.params.max_new_tokens:
            deliver(row.ticket, Decoded(row.generated, "length", row.first_token_at))
            return True
        return False

    def _adapter_kwargs(self, rows: list[_Row]) -> dict[str, Any]:
        """Select each row's adapter: on the gathered layers, or as PEFT's `adapter_names`."""
        if self._adapter_rows is not None:
            self._adapter_rows.select([row.request.adapter for row in rows], self._model.device)
            return {}
        if not self._peft:
            return {}
        return {"adapter_names": [row.request.adapter or NO_ADAPTER for row in rows]}
