"""`switchboard worker`: answer queued messages from Redis, no HTTP server."""

from __future__ import annotations

import asyncio
import logging
import signal

from gateway.components import Components, build_channels, build_queue, build_worker
from gateway.hot_reload import watch_registry
from gateway.responder import Responder
from gateway.stream_worker import RedisDispatcher

log = logging.getLogger(__name__)


async def run_worker(components: Components, stop: asyncio.Event | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT (or `stop`); in-flight messages finish first.

    The models must already be loaded (`components.start()`).
    """
    if components.redis is None:
        raise ValueError("a worker needs Redis: set SWITCHBOARD_REDIS_URL (or redis_url in the config file)")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    settings = components.settings
    channels = build_channels(settings, components.pipeline)
    queue = build_queue(settings, components.redis)
    await channels.start(RedisDispatcher(queue, worker=None))  # connects the senders; no webhooks here
    responder = Responder(components.pipeline, channels.by_name, show_sources=settings.show_sources)
    worker = build_worker(components, responder)
    watcher = None
    if settings.reload_interval_seconds > 0:
        watcher = asyncio.create_task(watch_registry(components, settings.reload_interval_seconds))
    try:
        await worker.run(stop)
    finally:
        if watcher:
            watcher.cancel()
        await channels.close()

