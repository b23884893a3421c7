"""What only the in-process backend does; the shared behaviour is in test_memory.py."""

from core.messages import Turn
from memory.in_process import InProcessMemory
from tests.conftest import run
from tests.memory.conftest import FakeClock


def test_expired_conversations_are_swept_on_append():
    clock = FakeClock()
    memory = InProcessMemory(ttl_seconds=10, clock=clock)
    for i in range(50):
        run(memory.append(f"c{i}", [Turn("user", "hi")]))
    clock.now += 100
    run(memory.append("new", [Turn("user", "hi")]))
    assert list(memory._conversations) == ["new"]
