"""The remote backend: an OpenAI-compatible server (vLLM) generates, the gateway routes.

It follows vLLM's conventions. One server holds the base model and every
department adapter, each served under the department's name:

    vllm serve <base> --served-model-name base --enable-lora \\
        --lora-modules hr=/models/hr/lora-... finance=/models/finance/dpo-...

A full fine-tuned model runs as a server of its own (`--served-model-name hr`),
given per department in `department_urls`. Any other OpenAI-compatible server
works too, Switchboard's own `/v1` included.

The server knows nothing of our system prompts, so every request carries the
department's system prompt and the conversation, built by `chat_messages` as the
local backend builds its prompt. A department the server does not serve (no
adapter trained yet) is answered by the base model with that department's
system prompt, as the local backend does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from core.company import BASE
from core.messages import Grounding, Turn
from inference.base import (
    BackendError,
    BackendUnavailable,
    DepartmentModel,
    Generation,
    GenerationParams,
    InputTooLong,
    NotReady,
)
from inference.chat_format import chat_messages

log = logging.getLogger(__name__)

# Generating a long reply on a busy server takes a while; an absent server should fail fast.
DEFAULT_TIMEOUT = openai.Timeout(300.0, connect=5.0)
# Listing the served models at start is a courtesy: it must not hold up the start.
_LIST_TIMEOUT = openai.Timeout(5.0)
# vLLM accepts any key unless it was started with --api-key; the client insists on one.
_NO_KEY = "EMPTY"
# Without a tokenizer, OpenAI's rule of thumb for English text.
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class _Target:
    """Where a department's requests go: the server's base URL and the model name there."""

    url: str
    model: str

    def __str__(self) -> str:
        return f"{self.model} at {self.url}"


class OpenAIBackend:
    """Serves every department from OpenAI-compatible servers, over HTTP."""

    def __init__(
        self,
        base_url: str,
        system_prompts: Mapping[str, str],
        *,
        api_key: str | None = None,
        base_model_name: str = BASE,
        department_urls: Mapping[str, str] | None = None,
        timeout: float | openai.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._department_urls = {dept: url.rstrip("/") for dept, url in (department_urls or {}).items()}
        self._prompts = dict(system_prompts)
        # The prompts name every department served, and base.
        self._departments = tuple(target for target in self._prompts if target != BASE)
        self._api_key = api_key or _NO_KEY
        self._base_name = base_model_name
        self._timeout = timeout
        self._max_retries = max_retries
        self._targets: dict[str, _Target] = {}
        self._notes: dict[str, str] = {}
        self._tokenizer: Any = None
        # One client per event loop: an async HTTP connection belongs to the loop that opened it.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, openai.AsyncOpenAI]] = (
            weakref.WeakKeyDictionary()
        )
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def problem(self) -> None:
        return None  # each request reaches the server afresh: its failures are the requests'

    def load(self, base_model: str) -> None:
        """Take `base_model`'s tokenizer for `count_tokens`, then see what the servers serve (blocking)."""
        self._tokenizer = _load_tokenizer(base_model)
        self.reload()

    def reload(self) -> None:
        """Ask each server which models it serves, and pick each department's model (blocking).

        A server that does not answer is not an error here: it may start after
        the gateway. Its departments are asked for by name, and requests fail
        with BackendUnavailable until it is up.
        """
        listings = {url: _list_models(url, self._api_key) for url in self._urls()}
        targets: dict[str, _Target] = {}
        notes: dict[str, str] = {}
        fallback = _Target(self._base_url, self._base_name)
        for department in (*self._departments, BASE):
            url = self._department_urls.get(department, self._base_url)
            target = _Target(url, self._base_name if department == BASE else department)
            served, problem = listings[url]
            if problem:
                notes[department] = f"could not list the models at {url} ({problem})"
            elif target.model not in served:
                if url == self._base_url and department != BASE and fallback.model in served:
                    target = fallback
                    notes[department] = (
                        f"{url} serves no '{department}' model; the base model answers "
                        f"with the {department} system prompt"
                    )
                else:
                    setting = "openai_base_model_name" if department == BASE else "--served-model-name"
                    notes[department] = (
                        f"{url} does not list '{target.model}' (it serves {_names(served)}); check {setting}"
                    )
            targets[department] = target
        self._targets, self._notes = targets, notes
        self._ready = True

    def models(self) -> list[DepartmentModel]:
        return [
            DepartmentModel(department, "remote", str(target), note=self._notes.get(department, ""))
            for department, target in self._targets.items()
        ]

    def count_tokens(self, text: str) -> int:
        """Exact with the base model's tokenizer when it loaded; otherwise about 4 characters a token."""
        if self._tokenizer is not None:
            return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])
        return math.ceil(len(text) / _CHARS_PER_TOKEN)

    async def generate(
        self, department: str, turns: Sequence[Turn], params: GenerationParams, grounding: Grounding | None = None
    ) -> Generation:
        target, completion, messages = await self._create(department, turns, params, grounding, stream=False)
        if not completion.choices:
            raise BackendError(f"the inference server at {target.url} answered with no choices")
        choice = completion.choices[0]
        text = (choice.message.content or "").strip()
        return self._generation(text, choice.finish_reason, completion.usage, messages)

    def stream(
        self, department: str, turns: Sequence[Turn], params: GenerationParams, grounding: Grounding | None = None
    ) -> RemoteStream:
        return RemoteStream(self, department, turns, params, grounding)

    def close(self) -> None:
        # Connections close with their clients; those of a finished event loop cannot be awaited.
        self._clients.clear()

    def _urls(self) -> list[str]:
        return list(dict.fromkeys([self._base_url, *self._department_urls.values()]))

    def _target(self, department: str) -> _Target:
        if not self._ready:
            raise NotReady("the remote backend has not started")
        try:
            return self._targets[department]
        except KeyError:
            raise ValueError(f"unknown department {department!r}") from None

    def _client(self, url: str) -> openai.AsyncOpenAI:
        clients = self._clients.setdefault(asyncio.get_running_loop(), {})
        client = clients.get(url)
        if client is None:
            client = clients[url] = openai.AsyncOpenAI(
                base_url=url, api_key=self._api_key, timeout=self._timeout, max_retries=self._max_retries
            )
        return client

    async def _create(
        self, department: str, turns: Sequence[Turn], params: GenerationParams, grounding: Grounding | None,
        *, stream: bool,
    ) -> tuple[_Target, Any, list[dict[str, str]]]:
        """Send the request; the oldest turns go while the server says the context is too long."""
        target = self._target(department)
        system = self._prompts.get(department, self._prompts[BASE])
        turns = list(turns)
        while True:
            messages = chat_messages(system, turns, grounding)
            try:
                response = await self._client(target.url).chat.completions.create(
                    model=target.model, messages=messages, **_options(params, stream)
                )
                return target, response, messages
            except openai.BadRequestError as error:
                if not _context_exceeded(error):
                    raise _failure(target, error) from error
                if len(turns) <= 1:
                    raise InputTooLong(f"{target} says: {_said(error)}") from None
                turns = turns[1:]
            except openai.NotFoundError as error:
                # An adapter removed since the start: fall back to the base model, as the local backend does.
                fallback = _Target(self._base_url, self._base_name)
                if department == BASE or target == fallback or not _model_missing(error):
                    raise _failure(target, error) from error
                log.warning("%s: %s is gone; the base model answers with its system prompt", department, target)
                self._notes[department] = f"{target.url} no longer serves '{department}'; the base model answers"
                self._targets[department] = target = fallback
            except openai.APIError as error:
                raise _failure(target, error) from error

    def _generation(
        self, text: str, finish_reason: str | None, usage: Any, messages: list[dict[str, str]]
    ) -> Generation:
        if usage is not None:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        else:  # a server that reports no usage: estimate it
            prompt_tokens = sum(self.count_tokens(m["content"]) for m in messages)
            completion_tokens = self.count_tokens(text)
        return Generation(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason="length" if finish_reason == "length" else "stop",
        )


class RemoteStream:
    """Async iterator of text deltas; `result` holds the Generation afterwards.

    The deltas join to exactly the stripped text `generate` returns, as the
    local backend's do.
    """

    def __init__(
        self, backend: OpenAIBackend, department: str, turns: Sequence[Turn], params: GenerationParams,
        grounding: Grounding | None = None,
    ) -> None:
        self._backend = backend
        self._args = (department, list(turns), params, grounding)
        self.result: Generation | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        target, response, messages = await self._backend._create(*self._args, stream=True)
        chunks = aiter(response)
        parts: list[str] = []
        stripped = _Stripped()
        finish_reason, usage = None, None
        try:
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except openai.APIError as error:  # an error the server sent in the stream
                    raise _failure(target, error) from error
                except Exception as error:  # the connection broke off (httpx errors)
                    raise BackendUnavailable(f"the stream from {target} broke off: {_brief(error)}") from error
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    if choice.delta is not None and choice.delta.content:
                        parts.append(choice.delta.content)
                        if delta := stripped.feed(choice.delta.content):
                            yield delta
                    finish_reason = choice.finish_reason or finish_reason
        finally:
            # A client that stops reading closes the request; vLLM then stops generating.
            await response.close()
        self.result = self._backend._generation("".join(parts).strip(), finish_reason, usage, messages)


class _Stripped:
    """Passes deltas on so that they join to the stripped text.

    Leading whitespace is dropped, trailing whitespace held back until more
    text follows it.
    """

    def __init__(self) -> None:
        self._started = False
        self._held = ""

    def feed(self, delta: str) -> str:
        if not self._started:
            delta = delta.lstrip()
            if not delta:
                return ""
            self._started = True
        body = delta.rstrip()
        if not body:
            self._held += delta
            return ""
        out, self._held = self._held + body, delta[len(body):]
        return out


def _options(params: GenerationParams, stream: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,  # 0 is greedy in vLLM too
        "top_p": params.top_p,
    }
    if params.repetition_penalty != 1.0:
        # Not in OpenAI's API: vLLM's sampling parameter, sent as an extra field.
        options["extra_body"] = {"repetition_penalty": params.repetition_penalty}
    if stream:
        options.update(stream=True, stream_options={"include_usage": True})
    return options


def _failure(target: _Target, error: openai.APIError) -> BackendError:
    """Our error for the client's: BackendUnavailable where waiting may help, BackendError otherwise."""
    if isinstance(error, openai.APITimeoutError):
        return BackendUnavailable(f"the inference server at {target.url} did not answer in time")
    if isinstance(error, openai.APIConnectionError):
        return BackendUnavailable(f"cannot reach the inference server at {target.url}: {_brief(error)}")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status in (429, 503):
            return BackendUnavailable(f"the inference server at {target.url} is busy ({status}): {_said(error)}")
        if status >= 500:
            return BackendError(f"the inference server at {target.url} failed ({status}): {_said(error)}")
        hint = " (openai_base_url usually ends in /v1)" if status == 404 and not _model_missing(error) else ""
        return BackendError(f"{target} refused the request ({status}): {_said(error)}{hint}")
    return BackendError(f"{target} answered with an error: {_said(error)}")


def _said(error: openai.APIError) -> str:
    """What the server said, without the client's wrapping."""
    body = error.body
    message = body.get("message") if isinstance(body, dict) else None
    return _brief(message or body or error)


def _context_exceeded(error: openai.APIError) -> bool:
    # OpenAI and Switchboard send the code; vLLM says "This model's maximum context length is ...".
    text = str(error.body or error).lower()
    return error.code == "context_length_exceeded" or "context length" in text


def _model_missing(error: openai.APIError) -> bool:
    # OpenAI and Switchboard send the code; vLLM says "The model `hr` does not exist."
    text = str(error.body or error).lower()
    return error.code == "model_not_found" or ("model" in text and "does not exist" in text)


def _list_models(url: str, api_key: str) -> tuple[set[str], str]:
    """The model names a server lists, or why it could not be asked."""
    try:
        with openai.OpenAI(base_url=url, api_key=api_key, timeout=_LIST_TIMEOUT, max_retries=0) as client:
            return {model.id for model in client.models.list()}, ""
    except openai.APIStatusError as error:
        return set(), f"{error.status_code}: {_said(error)}"
    except openai.APIError as error:
        return set(), _brief(error)


def _load_tokenizer(base_model: str) -> Any:
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(base_model)
    except Exception as error:  # counting is approximate without it; serving does not need it
        log.info("no tokenizer from %s (%s); counting tokens as characters / 4", base_model, _brief(error))
        return None


def _names(served: set[str]) -> str:
    names = sorted(served)
    shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    return shown or "nothing"


def _brief(value: object, limit: int = 300) -> str:
    text = str(value).strip()
    first_line = text.splitlines()[0] if text else ""
    line = first_line or type(value).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
