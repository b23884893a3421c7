"""The llama.cpp runtime: GGUF models on CPU through llama-cpp-python.

The base model is served from its GGUF (the bundled one as it ships); each live
department model from its own GGUF, written at promotion (training/department.py)
or here at load when missing or stale (inference/gguf_export.py): an adapter is
merged into the base first. Prompts are tokenized and tokens chosen exactly as in
the torch runtime (inference/sampling.py); llama.cpp only computes the logits.

Each model has one engine thread that decodes one request at a time and keeps the
KV cache of its last prompt and answer: the next request computes only what
follows the longest prefix they share (a department's system prompt, a
conversation's earlier turns). Engines take turns on the CPU through one lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.base import DepartmentModel, GenerationParams
from inference.engine_thread import EngineThread
from inference.gguf_export import DEFAULT_QUANT, artifact_gguf
from inference.registry import RegistryView
from inference.runtime import Served, artifact_info, load_failure, stop_token_ids
from inference.tickets import Decoded, DecodeRequest, EngineStats, Ticket, deliver, send_token

log = logging.getLogger(__name__)

# KV cache per model: prompt + answer tokens. 4096 holds a long conversation with grounding
# and costs ~90 MiB per model at f16 (SmolLM2-135M: 30 layers x 2 x 192 values per token).
CONTEXT_TOKENS = 4096


def available() -> bool:
    """True when llama-cpp-python is installed (pip install -e '.[llamacpp]'; make install does)."""
    return importlib.util.find_spec("llama_cpp") is not None


def cpu_threads() -> int:
    """The cores this process may use (llama-cpp-python's own default is half of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class GgufServing:
    """How departments are served through llama.cpp: the base model's GGUF (whose
    vocabulary and metadata department GGUFs copy), the storage type models are
    converted to (inference/gguf_export.QUANTS), and CPU threads (None: every core
    this process may use).

    With `convert_base`, the base model too is served converted from its safetensors
    directory (the bundled model: its Q4_1 GGUF computes prompts at half the speed of
    f16 or q8_0, which llama.cpp multiplies with faster kernels); else `base_gguf` as it is.
    """

    base_gguf: Path
    quant: str = DEFAULT_QUANT
    threads: int | None = None
    convert_base: bool = False

    def served_base(self, base_model: str) -> Path:
        """The GGUF that serves the base model (converted now on first use with `convert_base`)."""
        return self.artifact("full", Path(base_model), base_model) if self.convert_base else self.base_gguf

    def artifact(self, kind: str, path: Path, base_model: str) -> Path:
        """The GGUF of a department artifact, converted now if missing or stale."""
        return artifact_gguf(kind, path, base_model, self.base_gguf, self.quant)

    def open(self, path: Path, *, step_lock: threading.Lock | None = None, name: str = "llamacpp",
             context_tokens: int = CONTEXT_TOKENS) -> LlamaCppEngine:
        if not available():
            raise RuntimeError("the llama.cpp runtime needs llama-cpp-python: pip install -e '.[llamacpp]' "
                               "(make install does), or set SWITCHBOARD_BACKEND=local")
        import llama_cpp
        from llama_cpp import Llama

        threads = self.threads or cpu_threads()
        context = min(context_tokens, _trained_context(path))
        # f32 means exact: keys and values too (llama.cpp's default cache is f16, rounding off ~1e-3).
        cache = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if self.quant == "f32" else {}
        llama = Llama(str(path), n_ctx=context, n_threads=threads, n_threads_batch=threads, verbose=False, **cache)
        return LlamaCppEngine(llama, step_lock=step_lock, name=name)


class LlamaCppRuntime:
    """Loads the base and every live department model into its own llama.cpp engine
    (inference/runtime.Runtime); the engines share one lock, so they take turns on the CPU."""

    def __init__(self, serving: GgufServing, context_tokens: int = CONTEXT_TOKENS) -> None:
        self._serving = serving
        self._context = context_tokens
        self._step_lock = threading.Lock()

    def load(self, base_model: str, registry: RegistryView, departments: Sequence[str]) -> dict[str, Served]:
        from transformers import AutoTokenizer

        from inference.artifacts import tokenizer_for

        tokenizer = AutoTokenizer.from_pretrained(base_model)
        base_gguf = self._serving.served_base(base_model)
        base = self._served(base_gguf, tokenizer, "base")
        notes: dict[str, str] = dict(registry.problems)
        served: dict[str, Served] = {}
        for department in departments:
            artifact = registry.artifacts.get(department)
            if artifact is not None and department not in notes:
                try:
                    path = self._serving.artifact(artifact.kind, artifact.path, base_model)
                    entry = self._served(path, tokenizer_for(artifact.path, tokenizer), department)
                    info = dataclasses.replace(artifact_info(artifact), memory_bytes=path.stat().st_size)
                    served[department] = dataclasses.replace(entry, info=info)
                    continue
                except Exception as error:  # a broken artifact must fall back, never crash
                    notes[department] = load_failure(artifact, error)
            note = notes.get(department, "")
            if note:
                log.warning("%s: %s; serving the base model with its system prompt", department, note)
            info = DepartmentModel(department, "base", str(base_gguf), note=note,
                                   memory_bytes=base_gguf.stat().st_size)
            served[department] = dataclasses.replace(base, info=info)
        return served

    def _served(self, path: Path, tokenizer: Any, name: str) -> Served:
        engine = self._serving.open(path, step_lock=self._step_lock, name=f"llamacpp-{name}",
                                    context_tokens=self._context)
        info = DepartmentModel(name, "base", str(path))
        return Served(tokenizer, None, info, engine, stop_token_ids(tokenizer, engine.eos_token), engine.context)


def gguf_answers(engine: LlamaCppEngine, tokenizer: Any) -> Callable[[Sequence[list[int]], GenerationParams], list[str]]:
    """Greedy answers to encoded prompts, one after another (training/evaluation.Answerer)."""
    stop = stop_token_ids(tokenizer, engine.eos_token)

    async def answer_all(prompts: Sequence[list[int]], params: GenerationParams) -> list[str]:
        replies = []
        for prompt in prompts:
            decoded = await engine.submit(DecodeRequest(list(prompt), None, params, stop)).result
            replies.append(tokenizer.decode(decoded.token_ids, skip_special_tokens=True).strip())
        return replies

    return lambda prompts, params: asyncio.run(answer_all(prompts, params))


class LlamaCppEngine(EngineThread[tuple[DecodeRequest, Ticket]]):
    """Decodes the requests for one llama.cpp model, one at a time, on its own thread.

    Its `failure` stays None: a failed request fails alone and the engine serves on.
    """

    def __init__(self, llama: Any, *, step_lock: threading.Lock | None = None, name: str = "llamacpp") -> None:
        super().__init__(name)
        self._llama = llama
        self._vocab = llama.n_vocab()
        self._step_lock = step_lock or threading.Lock()
        self._stats = EngineStats()

    @property
    def stats(self) -> EngineStats:
        return dataclasses.replace(self._stats)

    @property
    def eos_token(self) -> int:
        return self._llama.token_eos()

    @property
    def context(self) -> int:
        """Prompt + answer tokens its KV cache holds."""
        return self._llama.n_ctx()

    def submit(self, request: DecodeRequest, *, stream: bool = False) -> Ticket:
        """Queue a request (call from a running event loop); raises EngineStopped once closed."""
        ticket = Ticket(asyncio.get_running_loop(), stream)
        self._enqueue((request, ticket))
        return ticket

    # Everything below runs on the engine thread.

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while (item := self._next()) is not None:
                request, ticket = item
                try:
                    self._decode(request, ticket)
                except Exception as error:  # the request fails alone; the next starts from a clean cache
                    log.exception("%s: decode failed", self._name)
                    deliver(ticket, error)
                    self._llama.reset()

    def _next(self) -> tuple[DecodeRequest, Ticket] | None:
        """The next request to decode; None when the thread should end."""
        with self._wakeup:
            while True:
                if self._aborting:
                    stopped = self._closed()
                    for _, ticket in self._incoming:
                        deliver(ticket, stopped)
                    self._incoming.clear()
                if not self._incoming:
                    if self._closing:
                        self._stop()
                        return None
                    if not self._wait_for_work():
                        return None
                    continue
                request, ticket = self._incoming.popleft()
                if ticket.cancelled:
                    self._stats.cancelled += 1
                    continue
                return request, ticket

    def _decode(self, request: DecodeRequest, ticket: Ticket) -> None:
        import llama_cpp
        import numpy as np
        import torch

        from inference.prefix_cache import common_prefix
        from inference.sampling import choose_tokens, row_settings

        started = time.perf_counter()
        llama, params, prompt = self._llama, request.params, request.prompt_ids
        if params.max_new_tokens <= 0:
            deliver(ticket, Decoded([], "length"))
            return
        # Keep the KV cache of the prefix this prompt shares with the last one; at least
        # the prompt's last token is computed, for its logits.
        kept = min(common_prefix(llama.input_ids[: llama.n_tokens], prompt), len(prompt) - 1)
        with self._step_lock:
            llama.n_tokens = kept  # eval() drops the cache past n_tokens
            llama.eval(prompt[kept:])
        self._stats.prefills += 1
        self._stats.prefill_tokens += len(prompt) - kept
        self._stats.reused_tokens += kept
        settings = row_settings([params], "cpu")
        # The repetition penalty counts the answer's own tokens (as in inference/batching.py).
        seen = torch.zeros((1, self._vocab), dtype=torch.bool)
        generated: list[int] = []
        first_token_at: float | None = None
        while True:
            # The last evaluated token's logits: a view of llama.cpp's buffer, valid until the next eval.
            pointer = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
            logits = torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(self._vocab,)))[None]
            token = int(choose_tokens(logits, seen, *settings)[0])
            if first_token_at is None:
                first_token_at = time.perf_counter()
                self._stats.prefill_seconds += first_token_at - started
            if token in request.stop_ids:
                deliver(ticket, Decoded(generated, "stop", first_token_at))
                return
            generated.append(token)
            seen[0, token] = True
            if ticket.tokens is not None and not send_token(ticket, token):
                return  # the caller's loop is gone: nobody is listening
            if len(generated) >= params.max_new_tokens:
                deliver(ticket, Decoded(generated, "length", first_token_at))
                return
            if ticket.cancelled or self._aborting:
                self._stats.cancelled += ticket.cancelled
                deliver(ticket, self._closed())
                return
            step = time.perf_counter()
            with self._step_lock:
                llama.eval([token])
            self._stats.decode_steps += 1
            self._stats.rows_decoded += 1
            self._stats.max_rows = 1
            self._stats.decode_seconds += time.perf_counter() - step

    def _release(self) -> None:
        self._llama = None


def _trained_context(path: Path) -> int:
    """The context length the GGUF's model was trained for (read from its metadata, without loading it)."""
    import gguf

    field = gguf.GGUFReader(path).fields.get("llama.context_length")
    return int(field.contents()) if field is not None else CONTEXT_TOKENS
