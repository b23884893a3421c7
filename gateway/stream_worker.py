"""Workers over the Redis queue: any number of processes, on any number of machines.

`switchboard worker` runs one; `switchboard serve` runs one in-process unless
`worker_in_process` is off. Each worker answers up to `concurrency` entries at a
time (different conversations), reclaims entries of dead workers, and rides out
Redis outages by retrying with a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from redis.exceptions import RedisError

from bots.channel import ReplyChannel
from bots.events import Ignored, Inbound
from core.redaction import tag
from core.retry import backoff_delay
from gateway.event_codec import UndecodableEvent, decode
from gateway.redis_queue import Entry, RedisQueue
from gateway.responder import Responder

log = logging.getLogger(__name__)

RETRY_WAITING_S = 0.05  # an entry whose predecessor is still being answered
# A Redis outage: pauses back off (core.retry) from the first to the longest, so a worker
# notices within seconds that Redis is back.
OUTAGE_PAUSE_S = 1.0
OUTAGE_MAX_PAUSE_S = 5.0
MAX_BACKOFF_S = 30.0  # an entry that failed waits up to this before its next try


class StreamWorker:
    def __init__(
        self,
        queue: RedisQueue,
        responder: Responder,
        *,
        name: str | None = None,
        concurrency: int = 4,
        retry_base_seconds: float = 1.0,
    ) -> None:
        self.queue = queue
        self.responder = responder
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.concurrency = max(1, concurrency)
        self.retry_base_seconds = retry_base_seconds
        self._active: dict[str, asyncio.Task] = {}
        self._not_before: dict[str, float] = {}  # entry id -> monotonic time of its next try

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Answer entries until `stop` is set or the task is cancelled; in-flight ones finish first on stop."""
        stop = stop or asyncio.Event()
        log.info("worker %s started (concurrency %d)", self.name, self.concurrency)
        failures = 0
        try:
            while not stop.is_set():
                try:
                    await self._step()
                    if failures:
                        log.warning("worker %s: Redis is back", self.name)
                        failures = 0
                except (RedisError, OSError) as error:
                    if not failures:
                        log.warning("worker %s: Redis unavailable (%s); retrying", self.name, error)
                    failures += 1
                    await asyncio.sleep(backoff_delay(failures, OUTAGE_PAUSE_S, OUTAGE_MAX_PAUSE_S))
            if self._active:
                await asyncio.wait(list(self._active.values()))
        finally:
            for task in self._active.values():
                task.cancel()  # cancelled entries stay pending; another worker reclaims them

    async def _step(self) -> None:
        free = self.concurrency - len(self._active)
        if free <= 0:
            await asyncio.wait(list(self._active.values()), return_when=asyncio.FIRST_COMPLETED)
            return
        candidates = await self.queue.claim_stale(self.name, free)
        own = await self.queue.read(self.name, 100, new=False)
        owned = {entry.id for entry in own}
        self._not_before = {k: t for k, t in self._not_before.items() if k in owned}  # done elsewhere
        candidates += own
        started = self._start(candidates, free)
        waiting = any(entry_id not in self._active for entry_id in self._not_before)
        if started < free:
            fresh = await self.queue.read(
                self.name, free - started, new=True, block_ms=int((RETRY_WAITING_S if waiting else 1.0) * 1000)
            )
            self._start(fresh, free - started)

    def _start(self, entries: list[Entry], slots: int) -> int:
        now, started, seen = time.monotonic(), 0, set()
        for entry in entries:
            if started >= slots:
                break
            if entry.id in self._active or entry.id in seen or self._not_before.get(entry.id, 0) > now:
                continue
            seen.add(entry.id)
            task = asyncio.create_task(self._process(entry))
            self._active[entry.id] = task
            task.add_done_callback(lambda _, entry_id=entry.id: self._active.pop(entry_id, None))
            started += 1
        return started

    async def _process(self, entry: Entry) -> None:
        token = self.queue.new_token()
        try:
            state = await self.queue.begin(entry, token)
            if state == "done":  # finished by another worker before we read it
                await self.queue.complete(entry, token)
                return
            if state != "go":  # its predecessor is still in flight
                self._not_before[entry.id] = time.monotonic() + RETRY_WAITING_S
                return
            await self._answer_holding_lock(entry, token)
        except (RedisError, OSError) as error:
            # Stays pending; this worker (or another, after the idle timeout) tries again.
            log.warning("worker %s: entry %s must wait for Redis (%s)", self.name, entry.id, error)
            self._not_before[entry.id] = time.monotonic() + OUTAGE_PAUSE_S

    async def _answer_holding_lock(self, entry: Entry, token: str) -> None:
        keeper = asyncio.create_task(self._keep_lock(entry, token))
        try:
            channel, event = decode(entry.payload)
            await self.responder.answer(channel, event)
        except UndecodableEvent as error:
            await self.queue.fail(entry, token, str(error), permanent=True)
        except (RedisError, OSError):
            await self.queue.release(entry, token)
            raise
        except Exception as error:
            log.exception("worker %s: entry %s failed", self.name, entry.id)
            attempts = await self.queue.fail(entry, token, f"{type(error).__name__}: {error}")
            self._not_before[entry.id] = time.monotonic() + backoff_delay(attempts, self.retry_base_seconds, MAX_BACKOFF_S)
        else:
            await self.queue.complete(entry, token)
            self._not_before.pop(entry.id, None)
        finally:
            keeper.cancel()

    async def _keep_lock(self, entry: Entry, token: str) -> None:
        """Renew the conversation lock while we work, so only a dead worker's lock expires."""
        while True:
            await asyncio.sleep(self.queue.lock_ms / 3000)
            with contextlib.suppress(RedisError, OSError):
                if not await self.queue.renew(entry, token):
                    log.warning("worker %s: lost the lock of conversation %s", self.name, tag(entry.conversation))
                    return


class RedisDispatcher:
    """Webhooks enqueue into Redis; an optional in-process worker answers."""

    def __init__(self, queue: RedisQueue, worker: StreamWorker | None) -> None:
        self.queue = queue
        self.worker = worker
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False

    async def accept(self, channel: ReplyChannel, event: Inbound) -> bool:
        if isinstance(event, Ignored):
            return True
        return await self.queue.enqueue(channel.name, event)

    async def run(self) -> None:
        if self.worker is None:
            return
        self._running = True
        try:
            await self.worker.run(self._stop)
        finally:
            self._running = False
            self._stopped.set()

    async def stop(self, timeout: float) -> int:
        """Let the entries in flight finish; queued ones stay in Redis for the next worker."""
        self._stop.set()
        if self.worker is None or not self._running:
            return 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), timeout)
        return 0  # whatever did not finish stays pending in Redis and is claimed again

    async def ready(self) -> bool:
        return await self.queue.ping()
