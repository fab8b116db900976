"""Pickle-free training checkpoints: a Lightning ``CheckpointIO`` writing safetensors + JSON folders.

A checkpoint folder ``step_00000100/`` holds
  ``model.safetensors`` + ``config.json``   a genomod checkpoint (``genomod.load_model`` reads it),
  ``trainer_state.safetensors``             every other tensor (optimizer moments, RNG states, ...),
  ``trainer_state.json``                    everything else (step, scheduler, loops, data position) with
                                            tensor references, plus the byte sizes of the two weight files.
Folders are written under a temporary name and renamed when complete. ``find_resume_checkpoint`` walks
from the newest folder back and skips (with a warning) any folder that is truncated or has corrupt JSON.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from genomod.checkpoint import CONFIG, WEIGHTS, save_model
from genomod.errors import ModelError
from genomod.model import HybridModel, ModelConfig
from genomod.utils import atomic_dir

log = logging.getLogger("genomod.train")

STATE_TENSORS, STATE_JSON = "trainer_state.safetensors", "trainer_state.json"
STATE_FORMAT = "genomod-train-state-1"
MODEL_PREFIX = "model."


# ---- tagged JSON codec (no pickle): tensors go to a safetensors dict, everything else to JSON -----------
def encode_state(obj: Any, tensors: dict[str, torch.Tensor], path: str = "s") -> Any:
    """JSON-encode ``obj``; tensors are moved into ``tensors`` and replaced by ``{"__tensor__": key}``."""
    if isinstance(obj, torch.Tensor):
        key = path
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode_state(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {"__dict__": [[encode_state(k, tensors, f"{path}.k{i}"), encode_state(v, tensors, f"{path}.{i}")]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (Path, torch.dtype, torch.device)):
        return str(obj)
    raise TypeError(f"checkpoint state at {path}: cannot store {type(obj).__name__} without pickle")


def decode_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``encode_state``."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        if "__tuple__" in obj:
            return tuple(decode_state(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {decode_state(k, tensors): decode_state(v, tensors) for k, v in obj["__dict__"]}
        return {k: decode_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_state(v, tensors) for v in obj]
    return obj


class SafeCheckpointIO(CheckpointIO):
    """Lightning CheckpointIO that writes atomic safetensors + JSON folders instead of torch.save pickles."""

    def __init__(self, model_config: ModelConfig | None, training_meta: dict[str, Any] | None = None) -> None:
        self.model_config = model_config
        self.training_meta = training_meta or {}

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Write ``checkpoint`` (a Lightning checkpoint dict) to folder ``path`` atomically."""
        with atomic_dir(path, fsync=True) as tmp:
            ckpt = dict(checkpoint)
            names = self.write_weights(ckpt.pop("state_dict"), tmp, int(ckpt.get("global_step", 0)))
            tensors: dict[str, torch.Tensor] = {}
            doc = encode_state(ckpt, tensors)
            save_file(tensors, str(tmp / STATE_TENSORS), metadata={"format": STATE_FORMAT})
            sizes = {name: (tmp / name).stat().st_size for name in (*names, STATE_TENSORS)}
            (tmp / STATE_JSON).write_text(json.dumps({"format": STATE_FORMAT, "file_sizes": sizes,
                                                      "state": doc}) + "\n")

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Any = None) -> dict[str, Any]:
        """Read a checkpoint folder back into a Lightning checkpoint dict (ModelError when corrupt)."""
        folder = Path(path)
        doc = check_checkpoint(folder)
        tensors = load_file(str(folder / STATE_TENSORS))
        ckpt = decode_state(doc["state"], tensors)
        ckpt["state_dict"] = self.read_weights(folder)
        return ckpt

    def write_weights(self, state_dict: dict[str, torch.Tensor], folder: Path, global_step: int) -> list[str]:
        """Write the module's weights into ``folder`` as a genomod checkpoint (model.safetensors + config.json).

        Returns the weight file names, whose byte sizes are checked on resume. Subclasses (fine-tuning) store
        other weights here; everything else in the checkpoint is handled by ``save_checkpoint``.
        """
        weights = {k[len(MODEL_PREFIX):]: v for k, v in state_dict.items() if k.startswith(MODEL_PREFIX)}
        with torch.device("meta"):
            model = HybridModel(self.model_config)
        model.load_state_dict({k: v.detach().cpu() for k, v in weights.items()}, assign=True)
        save_model(model, folder, training={**self.training_meta, "global_step": global_step})
        return [WEIGHTS]

    def read_weights(self, folder: Path) -> dict[str, torch.Tensor]:
        """The Lightning ``state_dict`` stored by ``write_weights``."""
        return {MODEL_PREFIX + k: v for k, v in load_file(str(folder / WEIGHTS)).items()}

    def remove_checkpoint(self, path: Any) -> None:
        """Delete a checkpoint folder."""
        shutil.rmtree(path, ignore_errors=True)


def check_checkpoint(folder: Path) -> dict[str, Any]:
    """Validate a checkpoint folder (JSON parses, file sizes match, safetensors headers readable)."""
    try:
        doc = json.loads((folder / STATE_JSON).read_text())
        json.loads((folder / CONFIG).read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"{folder}: incomplete checkpoint ({Path(exc.filename).name} missing)") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{folder}: corrupt JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or "state" not in doc:
        raise ModelError(f"{folder}: not a genomod training checkpoint")
    for name, size in doc.get("file_sizes", {}).items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != size:
            raise ModelError(f"{folder}: {name} is truncated or missing")
        try:
            with safe_open(str(p), framework="pt") as fh:
                fh.keys()
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"{folder}: {name} is corrupt ({exc})") from None
    return doc


def checkpoint_step(folder: Path) -> int:
    """The optimizer step of a ``step_XXXXXXXX`` checkpoint folder."""
    return int(folder.name[5:])


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint folders ``step_*`` in ``ckpt_dir``, oldest first (temporary folders excluded)."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit()]
    return sorted(found, key=checkpoint_step)


def find_resume_checkpoint(ckpt_dir: Path) -> Path | None:
    """Newest valid checkpoint; corrupt newer ones are skipped with a logged warning."""
    for folder in reversed(list_checkpoints(ckpt_dir)):
        try:
            check_checkpoint(folder)
            return folder
        except ModelError as exc:
            log.warning("skipping corrupt checkpoint %s: %s; using the previous one", folder.name, exc)
    return None


def prune_checkpoints(ckpt_dir: Path, keep_last: int) -> None:
    """Keep only the newest ``keep_last`` checkpoint folders (and drop stale temporary folders)."""
    for folder in list_checkpoints(ckpt_dir)[:-keep_last]:
        shutil.rmtree(folder, ignore_errors=True)
    if ckpt_dir.is_dir():
        for tmp in ckpt_dir.glob(".step_*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
