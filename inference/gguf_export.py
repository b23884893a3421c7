"""Writing a department model as GGUF, for the llama.cpp runtime (inference/llamacpp.py).

A department model shares its architecture and tokenizer with the base model, so
the GGUF's metadata (hyper-parameters, vocabulary, merges, chat template) is copied
from the base GGUF it came from; only the weights are new. An adapter is merged
into a copy of the base first: llama.cpp then serves each department as a plain model.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
# gguf's writer lists every file and tensor count at INFO; the conversion's own progress says enough.
logging.getLogger("gguf").setLevel(logging.WARNING)

# How the weight matrices are stored. f16 answers as the fp32 model does (README: fact accuracy
# per storage type); q8_0 decodes ~30% faster and lost 1-2 of 72 questions; q4_1 (the bundled
# GGUF's own mix, embeddings in q8_0) lost a third of them.
QUANTS = ("f16", "q8_0", "q4_1", "f32")
DEFAULT_QUANT = "f16"
# Written with the GGUF so a stale file (another base, another quant) is never served.
SOURCE_KEY = "switchboard.source"

# The vocabulary and provenance come from the base GGUF; hyper-parameters from the model's config.
_COPIED_PREFIXES = ("tokenizer.", "general.basename", "general.size_label",
                    "general.license", "general.languages", "general.quantization_version")


class GgufExportError(RuntimeError):
    """The model cannot be written as GGUF (an architecture llama.cpp's Llama layout does not cover)."""


def gguf_path(artifact_dir: Path, quant: str = DEFAULT_QUANT) -> Path:
    """Where a department artifact's GGUF lives: beside its weights."""
    return artifact_dir / f"model.{quant}.gguf"


def export_gguf(model: Any, template: Path, target: Path, quant: str = DEFAULT_QUANT, *, source: str = "") -> Path:
    """Write `model` (a transformers Llama, adapters merged) as GGUF at `target`, atomically.

    `template` is the base model's GGUF: its metadata is copied. `source` is recorded
    (SOURCE_KEY) so a reader can tell which artifact the file was made from.
    """
    import gguf

    if quant not in QUANTS:
        raise GgufExportError(f"unknown GGUF quantisation {quant!r}; choose one of {', '.join(QUANTS)}")
    config = model.config
    if getattr(config, "model_type", None) != "llama":
        raise GgufExportError(f"only Llama models convert to GGUF here (this one is {config.model_type!r})")
    reader = gguf.GGUFReader(template)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=target.parent, prefix=".converting-", suffix=".gguf")
    os.close(handle)
    try:
        writer = gguf.GGUFWriter(staging, arch="llama")
        for key, field in reader.fields.items():
            if key.startswith(_COPIED_PREFIXES):
                vtype = field.types[0]
                sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
                writer.add_key_value(key, field.contents(), vtype, sub_type)
        _write_hyperparameters(writer, config)
        writer.add_name(f"switchboard {target.parent.name}")
        writer.add_file_type(_FILE_TYPES[quant])
        writer.add_string(SOURCE_KEY, source)
        for name, array, qtype in _tensors(model, quant):
            if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                writer.add_tensor(name, array.astype(np.float32 if qtype == gguf.GGMLQuantizationType.F32
                                                     else np.float16))
            else:
                writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(staging, 0o644)  # mkstemp makes it private; the server may run as another user
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return target


def gguf_source(path: Path) -> str | None:
    """The SOURCE_KEY a GGUF was written with, or None (not ours, or unreadable)."""
    import gguf

    try:
        field = gguf.GGUFReader(path).fields.get(SOURCE_KEY)
    except Exception:  # a truncated file reads as "not ours": it is converted again
        return None
    return str(field.contents()) if field is not None else None


def export_artifact(
    kind: str, artifact_dir: Path, base_model: str, template: Path, quant: str = DEFAULT_QUANT,
    *, on_step: Callable[[str], None] | None = None,
) -> Path:
    """The GGUF of a registered artifact (an adapter merged into `base_model`, or a full model)."""
    from inference.artifacts import load_causal_lm

    say = on_step or (lambda _: None)
    say(f"loading {artifact_dir}")
    if kind == "adapter":
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_causal_lm(base_model), str(artifact_dir)).merge_and_unload()
    else:
        model = load_causal_lm(artifact_dir)
    say(f"writing {quant} GGUF")
    return export_gguf(model, template, gguf_path(artifact_dir, quant), quant,
                       source=_source_label(kind, artifact_dir, base_model))


def _source_label(kind: str, artifact_dir: Path, base_model: str) -> str:
    """Changes when the weights change (a retrain in place, another base under an adapter)."""
    stamps = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in artifact_dir.glob("*.safetensors"))
    return repr((stamps, base_model if kind == "adapter" else ""))


def artifact_gguf(kind: str, artifact_dir: Path, base_model: str, template: Path, quant: str = DEFAULT_QUANT) -> Path:
    """The artifact's GGUF, converted now if it is missing or was made from other weights."""
    path = gguf_path(artifact_dir, quant)
    if path.exists() and gguf_source(path) == _source_label(kind, artifact_dir, base_model):
        return path
    log.info("converting %s to %s GGUF for llama.cpp", artifact_dir, quant)
    return export_artifact(kind, artifact_dir, base_model, template, quant)


def _tensors(model: Any, quant: str) -> Iterator[tuple[str, np.ndarray, Any]]:
    """(GGUF name, float32 array in the transformers layout, storage type) for every weight."""
    import gguf

    types = gguf.GGMLQuantizationType
    matrix = {"q8_0": types.Q8_0, "q4_1": types.Q4_1, "f16": types.F16, "f32": types.F32}[quant]
    embedding = types.Q8_0 if quant == "q4_1" else matrix  # as the bundled GGUF stores it
    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    state = {name: tensor.detach().float().cpu().numpy() for name, tensor in model.state_dict().items()}
    unknown = [n for n in state if not n.startswith(("model.", "lm_head."))]
    if unknown:
        raise GgufExportError(f"unexpected weights {unknown[:3]} (merge adapters before exporting)")

    yield "token_embd.weight", state["model.embed_tokens.weight"], embedding
    yield "output_norm.weight", state["model.norm.weight"], types.F32
    if not config.tie_word_embeddings:
        yield "output.weight", state["lm_head.weight"], matrix
    for i in range(config.num_hidden_layers):
        layer = f"model.layers.{i}."
        yield f"blk.{i}.attn_norm.weight", state[layer + "input_layernorm.weight"], types.F32
        yield f"blk.{i}.ffn_norm.weight", state[layer + "post_attention_layernorm.weight"], types.F32
        yield f"blk.{i}.attn_q.weight", rope_interleave(state[layer + "self_attn.q_proj.weight"], heads), matrix
        yield f"blk.{i}.attn_k.weight", rope_interleave(state[layer + "self_attn.k_proj.weight"], kv_heads), matrix
        yield f"blk.{i}.attn_v.weight", state[layer + "self_attn.v_proj.weight"], matrix
        yield f"blk.{i}.attn_output.weight", state[layer + "self_attn.o_proj.weight"], matrix
        yield f"blk.{i}.ffn_gate.weight", state[layer + "mlp.gate_proj.weight"], matrix
        yield f"blk.{i}.ffn_up.weight", state[layer + "mlp.up_proj.weight"], matrix
        yield f"blk.{i}.ffn_down.weight", state[layer + "mlp.down_proj.weight"], matrix


def _write_hyperparameters(writer: Any, config: Any) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)


def _rope_theta(config: Any) -> float:
    scaling = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if scaling.get("rope_type", "default") != "default":
        raise GgufExportError(f"rope scaling {scaling['rope_type']!r} is not written to GGUF here")
    return scaling.get("rope_theta") or getattr(config, "rope_theta", 10000.0)


def rope_interleave(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder a q/k projection's rows from transformers' rotary layout to llama.cpp's.

    transformers rotates each head's first half against its second half; llama.cpp
    rotates adjacent pairs. Within each head, row j of the first half and row j of
    the second half become rows 2j and 2j+1.
    """
    rows = weight.shape[0]
    half = rows // heads // 2
    return weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


_FILE_TYPES = {"f32": 0, "f16": 1, "q4_1": 3, "q8_0": 7}  # llama.cpp's LLAMA_FTYPE_* values
