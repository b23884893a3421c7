"""The local backend: transformers + PEFT in this process.

One base model in memory; department adapters are attached to it by name and
chosen per row with `adapter_names`, full fine-tuned models load on their own.
Each model object has a batching engine (inference/batching.py): requests that
overlap in time are decoded together in one batch, whatever their department,
on the engine's thread, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from threading import Event, Lock
from typing import TYPE_CHECKING, Any

from core.company import BASE
from core.messages import Grounding, Turn
from inference.artifacts import attach_adapter, load_causal_lm, pick_device, tokenizer_for
from inference.base import DepartmentModel, Generation, GenerationParams, InputTooLong, NotReady
from inference.chat_format import encode_chat
from inference.registry import Artifact, read_registry

if TYPE_CHECKING:  # the engine imports torch, which this module loads only when serving
    from inference.batching import BatchEngine, Decoded, EngineStats, Ticket

log = logging.getLogger(__name__)

# PEFT's name for "no adapter" in a mixed-adapter batch (inference.gathered_lora.NO_ADAPTER).
_NO_ADAPTER = "__base__"
# How long shutdown waits for each engine thread to finish its current step.
_JOIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class _Served:
    model: Any
    tokenizer: Any
    adapter: str | None  # set when `model` is the shared PEFT model
    info: DepartmentModel
    engine: BatchEngine  # one per model object: departments sharing a model share its batches
    stop_ids: frozenset[int]


class LocalBackend:
    """Serves every department from models loaded in this process.

    `max_batch_size` caps the rows decoded together in one forward pass (1 means
    one request at a time); `batch_window_ms` is how long an idle engine waits for
    company before starting a batch. Requests arriving later join a running batch
    between decode steps without waiting.
    """

    def __init__(
        self,
        models_dir: Path,
        system_prompts: Mapping[str, str],
        device: str = "auto",
        max_batch_size: int = 16,
        batch_window_ms: float = 5.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._base_model = ""
        self._models_dir = models_dir
        self._prompts = dict(system_prompts)
        # The prompts name every department served, and base.
        self._departments = tuple(target for target in self._prompts if target != BASE)
        self._device_setting = device
        self._max_batch_size = max_batch_size
        self._batch_window_s = max(0.0, batch_window_ms) / 1000
        # Engines take turns on the device: two models' forward passes never overlap.
        self._step_lock = Lock()
        self._served: dict[str, _Served] = {}
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
        from transformers import AutoTokenizer

        device = pick_device(self._device_setting)
        tokenizer = AutoTokenizer.from_pretrained(self._base_model)
        base = load_causal_lm(self._base_model, device)
        registry = read_registry(self._models_dir, self._departments)
        notes: dict[str, str] = dict(registry.problems)
        # Adapters first: each one wraps the shared base, so entries built
        # afterwards all point at the final PEFT model.
        shared: Any = base
        for department, artifact in registry.artifacts.items():
            if artifact.kind == "adapter":
                try:
                    shared = attach_adapter(shared, artifact)
                except Exception as error:  # a broken artifact must fall back, never crash
                    notes[department] = _load_failure(artifact, error)

        no_adapter = _NO_ADAPTER if shared is not base else None
        if shared is not base:
            from inference.gathered_lora import gather_adapters

            # One batched matmul pair per layer for any mix of departments, not one per adapter.
            shared = gather_adapters(shared) or shared
        engines: dict[int, BatchEngine] = {}

        def serve(model: Any, tok: Any, adapter: str | None, info: DepartmentModel) -> _Served:
            if id(model) not in engines:
                engines[id(model)] = self._engine(model, info.department)
            return _Served(model, tok, adapter, info, engines[id(model)], _stop_token_ids(model, tok))

        served: dict[str, _Served] = {}
        for department in (*self._departments, BASE):
            artifact = registry.artifacts.get(department)
            if artifact is not None and department not in notes:
                if artifact.kind == "adapter":
                    served[department] = serve(shared, tokenizer, department, _info(artifact))
                    continue
                try:
                    model = load_causal_lm(artifact.path, device)
                    served[department] = serve(
                        model, tokenizer_for(artifact.path, tokenizer), None, _info(artifact)
                    )
                    continue
                except Exception as error:
                    notes[department] = _load_failure(artifact, error)
            note = notes.get(department, "")
            if note:
                log.warning("%s: %s; serving the base model with its system prompt", department, note)
            info = DepartmentModel(department, "base", self._base_model, note=note)
            served[department] = serve(shared, tokenizer, no_adapter, info)
        served = {department: _with_memory(entry) for department, entry in served.items()}
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

    def _engine(self, model: Any, department: str) -> BatchEngine:
        from inference.batching import BatchEngine

        return BatchEngine(
            model,
            max_batch_size=self._max_batch_size,
            window_s=self._batch_window_s,
            step_lock=self._step_lock,
            name=f"batch-{department}",
        )

    async def _submit(
        self, department: str, turns: Sequence[Turn], params: GenerationParams, grounding: Grounding | None,
        *, stream: bool,
    ) -> tuple[_Served, int, Ticket]:
        """Fit the prompt and hand the request to its model's engine."""
        from inference.batching import DecodeRequest, EngineStopped

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

    def _entry(self, department: str) -> _Served:
        if not self._ready.is_set():
            raise NotReady("models are still loading")
        try:
            return self._served[department]
        except KeyError:
            raise ValueError(f"unknown department {department!r}") from None

    def _fit_prompt(
        self, entry: _Served, department: str, turns: Sequence[Turn], max_new_tokens: int,
        grounding: Grounding | None = None,
    ) -> list[int]:
        """Encode the conversation, dropping the oldest turns until it fits the context.

        How many to drop is found by bisection: O(log n) encodings of the
        conversation, not one per dropped turn (quadratic on long histories).
        """
        limit = getattr(entry.model.config, "max_position_embeddings", 2048) - max_new_tokens
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


def _generation(entry: _Served, prompt_tokens: int, decoded: Decoded) -> Generation:
    return Generation(
        text=entry.tokenizer.decode(decoded.token_ids, skip_special_tokens=True).strip(),
        prompt_tokens=prompt_tokens,
        completion_tokens=len(decoded.token_ids),
        finish_reason=decoded.finish_reason,
        first_token_at=decoded.first_token_at,
    )


def _engines_of(served: Mapping[str, _Served]) -> list[BatchEngine]:
    return list({id(entry.engine): entry.engine for entry in served.values()}.values())


def _load_failure(artifact: Artifact, error: Exception) -> str:
    return f"{artifact.kind} {artifact.path} failed to load: {_brief(error)}"


def _with_memory(entry: _Served) -> _Served:
    """The entry with the parameter bytes it holds (see DepartmentModel.memory_bytes)."""
    return dataclasses.replace(entry, info=dataclasses.replace(entry.info, memory_bytes=_memory_bytes(entry)))


def _memory_bytes(entry: _Served) -> int:
    rows = getattr(entry.model, "adapter_rows", None)  # gathered adapters are buffers, counted when stacked
    if entry.info.serving == "adapter" and rows is not None:
        return rows.bytes[entry.adapter]
    parameters = list(entry.model.named_parameters())
    if entry.info.serving == "adapter":
        marker = f".{entry.adapter}."  # PEFT names them ...lora_A.<adapter>.weight
        chosen = [p for name, p in parameters if "lora_" in name and marker in name]
    else:
        chosen = [p for name, p in parameters if "lora_" not in name]
    return sum(p.numel() * p.element_size() for p in chosen)


def _info(artifact: Artifact) -> DepartmentModel:
    return DepartmentModel(artifact.department, artifact.kind, str(artifact.path))


def _stop_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    stop = {i for i in ids if i is not None}
    if tokenizer.eos_token_id is not None:
        stop.add(tokenizer.eos_token_id)
    return frozenset(stop)


def _brief(error: Exception) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return first_line or type(error).__name__
