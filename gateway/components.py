"""The composition root: the one place that picks backends and wires them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gateway.metrics import Metrics
from gateway.pipeline import Pipeline, PipelineLimits
from gateway.settings import Settings
from inference.base_model import resolve_base_model
from inference.local import LocalBackend
from inference.prompts import system_prompts
from inference.registry import REGISTRY_FILE
from memory.in_process import InProcessMemory
from router.base import Router
from router.commands import CommandRouter, FallbackRouter

log = logging.getLogger(__name__)


@dataclass
class Components:
    settings: Settings
    pipeline: Pipeline
    backend: LocalBackend
    metrics: Metrics

    def start(self, *, show_progress: bool = False) -> None:
        """Prepare the base model and load every department (blocking, seconds)."""
        base = resolve_base_model(
            self.settings.base_model, self.settings.home, show_progress=show_progress
        )
        self.backend.load(base)
        log.info("models loaded from %s", base)

    def registry_signature(self) -> tuple[int, int] | None:
        """Changes whenever training promotes or rolls back a model."""
        try:
            stat = (self.settings.models_path / REGISTRY_FILE).stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def watch_registry(self, interval: float) -> None:
        """Hot deploy: reload the models whenever the registry changes."""
        seen = self.registry_signature()
        while True:
            await asyncio.sleep(interval)
            current = self.registry_signature()
            if current == seen or not self.backend.ready:
                continue
            seen = current
            log.info("registry changed; reloading models")
            try:
                await asyncio.to_thread(self.backend.reload)
            except Exception:  # keep serving the models already loaded
                log.exception("reloading models failed; still serving the previous ones")

    def close(self) -> None:
        self.backend.close()


def build_router(settings: Settings) -> Router:
    """Commands and pins first; everything else to the automatic router."""
    return CommandRouter(automatic=FallbackRouter())


def build_components(settings: Settings) -> Components:
    metrics = Metrics()
    backend = LocalBackend(
        settings.models_path,
        system_prompts(settings.system_prompts),
        device=settings.device,
    )
    pipeline = Pipeline(
        router=build_router(settings),
        memory=InProcessMemory(settings.memory_window, settings.memory_ttl_seconds),
        backend=backend,
        defaults=settings.generation_defaults(),
        metrics=metrics,
        limits=PipelineLimits(max_input_chars=settings.max_input_chars),
    )
    return Components(settings, pipeline, backend, metrics)
