"""The local backend: models in this process, computed by a runtime.

The runtime (inference/runtime.py) loads the base model and each department's
live artifact and gives each model object an engine: torch batches requests of
any departments together (inference/torch_runtime.py); llama.cpp serves GGUF on
CPU (inference/llamacpp.py). This module fits prompts to the context, streams
text, and swaps in new models on reload; engines run on their own threads, so the
event loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from threading import Event
from typing import Any

from core.company import BASE
from core.messages import Grounding, Turn
from inference.base import DepartmentModel, Generation, GenerationParams, InputTooLong, NotReady
from inference.chat_format import encode_chat
from inference.registry import read_registry
from inference.runtime import Engine, Runtime, Served
from inference.tickets import Decoded, DecodeRequest, EngineStats, EngineStopped, Ticket

log = logging.getLogger(__name__)

# How long shutdown waits for each engine thread to finish its current step.
_JOIN_TIMEOUT_S = 10.0


class LocalBackend:
    """Serves every department from models loaded in this process.

    Without a `runtime`, torch with `device`, `max_batch_size` (rows decoded
    together in one forward pass; 1 means one request at a time) and
    `batch_window_ms` (how long an idle engine waits for company before starting
    a batch; later requests join a running batch between decode steps).
    """

    def __init__(
        self,
        models_dir: Path,
        system_prompts: Mapping[str, str],
        device: str = "auto",
        max_batch_size: int = 16,
        batch_window_ms: float = 5.0,
        runtime: Runtime | None = None,
    ) -> None:
        if runtime is None:
            from inference.torch_runtime import TorchRuntime

            runtime = TorchRuntime(device, max_batch_size, max(0.0, batch_window_ms) / 1000)
        self._runtime = runtime
        self._base_model = ""
        self._models_dir = models_dir
        self._prompts = dict(system_prompts)
        # The prompts name every department served, and base.
        self._departments = tuple(target for target in self._prompts if target != BASE)
        self._served: dict[str, Served] = {}
        self._ready = Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def problem(self) -> str | None:
        failures = [engine.failure for engine in _engines_of(self._served) if engine.failure]
        return "; ".join(failures) or None

    def load(self, base_model: str) -> None:
        """Load `base_model` (a path or hub id) and every registered department (blocking)."""
        self._base_model = base_model
        self.reload()

    def reload(self) -> None:
        """Load the registry's models afresh, then swap them in (blocking).

        Requests already generating keep the models they started with; new
        requests get the new ones. The old engines finish their requests and
        stop, and the old models are freed with them.
        """
        registry = read_registry(self._models_dir, self._departments)
        served = self._runtime.load(self._base_model, registry, (*self._departments, BASE))
        retired = self._served
        self._served = served  # one reference swap: readers see the old or the new set, never a mix
        self._ready.set()
        for engine in _engines_of(retired):
            engine.close(drain=True)

    def models(self) -> list[DepartmentModel]:
        return [entry.info for entry in self._served.values()]

    def count_tokens(self, text: str) -> int:
        return len(self._entry(BASE).tokenizer(text, add_special_tokens=False)["input_ids"])

    def batch_stats(self, department: str) -> EngineStats:
        """Counters of the engine serving `department` (shared by departments on one model)."""
        return self._entry(department).engine.stats

    async def generate(
        self, department: str, turns: Sequence[Turn], params: GenerationParams, grounding: Grounding | None = None
    ) -> Generation:
        entry, prompt_tokens, ticket = await self._submit(department, turns, params, grounding, stream=False)
        try:
            decoded = await ticket.result
        finally:
            ticket.cancel()  # a caller that gives up frees its row at the next step
        return _generation(entry, prompt_tokens, decoded)

    def stream(
        self, department: str, turns: Sequence[Turn], params: GenerationParams, grounding: Grounding | None = None
    ) -> TokenStream:
        return TokenStream(self, department, turns, params, grounding)

    def close(self) -> None:
        self._ready.clear()  # before the engines stop, so nothing retries onto them
        engines = _engines_of(self._served)
        for engine in engines:
            engine.close(drain=False)
        for engine in engines:  # a step in progress ends in well under this
            if not engine.join(timeout=_JOIN_TIMEOUT_S):
                log.warning("an engine thread did not stop within %.0f s", _JOIN_TIMEOUT_S)

    async def _submit(
        self, department: str, turns: Sequence[Turn], params: GenerationParams, grounding: Grounding | None,
        *, stream: bool,
    ) -> tuple[Served, int, Ticket]:
        """Fit the prompt and hand the request to its model's engine."""
        while True:
            entry = self._entry(department)
            # Off the event loop: the chat template and tokenizer take a while on long histories.
            prompt_ids = await asyncio.to_thread(
                self._fit_prompt, entry, department, turns, params.max_new_tokens, grounding
            )
            request = DecodeRequest(prompt_ids, entry.adapter, params, entry.stop_ids)
            try:
                return entry, len(prompt_ids), entry.engine.submit(request, stream=stream)
            except EngineStopped:
                if self._served.get(department) is entry:
                    raise
                # A reload retired this model while the prompt was being fitted: use the new one.

    def _entry(self, department: str) -> Served:
        if not self._ready.is_set():
            raise NotReady("models are still loading")
        try:
            return self._served[department]
        except KeyError:
            raise ValueError(f"unknown department {department!r}") from None

    def _fit_prompt(
        self, entry: Served, department: str, turns: Sequence[Turn], max_new_tokens: int,
        grounding: Grounding | None = None,
    ) -> list[int]:
        """Encode the conversation, dropping the oldest turns until it fits the context.

        How many to drop is found by bisection: O(log n) encodings of the
        conversation, not one per dropped turn (quadratic on long histories).
        """
        limit = entry.context_length - max_new_tokens
        system = self._prompts.get(department, self._prompts[BASE])
        turns = list(turns)

        def encode(drop: int) -> list[int]:
            return encode_chat(entry.tokenizer, system, turns[drop:], add_generation_prompt=True, grounding=grounding)

        ids = encode(0)
        if len(ids) <= limit:
            return ids
        low, high = 1, len(turns) - 1  # dropping `high` leaves only the newest turn
        best = encode(high)
        if len(best) > limit:
            raise InputTooLong(
                f"the message is {len(best)} tokens with its system prompt; this model "
                f"takes at most {limit} when answering with up to {max_new_tokens} tokens"
            )
        while low < high:  # the fewest drops that fit, in [low, high]
            middle = (low + high) // 2
            candidate = encode(middle)
            if len(candidate) <= limit:
                high, best = middle, candidate
            else:
                low = middle + 1
        return best


class TokenStream:
    """Async iterator of text deltas; `result` holds the Generation afterwards."""

    def __init__(
        self, backend: LocalBackend, department: str, turns: Sequence[Turn], params: GenerationParams,
        grounding: Grounding | None = None,
    ) -> None:
        self._backend = backend
        self._args = (department, list(turns), params, grounding)
        self.result: Generation | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        entry, prompt_tokens, ticket = await self._backend._submit(*self._args, stream=True)
        assert ticket.tokens is not None
        deltas = _TextDeltas(entry.tokenizer)
        try:
            while (token := await ticket.tokens.get()) is not None:
                if delta := deltas.add(token):
                    yield delta
            result = _generation(entry, prompt_tokens, await ticket.result)
            if rest := deltas.finish(result.text):
                yield rest
            self.result = result
        finally:
            # A client that stops reading frees its row at the next decode step.
            ticket.cancel()


class _TextDeltas:
    """Turns generated token ids into text deltas.

    Decodes the whole answer each step and emits what is new, holding back
    half-decoded characters and trailing spaces, so the deltas join to exactly
    the stripped text the non-streaming path returns.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._sent = ""

    def add(self, token: int) -> str:
        self._ids.append(token)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True).strip()
        if text.endswith("\ufffd") or not text.startswith(self._sent):
            return ""
        delta, self._sent = text[len(self._sent):], text
        return delta

    def finish(self, text: str) -> str:
        """What is left of the final text (a character held back at the token limit)."""
        return text[len(self._sent):] if text.startswith(self._sent) else ""


def _generation(entry: Served, prompt_tokens: int, decoded: Decoded) -> Generation:
    return Generation(
        text=entry.tokenizer.decode(decoded.token_ids, skip_special_tokens=True).strip(),
        prompt_tokens=prompt_tokens,
        completion_tokens=len(decoded.token_ids),
        finish_reason=decoded.finish_reason,
        first_token_at=decoded.first_token_at,
    )


def _engines_of(served: Mapping[str, Served]) -> list[Engine]:
    return list({id(entry.engine): entry.engine for entry in served.values()}.values())
