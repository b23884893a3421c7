"""Continuous batching: every request for one model decoded as rows of one batch.

A `BatchEngine` owns one model object and one thread. Each decode step is a
single forward pass over all running rows; rows of a PEFT model may use
different LoRA adapters (PEFT's mixed-adapter batches: `adapter_names`, one
entry per row, `"__base__"` for no adapter), and each row keeps its own stop
tokens, token limit, temperature/top_p and repetition penalty.

Between steps, finished and cancelled rows leave the batch (their callers get
their results at once) and waiting requests join it: a newcomer's prompt is
prefilled on its own, then its KV cache is left-padded to the batch's length
(or the batch's to its) and stacked under the others. The attention mask hides
the padding and each row keeps its own position ids, so a row decodes exactly
as it would alone, up to float rounding.

Requests arrive through a thread-safe queue; tokens and results go back to the
caller's event loop with `loop.call_soon_threadsafe`.
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

# An engine's thread ends after this long without work; the next request starts a new one.
_IDLE_EXIT_S = 30.0
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


class BatchEngine:
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
        self._name = name
        self._incoming: deque[_Row] = deque()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._drain = True
        self._stopped = False
        self._stats = EngineStats()
        # Why the engine gave up serving, for readiness; None while it serves.
        self.failure: str | None = None

    @property
    def stats(self) -> EngineStats:
        return replace(self._stats)

    def submit(self, request: DecodeRequest, *, stream: bool = False) -> Ticket:
        """Queue a request (call from a running event loop); raises EngineStopped once closed."""
        ticket = Ticket(asyncio.get_running_loop(), stream)
        row = _Row(request, ticket)
        with self._wakeup:
            if self._stopped or (self._closing and not self._drain):
                raise EngineStopped(f"{self._name}: closed")
            self._incoming.append(row)
            if self._thread is None:  # started on demand: an idle engine holds no thread
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._wakeup.notify()
        return ticket

    def close(self, *, drain: bool) -> None:
        """Stop the engine: after finishing what it holds (`drain`), or failing it at once.

        Draining keeps accepting submissions until the thread has nothing left, so a
        request never lands on an engine that will not run it: it either runs or gets
        EngineStopped and can go to the model that replaced this one.
        """
        with self._wakeup:
            self._closing = True
            self._drain = self._drain and drain
            if self._thread is None:
                self._stop()
            self._wakeup.notify()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the engine thread to end (after `close`); True once it has.

        A process that exits while the thread is still inside torch can abort
        ("terminate called without an active exception"), so shutdown waits.
        """
        with self._wakeup:
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # Everything below runs on the engine thread.

    def _run(self) -> None:
        waiting: deque[_Row] = deque()
        crashes = 0
        while True:
            batch = _Batch(self._model.device)
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
                    _deliver(row, error)
                if crashes < _MAX_CRASHES:
                    continue  # a fresh batch; waiting requests are still in `waiting`
                self.failure = f"{self._name}: the batch loop failed {crashes} times in a row ({brief(error)})"
                log.error("%s; the engine stops", self.failure)
                outcome: BaseException = EngineStopped(self.failure)
            except BaseException as error:  # never leave a caller waiting forever
                outcome = error
                for row in batch.rows:
                    _deliver(row, error)
            for row in [*waiting, *self._drain_incoming()]:
                _deliver(row, outcome)
            return

    def _take(self, batch: _Batch, waiting: deque[_Row]) -> bool:
        """Move submissions into `waiting`; False when the thread should end."""
        with self._wakeup:
            if not batch.rows and not waiting:
                if not self._wakeup.wait_for(lambda: self._incoming or self._closing, timeout=_IDLE_EXIT_S):
                    # Long idle: end the thread (submit starts another), so an engine nobody
                    # holds any more does not keep its model alive through its thread.
                    self._thread = None
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
            if self._closing and not self._drain:
                self._stop()
                stopped = EngineStopped(f"{self._name}: closed")
                for row in [*batch.rows, *waiting]:
                    _deliver(row, stopped)
                batch.clear()
                return False
            if self._closing and not batch.rows and not waiting:
                self._stop()  # under the lock: no submission can slip in after this
                return False
            return True

    def _stop(self) -> None:
        """Refuse submissions from now on and let go of the model (call holding the lock)."""
        self._stopped = True
        self._model = None  # a retired model is freed once its engine stops

    def _drain_incoming(self) -> list[_Row]:
        with self._wakeup:
            self._stop()
            rows = list(self._incoming)
            self._incoming.clear()
            return rows

    def _admit(self, batch: _Batch, waiting: deque[_Row]) -> None:
        """Prefill waiting requests into the free rows, one at a time."""
        while waiting and len(batch.rows) < self._max_rows:
            row = waiting.popleft()
            if row.ticket.cancelled:
                self._stats.cancelled += 1
                continue
            if row.request.params.max_new_tokens <= 0:
                _deliver(row, Decoded([], "length"))
                continue
            try:
                cache, seen = self._prefill(row)
                if self._record(row):
                    continue  # done after one token: it never needs a row
                batch.add(row, cache, seen)
            except Exception as error:  # a request the model cannot take fails alone
                log.exception("%s: prefill failed", self._name)
                _deliver(row, error)
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

    def _step(self, batch: _Batch) -> None:
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
                _deliver(row, error)
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
            _deliver(row, Decoded(row.generated, "stop", row.first_token_at))
            return True
        row.generated.append(token)
        if row.ticket.tokens is not None and not _send_token(row, token):
            return True  # the caller's loop is gone: nobody is listening
        if len(row.generated) >= request.params.max_new_tokens:
            _deliver(row, Decoded(row.generated, "length", row.first_token_at))
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


class _Batch:
    """The running rows and their stacked state: KV cache, attention mask, seen tokens.

    Row i of every tensor belongs to `rows[i]`. Columns are left-padded so all
    rows end at the same column; `mask` is False on the padding.
    """

    def __init__(self, device: Any) -> None:
        self.device = device
        self.clear()

    def add(self, row: _Row, cache: DynamicCache, seen: torch.Tensor) -> None:
        """Stack a prefilled row under the others, left-padding whichever side is shorter."""
        length = cache.get_seq_length()
        mask = torch.ones((1, length), dtype=torch.bool, device=self.device)
        if self.rows:
            width = max(length, self.mask.shape[1])
            layers = [
                (_stack(old.keys, new.keys, width), _stack(old.values, new.values, width))
                for old, new in zip(self.cache.layers, cache.layers)
            ]
            cache = DynamicCache(layers)
            mask = _stack(self.mask, mask, width)
            seen = torch.cat([self.seen, seen])
        self.rows.append(row)
        self.cache, self.mask, self.seen = cache, mask, seen

    def drop(self, indices: list[int]) -> None:
        """Remove rows; padding columns no remaining row needs are cut off too."""
        gone = set(indices)
        keep = [i for i in range(len(self.rows)) if i not in gone]
        if not keep:
            self.clear()
            return
        self.rows = [self.rows[i] for i in keep]
        index = torch.tensor(keep, device=self.device)
        mask = self.mask[index]
        start = int(mask.any(0).nonzero()[0])  # the first column a remaining row attends to
        self.cache = DynamicCache(
            [(layer.keys[index, :, start:], layer.values[index, :, start:]) for layer in self.cache.layers]
        )
        self.mask = mask[:, start:]
        self.seen = self.seen[index]

    def clear(self) -> None:
        self.rows: list[_Row] = []
        self.cache = DynamicCache()
        self.mask = torch.zeros((0, 0), dtype=torch.bool, device=self.device)
        self.seen = torch.zeros((0, 0), dtype=torch.bool, device=self.device)  # for repetition penalty


def _stack(batch: torch.Tensor, row: torch.Tensor, width: int) -> torch.Tensor:
    """Concatenate along rows after left-padding both to `width` along the sequence.

    Works for KV tensors (rows, heads, seq, dim) and masks (rows, seq): the sequence
    axis is the second-to-last for the former and the last for the latter.
    """
    axis = -2 if batch.dim() == 4 else -1

    def pad(tensor: torch.Tensor) -> torch.Tensor:
        missing = width - tensor.shape[axis]
        if not missing:
            return tensor
        return F.pad(tensor, (0, 0, missing, 0) if axis == -2 else (missing, 0))

    return torch.cat([pad(batch), pad(row)])


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


def _deliver(row: _Row, outcome: Decoded | BaseException) -> None:
    deliver(row.ticket, outcome)


def _send_token(row: _Row, token: int) -> bool:
    return send_token(row.ticket, token)
