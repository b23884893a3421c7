"""One stream worker against a real redis-server, answering through the pipeline over in-memory ports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import pytest
import redis.asyncio as aioredis

from bots.events import Inbound, Message
from core.messages import IncomingMessage
from gateway.redis_queue import RedisQueue
from gateway.responder import Responder
from gateway.stream_worker import StreamWorker
from tests.fakes import ScriptedBackend, fake_pipeline


class GatedChannel:
    """A reply channel that holds each send until the test opens the gate."""

    name = "test"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sending = asyncio.Event()
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, text: str) -> None:
        self.sending.set()
        await self.gate.wait()
        self.sent.append((to, text))

    def working(self, to: str) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def handle_event(self, event: Inbound) -> None: ...

    def parse(self, payload: dict) -> Inbound:
        raise AssertionError("only parsed events are queued here")


async def within(seconds: float, condition) -> None:
    async with asyncio.timeout(seconds):
        while not await condition():
            await asyncio.sleep(0.02)


@pytest.fixture
def queue_parts(redis_url):
    """A queue under its own key prefix (the Redis server is shared by the session), and its channel."""

    def make(**values) -> tuple[RedisQueue, GatedChannel, StreamWorker]:
        client = aioredis.from_url(redis_url)
        queue = RedisQueue(client, prefix=f"test-{uuid.uuid4().hex[:8]}:", **values)
        channel = GatedChannel()
        responder = Responder(fake_pipeline(ScriptedBackend("twelve days")), {channel.name: channel})
        return queue, channel, StreamWorker(queue, responder, name="w1", concurrency=1)

    return make


def message(n: int) -> Message:
    return Message(IncomingMessage("test", "test:42", f"question {n}"), "42", f"test:{n}")


def test_a_worker_that_loses_its_lock_says_so_and_leaves_the_new_holder_alone(queue_parts, caplog) -> None:
    queue, channel, worker = queue_parts(lock_seconds=0.3)
    lock = queue._key("lock", "test:42")

    async def scenario() -> None:
        stop = asyncio.Event()
        assert await queue.enqueue("test", message(1))
        running = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(channel.sending.wait(), 10)  # answering, holding the lock
        await queue.client.set(lock, "another-worker")  # as if it had expired and been taken
        await within(5, lambda: _logged(caplog, "lost the lock"))
        channel.gate.set()
        await within(10, lambda: _queue_empty(queue))
        stop.set()
        await asyncio.wait_for(running, 10)
        assert await queue.client.get(lock) == b"another-worker"
        await queue.client.aclose()

    with caplog.at_level(logging.WARNING, logger="gateway.stream_worker"):
        asyncio.run(scenario())
    assert channel.sent == [("42", "twelve days")]


def test_an_entry_no_worker_can_decode_goes_to_the_dead_letters_at_once(queue_parts, caplog) -> None:
    queue, channel, worker = queue_parts(max_attempts=5)
    channel.gate.set()

    async def scenario() -> None:
        await queue.ensure_group()
        await queue.client.xadd(queue.stream, {"conversation": "test:7", "seq": 1, "event": "{not json"})
        assert await queue.enqueue("test", message(2))  # the next conversation is not held up
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await within(10, lambda: _queue_empty(queue))
        stop.set()
        await asyncio.wait_for(running, 10)
        status = await queue.status()
        assert status.dead_letters == 1
        (dead,) = status.recent_dead
        assert dead.conversation == "test:7" and dead.attempts == 1 and "cannot decode" in dead.error
        await queue.client.aclose()

    asyncio.run(scenario())
    assert channel.sent == [("42", "twelve days")]


async def _logged(caplog, text: str) -> bool:
    return text in caplog.text


async def _queue_empty(queue: RedisQueue) -> bool:
    status = await queue.status()
    return status.waiting == 0 and status.pending == 0
