"""The durable Redis queue end to end: real redis-server, real PTB client against the
fake Bot API, `switchboard worker` processes killed with SIGKILL."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from typer.testing import CliRunner

from bots.events import Message
from core.messages import IncomingMessage
from gateway.app import create_app
from gateway.cli import app as cli
from gateway.components import build_components, build_queue, redis_client
from memory.redis import RedisMemory
from tests.bots.telegram.fake_bot_api import TOKEN, FakeBotApi
from tests.conftest import LiveServer, make_settings
from tests.redis_server import RedisServer

SECRET = "queue-test-secret"
SWITCHBOARD = Path(sys.executable).with_name("switchboard")


def wait_for(predicate, seconds=60.0, what="condition"):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def bot_api():
    api = FakeBotApi().start()
    yield api
    api.stop()


@pytest.fixture
def fresh_bot_api(bot_api):
    bot_api.reset()
    return bot_api


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("queue-redis")).start()
    yield server
    server.stop()


@pytest.fixture
def clean_redis(redis_server):
    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server


def queue_settings(home, model, redis_url, bot_api, **values):
    return make_settings(
        home, model, redis_url=redis_url, router="commands", max_new_tokens=16, memory_window=20,
        telegram_bot_token=TOKEN, telegram_webhook_secret=SECRET, telegram_api_url=bot_api.base_url,
        reload_interval_seconds=0, **values,
    )


def update(update_id: int, chat_id: int, text: str) -> dict:
    user = {"id": chat_id, "is_bot": False, "first_name": "Asha"}
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_700_000_000, "chat": {"id": chat_id, "type": "private"},
        "from": user, "text": text}}


def post(server, body):
    return httpx.post(server.url + "/webhooks/telegram", json=body,
                      headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}, timeout=10)


def sent_to(bot_api, chat_id):
    return [c for c in bot_api.calls_to("sendMessage", ok_only=True) if str(c.params["chat_id"]) == str(chat_id)]


def user_turns(redis_url, conversation):
    async def read():
        client = redis_client(make_settings(Path("/tmp"), "x", redis_url=redis_url))
        try:
            return [t.content for t in await RedisMemory(client, 50).window(conversation) if t.role == "user"]
        finally:
            await client.aclose()
    return asyncio.run(read())


@pytest.fixture
def gateway(clean_redis, fresh_bot_api, tiny_model_dir, tmp_path):
    """`serve` with Redis: webhooks enqueue, the in-process worker answers."""
    settings = queue_settings(tmp_path, tiny_model_dir, clean_redis.url, fresh_bot_api,
                              queue_max_attempts=2, worker_concurrency=2)
    components = build_components(settings)
    with LiveServer(create_app(components=components)) as live:
        wait_for(lambda: httpx.get(live.url + "/readyz").status_code == 200, what="ready")
        yield live
    components.close()


def test_a_webhook_delivered_three_times_is_answered_once(gateway, fresh_bot_api, clean_redis):
    for _ in range(3):
        response = post(gateway, update(501, 42, "hello"))
        assert response.status_code == 200
    wait_for(lambda: sent_to(fresh_bot_api, 42), what="the reply")
    time.sleep(0.5)
    assert len(sent_to(fresh_bot_api, 42)) == 1
    client = redis.Redis.from_url(clean_redis.url)
    wait_for(lambda: client.xlen("switchboard:queue") == 0, what="the entry to be acknowledged")
    assert client.exists("switchboard:seen:telegram:501")


def test_an_entry_that_keeps_failing_goes_to_the_dead_letter_stream(gateway, fresh_bot_api, clean_redis):
    fresh_bot_api.fail_next(2, status=400, method="sendMessage")  # a permanent Telegram error, twice
    assert post(gateway, update(601, 43, "first")).status_code == 200
    client = redis.Redis.from_url(clean_redis.url)
    wait_for(lambda: client.xlen("switchboard:queue:dead") == 1, what="the dead letter")
    assert post(gateway, update(602, 43, "second")).status_code == 200
    wait_for(lambda: sent_to(fresh_bot_api, 43), what="the next message of that chat")  # it moved on

    result = CliRunner().invoke(cli, ["queue", "status"], env={"SWITCHBOARD_REDIS_URL": clean_redis.url})
    assert result.exit_code == 0, result.output
    assert "dead letters: 1" in result.output
    assert "telegram:43" in result.output and "BadRequest" in result.output


@pytest.mark.slow
def test_redis_outage_refuses_webhooks_then_recovers_without_restart(
    fresh_bot_api, tiny_model_dir, tmp_path
):
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    settings = queue_settings(tmp_path, tiny_model_dir, server.url, fresh_bot_api)
    components = build_components(settings)
    try:
        with LiveServer(create_app(components=components)) as live:
            wait_for(lambda: httpx.get(live.url + "/readyz").status_code == 200, what="ready")
            assert post(live, update(701, 44, "before")).status_code == 200
            wait_for(lambda: len(sent_to(fresh_bot_api, 44)) == 1, what="a reply before the outage")

            server.stop()
            assert post(live, update(702, 44, "during")).status_code == 503
            ready = httpx.get(live.url + "/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "queue unavailable"

            server.start()  # same port, empty data: the worker recreates its group
            wait_for(lambda: httpx.get(live.url + "/readyz").status_code == 200, what="ready again")
            assert post(live, update(703, 44, "after")).status_code == 200
            wait_for(lambda: len(sent_to(fresh_bot_api, 44)) == 2, what="a reply after the outage")
    finally:
        components.close()
        server.stop()


def enqueue_all(settings, messages):
    async def run():
        client = redis_client(settings)
        queue = build_queue(settings, client)
        try:
            for update_id, chat_id, text in messages:
                incoming = IncomingMessage("telegram", f"telegram:{chat_id}", text)
                assert await queue.enqueue("telegram", Message(incoming, str(chat_id), f"telegram:{update_id}"))
        finally:
            await client.aclose()
    asyncio.run(run())


def start_worker(env, log_path):
    log = open(log_path, "ab")
    return subprocess.Popen([str(SWITCHBOARD), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_nothing_is_answered_twice(
    clean_redis, fresh_bot_api, tiny_model_dir, tmp_path
):
    chats = [9000 + i for i in range(10)]
    messages = [(100 + n * 10 + i, chat, f"chat {chat} message {n}") for n in range(5) for i, chat in enumerate(chats)]
    settings = queue_settings(tmp_path, tiny_model_dir, clean_redis.url, fresh_bot_api)
    enqueue_all(settings, messages)  # 50 messages, 5 per conversation, interleaved

    env = {**os.environ, "SWITCHBOARD_HOME": str(tmp_path), "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir),
           "SWITCHBOARD_REDIS_URL": clean_redis.url, "SWITCHBOARD_ROUTER": "commands",
           "SWITCHBOARD_MAX_NEW_TOKENS": "16", "SWITCHBOARD_MEMORY_WINDOW": "20",
           "SWITCHBOARD_TELEGRAM_BOT_TOKEN": TOKEN, "SWITCHBOARD_TELEGRAM_API_URL": fresh_bot_api.base_url,
           "SWITCHBOARD_RELOAD_INTERVAL_SECONDS": "0", "SWITCHBOARD_WORKER_CONCURRENCY": "1",
           "SWITCHBOARD_QUEUE_LOCK_SECONDS": "2", "SWITCHBOARD_QUEUE_CLAIM_IDLE_SECONDS": "1"}
    first = start_worker(env, tmp_path / "worker-1.log")
    killed = []

    def kill_mid_message(call):
        # "typing" goes out as a worker starts an entry: kill it then, mid-processing.
        replies = len(fresh_bot_api.calls_to("sendMessage", ok_only=True))
        if call.method == "sendChatAction" and replies >= 10 and not killed:
            os.kill(first.pid, signal.SIGKILL)
            killed.append(replies)

    fresh_bot_api.on_call = kill_mid_message
    workers = [first]
    try:
        wait_for(lambda: killed, seconds=120, what="the first worker to be killed")
        first.wait(timeout=10)
        client = redis.Redis.from_url(clean_redis.url)
        assert client.xpending("switchboard:queue", "workers")["pending"] >= 1  # it died holding entries

        workers += [start_worker(env, tmp_path / f"worker-{n}.log") for n in (2, 3)]  # they compete
        wait_for(lambda: len(fresh_bot_api.calls_to("sendMessage", ok_only=True)) >= 50, seconds=180,
                 what="all 50 replies")
        wait_for(lambda: client.xlen("switchboard:queue") == 0, what="every entry acknowledged")
        time.sleep(1.5)  # past the claim timeout: a duplicate would show now
        assert len(fresh_bot_api.calls_to("sendMessage", ok_only=True)) == 50
        for chat in chats:
            assert len(sent_to(fresh_bot_api, chat)) == 5
            assert user_turns(clean_redis.url, f"telegram:{chat}") == [
                f"chat {chat} message {n}" for n in range(5)
            ]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=15)
