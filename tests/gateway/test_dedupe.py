"""A platform's retried webhook is answered once: keys remembered for the TTL, then forgotten."""

from gateway.dedupe import InProcessSeenKeys
from tests.conftest import run


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_new_once_within_the_ttl_and_new_again_after_it() -> None:
    clock = Clock()
    seen = InProcessSeenKeys(ttl_seconds=60, clock=clock)
    assert run(seen.first_time("telegram:1")) is True
    assert run(seen.first_time("telegram:1")) is False
    assert run(seen.first_time("telegram:2")) is True
    clock.now += 59
    assert run(seen.first_time("telegram:1")) is False
    clock.now += 2
    assert run(seen.first_time("telegram:1")) is True


def test_expired_keys_are_swept_so_memory_stays_bounded() -> None:
    clock = Clock()
    seen = InProcessSeenKeys(ttl_seconds=10, clock=clock)
    for n in range(1000):
        run(seen.first_time(f"whatsapp:SM{n}"))
    clock.now += 11
    run(seen.first_time("whatsapp:new"))
    assert len(seen._seen) == 1
