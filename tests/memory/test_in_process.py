from core.messages import Turn
from memory.in_process import InProcessMemory
from tests.conftest import run


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def turns(n: int) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", f"message {i}") for i in range(n)]


def test_window_keeps_the_last_n_turns_in_order():
    memory = InProcessMemory(window_turns=3)
    run(memory.append("c1", turns(5)))
    assert [t.content for t in run(memory.window("c1"))] == ["message 2", "message 3", "message 4"]


def test_conversations_are_separate_and_unknown_ones_are_empty():
    memory = InProcessMemory()
    run(memory.append("a", [Turn("user", "hello a")]))
    assert run(memory.window("b")) == []
    assert run(memory.window("a")) == [Turn("user", "hello a")]


def test_clear_forgets_everything():
    memory = InProcessMemory()
    run(memory.append("c", turns(4)))
    run(memory.clear("c"))
    assert run(memory.window("c")) == []


def test_idle_conversations_expire_and_activity_refreshes_the_timer():
    clock = FakeClock()
    memory = InProcessMemory(window_turns=8, ttl_seconds=60, clock=clock)
    run(memory.append("busy", turns(1)))
    run(memory.append("idle", turns(1)))
    clock.now += 50
    run(memory.append("busy", turns(1)))
    clock.now += 20  # idle: 70 s since last use; busy: 20 s
    assert run(memory.window("idle")) == []
    assert len(run(memory.window("busy"))) == 2


def test_expired_conversations_are_swept_on_append():
    clock = FakeClock()
    memory = InProcessMemory(ttl_seconds=10, clock=clock)
    for i in range(50):
        run(memory.append(f"c{i}", turns(1)))
    clock.now += 100
    run(memory.append("new", turns(1)))
    assert list(memory._conversations) == ["new"]
