"""``genomod finetune merge``: fold LoRA adapters into the base weights, giving a plain genomod checkpoint."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from genomod.checkpoint import load_model, save_model
from genomod.errors import ConfigError, ModelError
from genomod.scoring.finetuned import FT_FILE, HEAD_FILE, read_finetune_card


def merge_adapters(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Merge the adapters of fine-tuned LoRA folder ``folder`` into its base model (peft ``merge_and_unload``).

    Writes ``model.safetensors`` + ``config.json`` (a checkpoint ``genomod.load_model`` reads) into ``out``
    (default: ``folder`` itself, beside the adapters); a separate ``out`` also gets the head and finetune.json, so
    that it stays a complete fine-tuned model for ``genomod score --model``. Returns the output folder.
    """
    from genomod.finetuning.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, load_adapters, merge
    from genomod.utils import file_digest

    src = Path(folder)
    card = read_finetune_card(src)
    if card is None:
        raise ConfigError(f"{src}: not a fine-tuned model folder (no {FT_FILE})")
    if card.get("mode") != "lora":
        raise ConfigError(f"{src}: mode {card.get('mode')!r} has no adapters to merge (only lora)")
    if not (src / ADAPTER_WEIGHTS).is_file():
        raise ModelError(f"{src}: {ADAPTER_WEIGHTS} missing")
    base = card["base"]
    from genomod.checkpoint import WEIGHTS, resolve_checkpoint

    base_path = resolve_checkpoint(base.get("resolved") or base["name"])
    if base.get("weights_sha256") and file_digest(base_path / WEIGHTS) != base["weights_sha256"]:
        raise ModelError(f"{src / FT_FILE}: base model {base_path} has other weights than the adapters were "
                         "trained on (sha256 differs)")
    model = load_model(base_path, device="cpu")
    dtype = model.config.dtype
    model.to_dtype("float32")
    merged = merge(load_adapters(model, src))
    dst = Path(out) if out is not None else src
    dst.mkdir(parents=True, exist_ok=True)
    save_model(merged, dst, training={"finetune": {k: card[k] for k in ("task", "mode", "base")},
                                      "merged_from": str(src)}, dtype=None if dtype == "float32" else dtype)
    if dst.resolve() != src.resolve():
        for name in (FT_FILE, HEAD_FILE, ADAPTER_WEIGHTS, ADAPTER_CONFIG):
            if (src / name).is_file():
                shutil.copy2(src / name, dst / name)
    return dst


__all__ = ["merge_adapters"]
