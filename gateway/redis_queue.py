"""The durable inbound queue: one Redis Stream read by a consumer group of workers.

Guarantees, and how:
- Accepted means stored: a webhook answers 200 only after its entry is in the
  stream (dedupe, sequence number and XADD are one Lua script, one round trip).
- Nothing lost: an entry is acknowledged (and deleted) only after its reply was
  sent. Entries a dead worker had read are reclaimed with XAUTOCLAIM once they
  have been idle for `claim_idle_seconds`.
- In order per conversation: each entry carries its conversation's sequence
  number; a worker starts entry n only when n-1 is done, holding a per-
  conversation lock (owner token, expiry renewed while it works).
- Poison entries: after `max_attempts` failures an entry moves to a dead-letter
  stream with its error, and the conversation moves on.
A crash between sending a reply and acknowledging it (a few milliseconds) would
send that reply again: delivery is at least once, with that window kept tiny.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from bots.events import Inbound
from gateway.dispatch import QueueUnavailable
from gateway.event_codec import conversation_of, encode

log = logging.getLogger(__name__)

GROUP = "workers"
ENQUEUE_TIMEOUT_S = 5.0  # a webhook waits this long for Redis, then answers 503

# KEYS: seen, seq, stream. ARGV: dedupe?, dedupe ttl ms, conversation, payload.
_ENQUEUE = """
if ARGV[1] == '1' and not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
    return false
end
local seq = redis.call('INCR', KEYS[2])
return redis.call('XADD', KEYS[3], '*', 'conversation', ARGV[3], 'seq', seq, 'event', ARGV[4])
"""

# KEYS: lock, done. ARGV: token, lock ms, seq. Starts entry `seq` if it is next and nobody holds the lock.
_BEGIN = """
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
local seq = tonumber(ARGV[3])
if seq <= done then return 'done' end
if seq > done + 1 then return 'wait' end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'go' end
return 'busy'
"""

# KEYS: lock, done, seq, stream, attempts. ARGV: token, seq, entry id, group.
# Marks the entry done, acknowledges and deletes it, and drops the
# conversation's counters once it has nothing left in flight.
_COMPLETE = """
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > done then redis.call('SET', KEYS[2], ARGV[2]) end
redis.call('XACK', KEYS[4], ARGV[4], ARGV[3])
redis.call('XDEL', KEYS[4], ARGV[3])
redis.call('HDEL', KEYS[5], ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[3]) == redis.call('GET', KEYS[2]) then redis.call('DEL', KEYS[2], KEYS[3]) end
return 1
"""

# KEYS: lock. ARGV: token, ms (0 = release).
_LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


@dataclass(frozen=True)
class Entry:
    """One queued event as a worker sees it."""

    id: str
    conversation: str
    seq: int
    payload: str


@dataclass(frozen=True)
class DeadLetter:
    id: str
    conversation: str
    error: str
    attempts: int
    payload: str


@dataclass(frozen=True)
class QueueStatus:
    waiting: int  # entries not yet done (read or not)
    pending: int  # read by a worker, not yet acknowledged
    consumers: list[tuple[str, int, int]]  # (name, pending, idle ms)
    dead_letters: int
    recent_dead: list[DeadLetter]


class RedisQueue:
    """The stream, its consumer group and the per-conversation bookkeeping."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "switchboard:",
        dedupe_ttl_seconds: float = 86_400,
        lock_seconds: float = 30,
        claim_idle_seconds: float = 60,
        max_attempts: int = 5,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.stream = f"{prefix}queue"
        self.dead_stream = f"{prefix}queue:dead"
        self._attempts = f"{prefix}queue:attempts"
        self._dedupe_ms = int(dedupe_ttl_seconds * 1000)
        self.lock_ms = int(lock_seconds * 1000)
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        self.max_attempts = max_attempts
        self._enqueue_batch = _Coalesced(client, _ENQUEUE)
        self._begin = client.register_script(_BEGIN)
        self._complete = client.register_script(_COMPLETE)
        self._lock = client.register_script(_LOCK)
        self._group_ready = False

    # -- gateway side ----------------------------------------------------------

    async def enqueue(self, channel: str, event: Inbound) -> bool:
        """Store the event; False if its platform id was already accepted. Raises QueueUnavailable."""
        dedupe_key = getattr(event, "dedupe_key", None)
        conversation = conversation_of(channel, event)
        keys = [f"{self.prefix}seen:{dedupe_key or ''}", self._key("seq", conversation), self.stream]
        args = ["1" if dedupe_key else "0", self._dedupe_ms, conversation, encode(channel, event)]
        try:
            async with asyncio.timeout(ENQUEUE_TIMEOUT_S):
                await self.ensure_group()
                return await self._enqueue_batch.run(keys, args) is not None
        except TimeoutError:
            raise QueueUnavailable(f"Redis did not answer within {ENQUEUE_TIMEOUT_S:g} s") from None
        except (RedisError, OSError) as error:
            raise QueueUnavailable(f"Redis is unavailable ({error})") from error

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    async def ensure_group(self) -> None:
        """Create the consumer group once; from the stream's start, so nothing queued earlier is missed."""
        if self._group_ready:
            return
        try:
            await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    # -- worker side -----------------------------------------------------------

    async def claim_stale(self, consumer: str, count: int) -> list[Entry]:
        """Take over entries another (dead or stuck) worker has held for too long."""
        await self.ensure_group()
        async with self._group_may_be_gone():
            reply = await self.client.xautoclaim(
                self.stream, GROUP, consumer, min_idle_time=self.claim_idle_ms, start_id="0-0", count=count
            )
        claimed = reply[1]
        entries = self._entries(claimed)
        if entries:
            log.info("%s: reclaimed %d stale entries", consumer, len(entries))
        return entries

    async def read(self, consumer: str, count: int, *, new: bool, block_ms: int | None = None) -> list[Entry]:
        """This consumer's own unacknowledged entries (new=False), or entries nobody has read yet."""
        await self.ensure_group()
        async with self._group_may_be_gone():
            reply = await self.client.xreadgroup(
                GROUP, consumer, {self.stream: ">" if new else "0"}, count=count, block=block_ms if new else None
            )
        return self._entries(reply[0][1]) if reply else []

    async def begin(self, entry: Entry, token: str) -> str:
        """'go' (lock taken), 'wait' (an earlier entry is not done), 'busy' (locked), 'done'."""
        keys = [self._key("lock", entry.conversation), self._key("done", entry.conversation)]
        result = await self._begin(keys=keys, args=[token, self.lock_ms, entry.seq])
        return result.decode() if isinstance(result, bytes) else result

    async def renew(self, entry: Entry, token: str) -> bool:
        return bool(await self._lock(keys=[self._key("lock", entry.conversation)], args=[token, self.lock_ms]))

    async def release(self, entry: Entry, token: str) -> None:
        await self._lock(keys=[self._key("lock", entry.conversation)], args=[token, 0])

    async def complete(self, entry: Entry, token: str) -> None:
        await self._complete(keys=self._entry_keys(entry), args=[token, entry.seq, entry.id, GROUP])

    async def fail(self, entry: Entry, token: str, error: str, *, permanent: bool = False) -> int:
        """Count a failed attempt; past `max_attempts` (or if permanent) dead-letter it. Returns attempts."""
        attempts = await self.client.hincrby(self._attempts, entry.id, 1)
        if permanent or attempts >= self.max_attempts:
            await self.client.xadd(
                self.dead_stream,
                {"entry": entry.id, "conversation": entry.conversation, "error": error[:2000],
                 "attempts": attempts, "event": entry.payload},
            )
            await self.complete(entry, token)  # the conversation moves on
            log.error("queue entry %s dead-lettered after %d attempts: %s", entry.id, attempts, error)
        else:
            await self.release(entry, token)
        return attempts

    async def status(self, recent: int = 5) -> QueueStatus:
        await self.ensure_group()
        pending = await self.client.xpending(self.stream, GROUP)
        consumers = await self.client.xinfo_consumers(self.stream, GROUP)
        dead = await self.client.xrevrange(self.dead_stream, count=recent)
        return QueueStatus(
            waiting=await self.client.xlen(self.stream),
            pending=int(pending["pending"]),
            consumers=[(_text(c["name"]), int(c["pending"]), int(c["idle"])) for c in consumers],
            dead_letters=await self.client.xlen(self.dead_stream),
            recent_dead=[
                DeadLetter(_text(entry_id), _text(f[b"conversation"]), _text(f[b"error"]),
                           int(f[b"attempts"]), _text(f[b"event"]))
                for entry_id, f in dead
            ],
        )

    @contextlib.asynccontextmanager
    async def _group_may_be_gone(self) -> AsyncIterator[None]:
        # A Redis restarted without persistence comes back empty: make the group again next time.
        try:
            yield
        except ResponseError as error:
            if "NOGROUP" in str(error):
                self._group_ready = False
            raise

    @staticmethod
    def new_token() -> str:
        return secrets.token_hex(8)

    def _key(self, kind: str, conversation: str) -> str:
        return f"{self.prefix}{kind}:{conversation}"

    def _entry_keys(self, entry: Entry) -> list[str]:
        c = entry.conversation
        return [self._key("lock", c), self._key("done", c), self._key("seq", c), self.stream, self._attempts]

    def _entries(self, raw: list) -> list[Entry]:
        entries = []
        for entry_id, fields in raw:
            if not fields:  # deleted while pending: nothing left to do
                continue
            entries.append(Entry(_text(entry_id), _text(fields[b"conversation"]), int(fields[b"seq"]),
                                 _text(fields[b"event"])))
        return entries


class _Coalesced:
    """Runs one Lua script for many callers: the calls made while a round trip is
    under way go together in the next pipeline.

    Under load this spreads redis-py's per-command cost (most of a webhook's CPU)
    over the batch; a lone call still goes out at once.
    """

    def __init__(self, client: aioredis.Redis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._waiting: list[tuple[list, list, asyncio.Future]] = []
        self._sending = False

    async def run(self, keys: list, args: list) -> object:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((keys, args, future))
        if not self._sending:
            self._sending = True
            asyncio.get_running_loop().create_task(self._send_all())
        return await future

    async def _send_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._send(batch)
        finally:
            self._sending = False

    async def _send(self, batch: list[tuple[list, list, asyncio.Future]]) -> None:
        for attempt in range(2):
            try:
                pipe = self.client.pipeline(transaction=False)
                for keys, args, _ in batch:
                    pipe.evalsha(self.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
            except NoScriptError:
                if attempt == 0:  # a restarted Redis has forgotten the script
                    await self.client.script_load(self.source)
                    continue
                raise
            except BaseException as error:  # the callers learn of it; no one waits forever
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(error if isinstance(error, Exception) else RedisError(str(error)))
                if not isinstance(error, Exception):
                    raise
                return
            if attempt == 0 and any(isinstance(result, NoScriptError) for result in results):
                await self.client.script_load(self.source)
                continue
            for (*_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
            return


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
