"""Shared fixtures: the real SmolLM2, a tiny random Llama on its tokenizer, servers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.components import Components, build_components
from gateway.settings import ENV_PREFIX, Settings
from inference.base_model import prepare_bundled_base
from router.learned import ROUTER_SUBDIR

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"  # sample webhook payloads (fake data), in the repository


@pytest.fixture(autouse=True, scope="session")
def _clean_environment() -> Iterator[None]:
    # Settings read SWITCHBOARD_* and the environment beats explicit values.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(ENV_PREFIX)}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port, shared by this test session."""
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cache_home() -> Path:
    """Where the converted base model is cached across test runs."""
    return Path(os.environ.get("SWITCHBOARD_TEST_HOME", REPO / ".cache" / "test-home"))


@pytest.fixture(scope="session")
def smollm2_dir(cache_home: Path) -> Path:
    return prepare_bundled_base(cache_home, show_progress=False)


@pytest.fixture(scope="session")
def tiny_model_dir(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised two-layer Llama with SmolLM2's real tokenizer and template."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    # Random weights favour special tokens, which decode to nothing; silence them
    # (tied embeddings: a zero row gives a zero logit) so replies have visible text.
    with torch.no_grad():
        special = [i for i, token in tokenizer.added_tokens_decoder.items() if token.special]
        model.get_input_embeddings().weight[special] = 0
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    target = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Llama as an f32 GGUF: llama.cpp computes what torch computes, in the same precision."""
    from inference.artifacts import load_causal_lm
    from inference.base_model import bundled_gguf
    from inference.gguf_export import export_gguf

    target = tmp_path_factory.mktemp("tiny-gguf") / "tiny.f32.gguf"
    return export_gguf(load_causal_lm(tiny_model_dir), bundled_gguf(), target, "f32")


@pytest.fixture(scope="session")
def bundled_router(tmp_path_factory: pytest.TempPathFactory):
    """The learned router for the bundled company, trained once per test run (a few seconds)."""
    from training.router_training import train_router

    return train_router(out_dir=tmp_path_factory.mktemp("models") / ROUTER_SUBDIR)


def install_router(report, models_dir: Path) -> None:
    """A copy of a trained router where settings with `models_dir` look for it."""
    shutil.copytree(report.directory, models_dir / ROUTER_SUBDIR)


def make_settings(home: Path, base_model: Path | str, **values: object) -> Settings:
    values.setdefault("models_dir", home / "models")
    return Settings(home=home, base_model=str(base_model), **values)


def started(settings: Settings) -> Components:
    components = build_components(settings)
    components.start()
    return components


@pytest.fixture(scope="session")
def tiny_components(
    tiny_model_dir: Path, bundled_router, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Components]:
    home = tmp_path_factory.mktemp("tiny-home")
    install_router(bundled_router, home / "models")
    # At the default penalty of 1.1 the random tiny model emits only whitespace: 1.3 gives visible text.
    components = started(make_settings(home, tiny_model_dir, max_new_tokens=8, max_input_chars=2000,
                                       repetition_penalty=1.3))
    yield components
    components.close()


@pytest.fixture(scope="session")
def smollm2_components(
    smollm2_dir: Path, bundled_router, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Components]:
    home = tmp_path_factory.mktemp("smollm2-home")
    install_router(bundled_router, home / "models")
    components = started(make_settings(home, smollm2_dir, max_new_tokens=48, memory_window=4))
    yield components
    components.close()


def write_registry(models_dir: Path, entries: dict[str, dict]) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    document = {"departments": {dept: {"live": live} for dept, live in entries.items()}}
    (models_dir / "registry.json").write_text(json.dumps(document))


def run(coroutine):
    return asyncio.run(coroutine)


class LiveServer:
    """The app served by uvicorn on a loopback port, in a background thread."""

    def __init__(self, app) -> None:
        self.app = app
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
