"""The local backend: transformers + PEFT in this process.

One base model in memory; department adapters are attached to it by name and
chosen per request with `adapter_names`, full fine-tuned models load on their
own. Generation runs on one worker thread, so the event loop never blocks and
requests take the model in turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from threading import Event
from typing import Any

from core.departments import BASE, DEPARTMENTS
from core.messages import Turn
from inference.base import DepartmentModel, Generation, GenerationParams, InputTooLong, NotReady
from inference.chat_format import encode_chat
from inference.artifacts import attach_adapter, load_causal_lm, pick_device, tokenizer_for
from inference.registry import Artifact, read_registry

log = logging.getLogger(__name__)

# PEFT's name for "no adapter" in a mixed-adapter batch.
_NO_ADAPTER = "__base__"


@dataclass(frozen=True)
class _Served:
    model: Any
    tokenizer: Any
    adapter: str | None  # set when `model` is the shared PEFT model
    info: DepartmentModel


class LocalBackend:
    """Serves every department from models loaded in this process."""

    def __init__(
        self,
        models_dir: Path,
        system_prompts: Mapping[str, str],
        device: str = "auto",
    ) -> None:
        self._base_model = ""
        self._models_dir = models_dir
        self._prompts = dict(system_prompts)
        self._device_setting = device
        self._served: dict[str, _Served] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._ready = Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def load(self, base_model: str) -> None:
        """Load `base_model` (a path or hub id) and every registered department (blocking)."""
        self._base_model = base_model
        self.reload()

    def reload(self) -> None:
        """Load the registry's models afresh, then swap them in (blocking).

        Requests already generating keep the models they started with; new
        requests get the new ones. The old models are freed when the last
        request holding them finishes.
        """
        from transformers import AutoTokenizer

        device = pick_device(self._device_setting)
        tokenizer = AutoTokenizer.from_pretrained(self._base_model)
        base = load_causal_lm(self._base_model, device)
        registry = read_registry(self._models_dir)
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
        served: dict[str, _Served] = {}
        for department in (*DEPARTMENTS, BASE):
            artifact = registry.artifacts.get(department)
            if artifact is not None and department not in notes:
                if artifact.kind == "adapter":
                    served[department] = _Served(shared, tokenizer, department, _info(artifact))
                    continue
                try:
                    model = load_causal_lm(artifact.path, device)
                    served[department] = _Served(
                        model, tokenizer_for(artifact.path, tokenizer), None, _info(artifact)
                    )
                    continue
                except Exception as error:
                    notes[department] = _load_failure(artifact, error)
            note = notes.get(department, "")
            if note:
                log.warning("%s: %s; serving the base model with its system prompt", department, note)
            info = DepartmentModel(department, "base", self._base_model, note=note)
            served[department] = _Served(shared, tokenizer, no_adapter, info)
        self._served = served  # one reference swap: readers see the old or the new set, never a mix
        self._ready.set()

    def models(self) -> list[DepartmentModel]:
        return [entry.info for entry in self._served.values()]

    def count_tokens(self, text: str) -> int:
        return len(self._entry(BASE).tokenizer(text, add_special_tokens=False)["input_ids"])

    async def generate(
        self, department: str, turns: Sequence[Turn], params: GenerationParams
    ) -> Generation:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._generate_blocking, department, turns, params, None, None
        )

    def stream(
        self, department: str, turns: Sequence[Turn], params: GenerationParams
    ) -> TokenStream:
        return TokenStream(self, department, turns, params)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # Runs on the generation thread.
    def _generate_blocking(
        self,
        department: str,
        turns: Sequence[Turn],
        params: GenerationParams,
        on_text: Any,
        cancelled: Event | None,
    ) -> Generation:
        import torch

        entry = self._entry(department)
        tokenizer = entry.tokenizer
        prompt_ids = self._fit_prompt(entry, department, turns, params.max_new_tokens)
        input_ids = torch.tensor([prompt_ids], device=entry.model.device)
        stop_ids = _stop_token_ids(entry.model, tokenizer)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": params.max_new_tokens,
            "eos_token_id": stop_ids,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0],
            "repetition_penalty": params.repetition_penalty,
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if entry.adapter is not None:
            kwargs["adapter_names"] = [entry.adapter]
        if on_text is not None:
            kwargs["streamer"] = _TextStreamer(tokenizer, on_text)
        if cancelled is not None:
            kwargs["stopping_criteria"] = [lambda ids, scores, **_: cancelled.is_set()]
        with torch.inference_mode():
            output = entry.model.generate(**kwargs)
        new_ids = output[0, len(prompt_ids):].tolist()
        stop_at = next((i for i, token in enumerate(new_ids) if token in stop_ids), None)
        answer_ids = new_ids if stop_at is None else new_ids[:stop_at]
        return Generation(
            text=tokenizer.decode(answer_ids, skip_special_tokens=True).strip(),
            prompt_tokens=len(prompt_ids),
            completion_tokens=len(answer_ids),
            finish_reason="length" if stop_at is None and len(new_ids) >= params.max_new_tokens else "stop",
        )

    def _entry(self, department: str) -> _Served:
        if not self._ready.is_set():
            raise NotReady("models are still loading")
        try:
            return self._served[department]
        except KeyError:
            raise ValueError(f"unknown department {department!r}") from None

    def _fit_prompt(
        self, entry: _Served, department: str, turns: Sequence[Turn], max_new_tokens: int
    ) -> list[int]:
        """Encode the conversation, dropping the oldest turns until it fits the context."""
        limit = getattr(entry.model.config, "max_position_embeddings", 2048) - max_new_tokens
        system = self._prompts.get(department, self._prompts[BASE])
        turns = list(turns)
        while True:
            ids = encode_chat(entry.tokenizer, system, turns, add_generation_prompt=True)
            if len(ids) <= limit:
                return ids
            if len(turns) <= 1:
                raise InputTooLong(
                    f"the message is {len(ids)} tokens with its system prompt; this model "
                    f"takes at most {limit} when answering with up to {max_new_tokens} tokens"
                )
            turns = turns[1:]


class TokenStream:
    """Async iterator of text deltas; `result` holds the Generation afterwards."""

    def __init__(
        self, backend: LocalBackend, department: str, turns: Sequence[Turn], params: GenerationParams
    ) -> None:
        self._backend = backend
        self._args = (department, list(turns), params)
        self.result: Generation | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[str | None] = asyncio.Queue()
        cancelled = Event()

        def on_text(delta: str) -> None:
            loop.call_soon_threadsafe(deltas.put_nowait, delta)

        def run() -> Generation:
            try:
                return self._backend._generate_blocking(*self._args, on_text, cancelled)
            finally:
                loop.call_soon_threadsafe(deltas.put_nowait, None)

        future = loop.run_in_executor(self._backend._executor, run)
        try:
            while (delta := await deltas.get()) is not None:
                yield delta
            self.result = await future
        finally:
            # A client that stops reading frees the model at the next token.
            cancelled.set()


class _TextStreamer:
    """Turns generated token ids into text deltas (the transformers streamer protocol).

    Decodes the whole answer each step and emits what is new, holding back
    half-decoded characters and trailing spaces, so the deltas join to exactly
    the stripped text the non-streaming path returns.
    """

    def __init__(self, tokenizer: Any, on_text: Any) -> None:
        self._tokenizer = tokenizer
        self._on_text = on_text
        self._ids: list[int] = []
        self._sent = ""
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        self._ids.extend(value.reshape(-1).tolist())
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True).strip()
        if text.endswith("\ufffd") or not text.startswith(self._sent):
            return
        if len(text) > len(self._sent):
            self._on_text(text[len(self._sent):])
            self._sent = text

    def end(self) -> None:
        pass


def _load_failure(artifact: Artifact, error: Exception) -> str:
    return f"{artifact.kind} {artifact.path} failed to load: {_brief(error)}"


def _info(artifact: Artifact) -> DepartmentModel:
    return DepartmentModel(artifact.department, artifact.kind, str(artifact.path))


def _stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in ids if i is not None]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _brief(error: Exception) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return first_line or type(error).__name__
