"""Hot deploy: a running server picks up what training promotes, a retrained router, an edited handbook."""

from __future__ import annotations

import asyncio
import logging

from core.files import file_signature
from gateway.components import Components, build_router
from inference.registry import REGISTRY_FILE

log = logging.getLogger(__name__)


def registry_signature(components: Components) -> tuple[tuple[int, int] | None, ...]:
    """Changes whenever training promotes or rolls back a model, or retrains the router."""
    # Here, not at the top: router.learned brings sklearn, which a commands-only server never needs.
    from router.learned import METADATA_FILE, ROUTER_SUBDIR

    models = components.settings.models_path
    return file_signature(models / REGISTRY_FILE), file_signature(models / ROUTER_SUBDIR / METADATA_FILE)


async def watch_registry(components: Components, interval: float) -> None:
    """Reload the models whenever the registry changes, the router when it is retrained, a handbook when edited."""
    seen = registry_signature(components)
    while True:
        await asyncio.sleep(interval)
        if components.knowledge is not None:
            for department in await asyncio.to_thread(components.knowledge.refresh):
                log.info("%s: handbook changed; its index is rebuilt", department)
        current = registry_signature(components)
        if current == seen or not components.backend.ready:
            continue
        models_changed, router_changed = current[0] != seen[0], current[1] != seen[1]
        seen = current
        if router_changed:
            log.info("router changed; reloading it")
            components.pipeline.router = await asyncio.to_thread(build_router, components.settings)
        if models_changed:
            log.info("registry changed; reloading models")
            try:
                await asyncio.to_thread(components.backend.reload)
            except Exception:  # keep serving the models already loaded
                log.exception("reloading models failed; still serving the previous ones")
