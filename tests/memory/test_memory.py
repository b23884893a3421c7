"""One suite for every ConversationMemory backend, plus what only Redis can get wrong."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing

import pytest

from core.messages import Turn
from tests.memory.conftest import Backend, RedisBackend

pytestmark = pytest.mark.anyio


def turns(n: int, start: int = 0) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", f"message {i}") for i in range(start, start + n)]


def contents(window: list[Turn]) -> list[str]:
    return [turn.content for turn in window]


# --- every backend -------------------------------------------------------------------------------


async def test_window_keeps_the_last_n_turns_in_order(memory: Backend):
    conversations = memory.make(window_turns=3)
    await conversations.append("c1", turns(2))
    assert contents(await conversations.window("c1")) == ["message 0", "message 1"]
    await conversations.append("c1", turns(3, start=2))
    assert contents(await conversations.window("c1")) == ["message 2", "message 3", "message 4"]
    await conversations.append("c1", turns(10, start=5))  # more than a window in one append
    assert contents(await conversations.window("c1")) == ["message 12", "message 13", "message 14"]


async def test_conversations_are_separate_and_unknown_ones_are_empty(memory: Backend):
    conversations = memory.make()
    await conversations.append("a", [Turn("user", "hello a")])
    await conversations.append("b", [Turn("user", "hello b")])
    assert await conversations.window("a") == [Turn("user", "hello a")]
    assert await conversations.window("b") == [Turn("user", "hello b")]
    assert await conversations.window("unknown") == []


async def test_clear_forgets_everything(memory: Backend):
    conversations = memory.make()
    await conversations.append("c", turns(4))
    await conversations.append("other", turns(1))
    await conversations.clear("c")
    await conversations.clear("never-seen")  # no error
    assert await conversations.window("c") == []
    assert len(await conversations.window("other")) == 1


async def test_idle_conversations_expire(memory: Backend):
    conversations = memory.make(ttl_seconds=1)
    await conversations.append("c", turns(2))
    await memory.elapse(1.2)
    assert await conversations.window("c") == []


async def test_activity_refreshes_the_idle_timer(memory: Backend):
    conversations = memory.make(ttl_seconds=1)
    await conversations.append("busy", turns(1))
    await conversations.append("idle", turns(1))
    await memory.elapse(0.7)
    await conversations.append("busy", turns(1, start=1))
    await memory.elapse(0.5)  # idle: 1.2 s since last use; busy: 0.5 s
    assert await conversations.window("idle") == []
    assert contents(await conversations.window("busy")) == ["message 0", "message 1"]


async def test_department_and_pin_round_trip(memory: Backend):
    conversations = memory.make()
    history = [
        Turn("system", "be brief"),
        Turn("user", "/hr how many days off? ünïcödé ✓"),
        Turn("assistant", "25 days.", department="hr", pinned=True),
        Turn("assistant", "Ask IT.", department="it", pinned=False),
        Turn("user", ""),
    ]
    await conversations.append("c", history)
    assert await conversations.window("c") == history


# --- Redis only --------------------------------------------------------------------------------

WINDOW = 5
APPENDS = 150
BATCH = 3


def _append_from_another_process(url: str, prefix: str, label: str, barrier) -> None:
    """Child process: APPENDS appends of BATCH turns each, started together with the other child."""
    import redis.asyncio as aioredis

    from memory.redis import RedisMemory

    async def main() -> None:
        client = aioredis.Redis.from_url(url)
        conversations = RedisMemory(client, window_turns=WINDOW, prefix=prefix)
        await client.ping()  # connect before the start line
        barrier.wait(timeout=60)
        for i in range(APPENDS):
            await conversations.append("shared", [Turn("user", f"{label}-{i}-{j}") for j in range(BATCH)])
        await client.aclose()

    asyncio.run(main())


async def test_concurrent_appends_from_two_processes_keep_exactly_the_last_n(redis_backend: RedisBackend):
    conversations = redis_backend.make(window_turns=WINDOW)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    workers = [
        context.Process(
            target=_append_from_another_process,
            args=(redis_backend.url, redis_backend.prefix, label, barrier),
        )
        for label in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    try:
        barrier.wait(timeout=60)
        # Read while they write: an append that pushed and trimmed separately would
        # be seen holding more than the window.
        largest = 0
        while any(worker.is_alive() for worker in workers):
            largest = max(largest, await redis_backend.client.llen(conversations.key("shared")))
            await asyncio.sleep(0)
        for worker in workers:
            worker.join(timeout=10)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    assert largest <= WINDOW

    window = contents(await conversations.window("shared"))
    assert len(window) == WINDOW
    # The last append overall ends the window; appends are never interleaved, so
    # the window is the tail of whole batches, in each process's order.
    assert window[-1] in {f"a-{APPENDS - 1}-{BATCH - 1}", f"b-{APPENDS - 1}-{BATCH - 1}"}
    parsed = [(label, int(i), int(j)) for label, i, j in (entry.split("-") for entry in window)]
    for previous, current in zip(parsed, parsed[1:]):
        if current[2] != 0:  # inside a batch: the same append's next turn
            assert current == (previous[0], previous[1], previous[2] + 1)
        else:
            assert previous[2] == BATCH - 1
    for label in ("a", "b"):
        mine = [(i, j) for who, i, j in parsed if who == label]
        assert mine == sorted(mine)


async def test_an_append_is_one_round_trip(redis_backend: RedisBackend):
    import redis

    conversations = redis_backend.make(window_turns=4)
    await conversations.append("c", turns(1))  # connects and loads the script
    observer = redis.Redis.from_url(redis_backend.url)  # a separate connection

    def reads() -> int:
        # Requests the server has read, counted once per client round trip (unlike
        # total_commands_processed, which also counts the commands a script runs).
        return observer.info("stats")["total_reads_processed"]

    def evalsha_calls() -> int:
        return observer.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

    try:
        idle = -(reads() - reads())  # what the observer's own INFO adds
        scripts = evalsha_calls()
        before = reads()
        await conversations.append("c", turns(3))
        assert reads() - before - idle == 1
        assert evalsha_calls() == scripts + 1
    finally:
        observer.close()


async def test_corrupt_entries_are_skipped_with_a_warning(
    redis_backend: RedisBackend, caplog: pytest.LogCaptureFixture
):
    conversations = redis_backend.make()
    chat = "whatsapp:+12015550123"
    await conversations.append(chat, [Turn("user", "before")])
    await redis_backend.client.rpush(
        conversations.key(chat),
        b"\xff\xfe not utf-8",
        "not json",
        "[1, 2]",
        '{"role": "robot", "content": "x"}',
        '{"role": "user", "content": 5}',
        '{"role": "assistant", "content": "x", "pinned": "yes"}',
    )
    await conversations.append(chat, [Turn("assistant", "after", department="hr")])
    with caplog.at_level(logging.WARNING, logger="memory.redis"):
        window = await conversations.window(chat)
    assert window == [Turn("user", "before"), Turn("assistant", "after", department="hr")]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 6
    assert "not json" not in caplog.text  # user content stays out of the logs
    assert "2015550123" not in caplog.text  # and so do phone numbers


async def test_over_long_turns_are_cut(redis_backend: RedisBackend):
    conversations = redis_backend.make(max_turn_chars=10)
    await conversations.append("c", [Turn("user", "x" * 50), Turn("assistant", "short")])
    assert contents(await conversations.window("c")) == ["x" * 10, "short"]


async def test_keys_are_prefixed_and_carry_the_ttl(redis_backend: RedisBackend):
    conversations = redis_backend.make(ttl_seconds=30)
    await conversations.append("c", turns(1))
    key = f"{redis_backend.prefix}c"
    assert conversations.key("c") == key
    assert 0 < await redis_backend.client.pttl(key) <= 30_000
    await conversations.clear("c")
    assert await redis_backend.client.exists(key) == 0
