"""The HTTP app: health, readiness, metrics and the OpenAI-compatible API."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from core.redaction import scrub
from gateway.body_limit import BodyLimit
from gateway.components import Components, build_channels, build_components, build_dispatcher
from gateway.console import install_console
from gateway.dispatch import Dispatcher
from gateway.errors import install_error_handlers
from gateway.hot_reload import watch_registry
from gateway.openai_api import api
from gateway.settings import Settings
from gateway.webhooks import webhooks

log = logging.getLogger(__name__)

# Far above any webhook or chat request (256 messages of 4,000 characters fit); kept out of memory.
MAX_BODY_BYTES = 2 * 2**20


def create_app(
    settings: Settings | None = None, components: Components | None = None, *, telegram_polling: bool = False
) -> FastAPI:
    """The app; models load in the background so /healthz answers at once.

    Components passed in belong to the caller, who closes them.
    """
    owned = components is None
    components = components or build_components(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.load_error = None
        settings = components.settings
        channels = build_channels(settings, components.pipeline)
        dispatcher = build_dispatcher(components, channels, run_worker=settings.worker_in_process)
        app.state.channels = channels
        await channels.start(dispatcher, telegram_polling=telegram_polling)
        tasks = [asyncio.create_task(_load_then_answer(app, components, dispatcher))]
        if components.settings.reload_interval_seconds > 0:
            tasks.append(asyncio.create_task(watch_registry(components, components.settings.reload_interval_seconds)))
        try:
            yield
        finally:
            # Accepted messages were already answered 200 to the platform: answer them before stopping.
            await dispatcher.stop(settings.shutdown_timeout_seconds)
            for task in tasks:
                task.cancel()
            await channels.close()
            if owned:
                await asyncio.to_thread(components.close)  # waits for the engine threads

    app = FastAPI(title="Switchboard", lifespan=lifespan)
    app.state.pipeline = components.pipeline
    app.state.components = components
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.include_router(api)
    app.include_router(webhooks)
    if components.settings.console:
        install_console(app)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """503 until the models answer, or when serving has stopped; says each channel's state."""
        channels = request.app.state.channels
        body: dict = {"channels": channels.states()}
        if channels.dispatcher is not None and not await channels.dispatcher.ready():
            return JSONResponse({"status": "queue unavailable", "error": "Redis does not answer", **body}, status_code=503)
        problem = components.backend.problem or getattr(request.app.state, "load_error", None)
        if problem:
            return JSONResponse({"status": "failed", "error": scrub(problem), **body}, status_code=503)
        if components.backend.ready:
            return JSONResponse({"status": "ready", **body})
        return JSONResponse({"status": "loading", **body}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(components.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _load_then_answer(app: FastAPI, components: Components, dispatcher: Dispatcher) -> None:
    """Load the models, then answer queued messages (accepted ones wait for the models)."""
    if not components.backend.ready:
        try:
            await asyncio.to_thread(components.start)
        except Exception as error:  # keep serving /healthz and say why in /readyz
            log.exception("loading models failed")
            app.state.load_error = scrub(str(error))
            return
    # The loaded models are millions of long-lived objects: keep the collector from
    # walking them on every full collection (pauses of ~200 ms under load otherwise).
    gc.freeze()
    await dispatcher.run()
