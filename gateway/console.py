"""The web console: a chat page at / and read-only admin data under /console/api (no build step, no CDN)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from gateway.api_key import authorized
from gateway.console_data import eval_view, metrics_summary, models_view
from gateway.errors import ApiError
from gateway.settings import Settings

STATIC = Path(__file__).with_name("console_static")
_QUEUE_TIMEOUT_S = 2.0


async def _admin_enabled(request: Request) -> None:
    if not request.app.state.components.settings.console_admin:
        raise ApiError(404, "The console's admin views are off (console_admin).")


admin = APIRouter(prefix="/console/api", dependencies=[Depends(authorized), Depends(_admin_enabled)])


@admin.get("/models")
async def models(request: Request) -> dict:
    components = request.app.state.components
    settings = components.settings
    view = await asyncio.to_thread(
        models_view, settings.company(), components.backend.models(), settings.models_path, settings.home / "reports"
    )
    return {"departments": view}


@admin.get("/evals/{department}")
async def evals(department: str, request: Request) -> dict:
    settings = request.app.state.components.settings
    if department not in settings.company().ids:
        raise ApiError(404, f"No department '{department}'.", param="department")
    view = await asyncio.to_thread(eval_view, settings.home / "reports", department)
    if view is None:
        raise ApiError(404, f"{department} has no eval report yet: run `switchboard eval {department}`.")
    return view


@admin.get("/status")
async def status(request: Request) -> dict:
    components = request.app.state.components
    channels = request.app.state.channels
    return {
        "ready": components.backend.ready,
        "problem": components.backend.problem,
        "backend": _backend(components.settings),
        "channels": channels.states(),
        "queue": await _queue(components),
        "departments": metrics_summary(components.metrics.registry),
    }


def _backend(settings: Settings) -> str:
    """What generates the answers, as `backend: auto` resolved it."""
    if settings.backend == "openai":
        return f"an OpenAI-compatible server ({settings.openai_base_url})"
    return "llama.cpp" if settings.gguf_serving() is not None else "torch"


async def _queue(components) -> dict | None:
    """Waiting, in-flight and dead-letter counts of the Redis queue; None without Redis."""
    if components.redis is None:
        return None
    from redis.exceptions import RedisError

    from gateway.components import build_queue

    try:
        async with asyncio.timeout(_QUEUE_TIMEOUT_S):
            queue = await build_queue(components.settings, components.redis).status(1)
    except (RedisError, OSError, TimeoutError) as error:
        return {"error": f"Redis does not answer ({type(error).__name__})"}
    return {"waiting": queue.waiting, "in_flight": queue.pending, "dead_letters": queue.dead_letters}


def install_console(app: FastAPI) -> None:
    """The page at /, its files, and (with console_admin) the admin data."""
    app.include_router(admin)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
