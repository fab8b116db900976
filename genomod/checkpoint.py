"""Checkpoints: safetensors weights + JSON config (model, tokenizer and genomod versions, training metadata).

A checkpoint is a folder with ``model.safetensors`` and ``config.json`` (never pickle). ``load_model``
takes such a folder, its ``model.safetensors`` path, or the name of a model shipped inside the package
(``genomod/data/models/<name>/``, e.g. ``default``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genomod import __version__
from genomod.data_paths import models_dir
from genomod.errors import ConfigError, ModelError
from genomod.model import HybridModel, ModelConfig
from genomod.tokenizer import TOKENIZER_VERSION
from genomod.utils import atomic_path, read_format_json, resolve_device, write_json

FORMAT = "genomod-checkpoint"
FORMAT_VERSION = 1
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "MODEL_CARD.md"


def shipped_models_dir() -> Path:
    """Folder of the models shipped inside the package."""
    return models_dir()


def shipped_models() -> list[str]:
    """Names of the models shipped inside the package (folders holding a config.json)."""
    root = shipped_models_dir()
    return sorted(p.name for p in root.iterdir() if (p / CONFIG).is_file()) if root.is_dir() else []


def save_model(model: HybridModel, out_dir: str | os.PathLike, training: dict[str, Any] | None = None,
               dtype: str | None = None) -> Path:
    """Write ``model`` as a genomod checkpoint folder (atomically per file); returns the folder."""
    if getattr(model, "quantization", None):
        raise ModelError(f"cannot save a {model.quantization}-quantized model: save the float model and "
                         f"quantize when loading (load_model(..., quantize={model.quantization!r}))")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        t = v.detach().cpu()
        if dtype is not None and not k.endswith(("log_poles", "residues")):
            t = t.to(getattr(torch, dtype))
        tensors[k] = t.contiguous()
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "genomod_version": __version__}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    cfg = model.config.to_dict()
    if dtype is not None:
        cfg["dtype"] = dtype
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "genomod_version": __version__,
        "tokenizer_version": TOKENIZER_VERSION,
        "model": cfg,
        "training": training or {},
    }
    write_json(out / CONFIG, doc, default=None)
    return out


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """Map a shipped model name or a path (folder or its model.safetensors) to a checkpoint folder."""
    p = Path(name_or_path)
    if p.is_file() and p.name == WEIGHTS:
        p = p.parent
    if p.is_dir():
        if not (p / CONFIG).is_file():
            raise ModelError(f"{p}: not a genomod checkpoint (no {CONFIG})")
        if not (p / WEIGHTS).is_file():
            raise ModelError(f"{p}: not a genomod checkpoint (no {WEIGHTS})")
        return p
    if p.exists():
        raise ModelError(f"{p}: expected a checkpoint folder (with {CONFIG} and {WEIGHTS})")
    shipped = shipped_models_dir() / str(name_or_path)
    if (shipped / CONFIG).is_file():
        return shipped
    names = shipped_models()
    raise ModelError(f"model {str(name_or_path)!r} not found: not a checkpoint folder, and not a shipped model "
                     f"(shipped: {', '.join(names) or 'none'})")


def read_checkpoint_config(path: Path) -> dict[str, Any]:
    """Parse and check ``config.json`` of a checkpoint folder."""
    cfg_path = path / CONFIG
    doc = read_format_json(cfg_path, FORMAT, FORMAT_VERSION, "model", "checkpoint config")
    tok = doc.get("tokenizer_version", TOKENIZER_VERSION)
    if tok != TOKENIZER_VERSION:
        raise ModelError(f"{cfg_path}: tokenizer {tok!r} differs from this genomod's {TOKENIZER_VERSION!r}")
    return doc


def load_model(name_or_path: str | os.PathLike = "default", device: str | torch.device | None = "cpu",
               dtype: str | torch.dtype | None = None, quantize: str | None = None) -> HybridModel:
    """Load a checkpoint folder or shipped model by name, in eval mode, on ``device`` ("auto" = CUDA if present).

    ``dtype``: float32, bfloat16, float16, or None/"auto" = bfloat16 on CUDA, else the checkpoint's dtype
    (Hyena-LI poles/residues stay float32). ``quantize="int8"``: weight-only int8 Linear layers (torchao,
    ``genomod[quant]``). See ``genomod.precision``.
    """
    from genomod.precision import apply_precision, check_quantize, resolve_dtype

    check_quantize(quantize)  # bad values fail before the weights are read
    dev = resolve_device(device)
    resolve_dtype(dtype, dev)
    path = resolve_checkpoint(name_or_path)
    doc = read_checkpoint_config(path)
    try:
        cfg = ModelConfig.from_dict(doc["model"], source=str(path / CONFIG))
    except ConfigError as exc:
        raise ModelError(str(exc)) from None
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path / WEIGHTS}: corrupt or truncated safetensors file ({exc})") from None
    with torch.device("meta"):
        model = HybridModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ModelError(f"{path / WEIGHTS}: weights disagree with config: missing {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise ModelError(f"{path / WEIGHTS}: tensor {k} has shape {tuple(tensors[k].shape)}, "
                             f"config expects {tuple(v.shape)}")
    model.load_state_dict(tensors, assign=True)
    model = model.to(dev)
    apply_precision(model, dtype, quantize, default=cfg.dtype)
    model.resolve_backends()
    model.eval()
    model.checkpoint_info = {"path": str(path), "training": doc.get("training", {}),
                             "genomod_version": doc.get("genomod_version")}
    return model


def model_card(name_or_path: str | os.PathLike = "default") -> str:
    """The model card (MODEL_CARD.md) of a checkpoint, or a short generated summary when absent."""
    path = resolve_checkpoint(name_or_path)
    card = path / CARD
    if card.is_file():
        return card.read_text()
    doc = read_checkpoint_config(path)
    cfg = ModelConfig.from_dict(doc["model"])
    from genomod.model import count_parameters

    return (f"# {cfg.name}\n\nlayers: {' '.join(cfg.layer_types)}\nhidden size: {cfg.hidden_size}\n"
            f"parameters: {count_parameters(cfg):,}\ntraining: {json.dumps(doc.get('training', {}))}\n")
