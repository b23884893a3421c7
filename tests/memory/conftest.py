"""Memory backends under test: the in-process one and Redis on a real, throwaway redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from memory.base import ConversationMemory
from memory.in_process import InProcessMemory

if TYPE_CHECKING:  # imported lazily below: in-process tests must not need redis-py
    from memory.redis import RedisMemory


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # Async tests and their async fixtures share one asyncio loop (redis.asyncio
    # connections are bound to the loop that opened them).
    return "asyncio"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """Builds memories of one kind and lets time pass for them.

    `elapse` moves a fake clock for the in-process backend and really sleeps for
    Redis, whose TTLs run on the server's clock.
    """

    kind = ""

    def make(self, window_turns: int = 8, ttl_seconds: float = 86_400) -> ConversationMemory:
        raise NotImplementedError

    async def elapse(self, seconds: float) -> None:
        raise NotImplementedError


class InProcessBackend(Backend):
    kind = "in_process"

    def __init__(self) -> None:
        self.clock = FakeClock()

    def make(self, window_turns: int = 8, ttl_seconds: float = 86_400) -> InProcessMemory:
        return InProcessMemory(window_turns=window_turns, ttl_seconds=ttl_seconds, clock=self.clock)

    async def elapse(self, seconds: float) -> None:
        self.clock.now += seconds


class RedisBackend(Backend):
    kind = "redis"

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.client = aioredis.Redis.from_url(url)
        # A fresh prefix per test keeps tests apart without FLUSHDB.
        self.prefix = f"test:{uuid.uuid4().hex}:"

    def make(self, window_turns: int = 8, ttl_seconds: float = 86_400, **options: Any) -> RedisMemory:
        from memory.redis import RedisMemory

        return RedisMemory(
            self.client, window_turns=window_turns, ttl_seconds=ttl_seconds, prefix=self.prefix, **options
        )

    async def elapse(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        keys = [key async for key in self.client.scan_iter(match=f"{self.prefix}*")]
        if keys:
            await self.client.delete(*keys)
        await self.client.aclose()


@pytest.fixture
async def redis_backend(redis_url: str, anyio_backend: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(redis_url)
    yield backend
    await backend.close()


@pytest.fixture(params=["in_process", "redis"])
async def memory(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Backend]:
    """Either backend, as a factory: `memory.make(window_turns=..., ttl_seconds=...)`."""
    if request.param == "in_process":
        yield InProcessBackend()
        return
    backend = RedisBackend(request.getfixturevalue("redis_url"))
    yield backend
    await backend.close()
