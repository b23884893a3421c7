"""SWITCHBOARD_REDIS_URL puts the pipeline's conversation memory in Redis."""

import pytest

from core.messages import IncomingMessage
from gateway.components import build_components
from memory.redis import RedisMemory
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio


async def test_conversations_live_in_redis_and_reset_clears_them(redis_url, tiny_model_dir, tmp_path):
    settings = make_settings(tmp_path, tiny_model_dir, redis_url=redis_url, router="commands",
                             max_new_tokens=4, memory_window=4)
    components = build_components(settings)
    components.start()
    memory = components.pipeline.memory
    assert isinstance(memory, RedisMemory)
    try:
        for text in ("/hr", "first question", "second question"):
            await components.pipeline.handle(IncomingMessage("test", "redis-conv", text))
        window = await memory.window("redis-conv")
        assert len(window) == 4 and window[0].content == "first question"
        assert all(turn.department == "hr" for turn in window if turn.role == "assistant")
        assert await memory.client.exists(memory.key("redis-conv"))
        await components.pipeline.handle(IncomingMessage("test", "redis-conv", "/reset"))
        assert await memory.window("redis-conv") == []
    finally:
        await memory.client.delete(memory.key("redis-conv"))
        await memory.client.aclose()
        components.close()
