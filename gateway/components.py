"""The composition root: the one place that picks backends and wires them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.redaction import hide_secrets
from gateway.channel_set import ChannelSet
from gateway.dedupe import InProcessSeenKeys
from gateway.dispatch import Dispatcher, InProcessDispatcher
from gateway.metrics import Metrics
from gateway.responder import Responder
from gateway.settings import Settings
from gateway.webhooks import WHATSAPP_STATUS_PATH
from inference.base_model import resolve_base_model
from inference.local import LocalBackend
from knowledge.library import HandbookLibrary
from memory.base import ConversationMemory
from memory.in_process import InProcessMemory
from pipeline.service import GroundingSettings, Pipeline, PipelineLimits
from router.base import Router
from router.commands import CommandRouter, FallbackRouter

if TYPE_CHECKING:
    from inference.remote import OpenAIBackend

log = logging.getLogger(__name__)


@dataclass
class Components:
    settings: Settings
    pipeline: Pipeline
    backend: LocalBackend | OpenAIBackend
    metrics: Metrics
    redis: Any = None  # redis.asyncio.Redis shared by memory and queue, when configured
    knowledge: HandbookLibrary | None = None  # None with grounding off

    def start(self, *, show_progress: bool = False) -> None:
        """Prepare the base model and load every department (blocking, seconds)."""
        base = resolve_base_model(
            self.settings.base_model, self.settings.home, show_progress=show_progress
        )
        self.backend.load(base)
        log.info("models loaded from %s", base)

    def close(self) -> None:
        self.backend.close()



def build_router(settings: Settings) -> Router:
    """Commands and pins first; everything else to the automatic router."""
    return CommandRouter(_automatic_router(settings), settings.company().targets)


def _automatic_router(settings: Settings) -> Router:
    """The learned router (`switchboard prepare` trains it); commands only when there is none to load.

    Serving never trains: a missing, stale or broken artifact is reported with the command that fixes it.
    """
    if settings.router == "commands":
        return FallbackRouter()
    from router.learned import ROUTER_SUBDIR, RouterArtifactError, RouterForOtherDepartments, load_learned_router

    directory = settings.models_path / ROUTER_SUBDIR
    try:
        return load_learned_router(directory, settings.company().targets)
    except RouterArtifactError as error:
        # prepare trains a missing or outdated router; a broken one it leaves for a person to look at.
        stale = isinstance(error, RouterForOtherDepartments) or not directory.exists()
        fix = "switchboard prepare" if stale else "switchboard train router"
        log.error("%s; routing by command only until you run `%s`", error, fix)
        return FallbackRouter()


def telegram_sender(settings: Settings):
    from bots.telegram import TelegramSender

    api_url = settings.telegram_api_url.rstrip("/")
    return TelegramSender(
        settings.telegram_bot_token.get_secret_value(),
        base_url=api_url,
        base_file_url=api_url.removesuffix("/bot") + "/file/bot",
    )


def build_channels(settings: Settings, pipeline: Pipeline) -> ChannelSet:
    """Telegram and WhatsApp, each where its settings are present."""
    telegram = None
    if settings.telegram_bot_token:
        from bots.telegram.channel import TelegramChannel

        telegram = TelegramChannel(telegram_sender(settings))
    whatsapp = None
    if settings.twilio_account_sid:
        from bots.whatsapp import DeliveryLog, WhatsAppSender
        from bots.whatsapp.channel import WhatsAppChannel

        sender = WhatsAppSender(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            settings.twilio_whatsapp_from,
            api_base_url=settings.twilio_api_url,
        )
        status_url = settings.public_url.rstrip("/") + WHATSAPP_STATUS_PATH
        whatsapp = WhatsAppChannel(sender, status_url, DeliveryLog())
    return ChannelSet(telegram, whatsapp)


def build_dispatcher(components: Components, channels: ChannelSet, *, run_worker: bool) -> Dispatcher:
    """The Redis queue (with an optional worker in this process) when Redis is configured, else in-process."""
    settings = components.settings
    responder = Responder(components.pipeline, channels.by_name, show_sources=settings.show_sources)
    if components.redis is None:
        return InProcessDispatcher(responder, InProcessSeenKeys(settings.dedupe_ttl_seconds))
    from gateway.stream_worker import RedisDispatcher

    worker = build_worker(components, responder) if run_worker else None
    return RedisDispatcher(build_queue(settings, components.redis), worker)


def build_queue(settings: Settings, client: Any):
    from gateway.redis_queue import RedisQueue

    return RedisQueue(
        client,
        dedupe_ttl_seconds=settings.dedupe_ttl_seconds,
        lock_seconds=settings.queue_lock_seconds,
        claim_idle_seconds=settings.queue_claim_idle_seconds,
        max_attempts=settings.queue_max_attempts,
    )


def build_worker(components: Components, responder: Responder):
    from gateway.stream_worker import StreamWorker

    settings = components.settings
    queue = build_queue(settings, components.redis)
    return StreamWorker(queue, responder, concurrency=settings.worker_concurrency)


def redis_client(settings: Settings):
    import redis.asyncio

    # A refused or unreachable Redis fails within 2 s, so a webhook answers 503 quickly.
    # No socket_timeout: redis-py wraps every send in asyncio.wait_for then (a task per
    # command, a third of a webhook's CPU); the webhook bounds its own wait instead.
    return redis.asyncio.from_url(settings.redis_url, socket_connect_timeout=2, socket_keepalive=True)


def build_memory(settings: Settings, client: Any = None) -> ConversationMemory:
    """Redis when configured (shared by every process), else this process's memory."""
    if client is None:
        return InProcessMemory(settings.memory_window, settings.memory_ttl_seconds)
    from memory.redis import RedisMemory

    return RedisMemory(client, settings.memory_window, settings.memory_ttl_seconds)


def build_backend(settings: Settings) -> LocalBackend | OpenAIBackend:
    """Models in this process (llama.cpp or torch), or an OpenAI-compatible server (vLLM) that serves them."""
    prompts = settings.company().system_prompts(settings.system_prompts)
    if settings.backend != "openai":
        serving = settings.gguf_serving()
        runtime = None
        if serving is not None:
            from inference.llamacpp import LlamaCppRuntime

            runtime = LlamaCppRuntime(serving)
        return LocalBackend(
            settings.models_path, prompts, device=settings.device,
            max_batch_size=settings.max_batch_size, batch_window_ms=settings.batch_window_ms, runtime=runtime,
        )
    from inference.remote import OpenAIBackend

    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAIBackend(
        settings.openai_base_url,
        prompts,
        api_key=api_key,
        base_model_name=settings.openai_base_model_name,
        department_urls=settings.openai_department_urls,
    )


def build_knowledge(settings: Settings) -> HandbookLibrary | None:
    """Every department's handbook index (about 0.1 s each), or None with grounding off."""
    return HandbookLibrary(settings.company()) if settings.grounding else None


def build_components(settings: Settings) -> Components:
    hide_secrets(settings.secrets())  # before any client exists that could log one
    metrics = Metrics()
    client = redis_client(settings) if settings.redis_url else None
    backend = build_backend(settings)
    knowledge = build_knowledge(settings)
    pipeline = Pipeline(
        router=build_router(settings),
        memory=build_memory(settings, client),
        backend=backend,
        defaults=settings.generation_defaults(),
        metrics=metrics,
        limits=PipelineLimits(max_input_chars=settings.max_input_chars),
        grounding=GroundingSettings(knowledge, settings.grounding_k),
        company=settings.company(),
    )
    return Components(settings, pipeline, backend, metrics, client, knowledge)
