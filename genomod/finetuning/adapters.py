"""LoRA adapters through peft on a HybridModel: which Linear layers, wrap, merge, save and load.

Targets are the ``nn.Linear`` layers of the blocks, by group:

- ``projections``: ``blocks.K.projections`` (the Hyena q/k/v input projection),
- ``hyena_out``: ``blocks.K.out_filter_dense`` (the Hyena out-projection),
- ``mlp``: ``blocks.K.mlp.l1`` / ``l2`` / ``l3``,
- ``attention``: ``blocks.K.inner_mha_cls.Wqkv`` / ``out_proj``.

The tied embedding / unembedding, norms and the Hyena filters (``h``, ``D``, poles, residues, short filters)
are never wrapped. peft is imported only here, only when LoRA is used (it is slow to import).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch.nn as nn

from genomod.errors import ConfigError

TARGET_PATTERNS: dict[str, str] = {
    "projections": r"projections",
    "hyena_out": r"out_filter_dense",
    "mlp": r"mlp\.l[123]",
    "attention": r"inner_mha_cls\.(?:Wqkv|out_proj)",
}
ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"


def target_regex(groups: list[str]) -> str:
    """peft ``target_modules`` regex (full match on module names) for the given target groups."""
    bad = [g for g in groups if g not in TARGET_PATTERNS]
    if bad:
        raise ConfigError(f"lora.targets: unknown group(s) {bad}; use {', '.join(TARGET_PATTERNS)}")
    return r"blocks\.\d+\.(?:" + "|".join(TARGET_PATTERNS[g] for g in groups) + ")"


def target_modules(model: nn.Module, groups: list[str]) -> list[str]:
    """Names of the modules of ``model`` that LoRA wraps for ``groups`` (each an nn.Linear)."""
    rx = re.compile(target_regex(groups))
    return [n for n, m in model.named_modules() if rx.fullmatch(n) and isinstance(m, nn.Linear)]


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError("mode: lora needs peft (pip install 'genomod[finetune]' or pip install peft)") from None
    return peft


def wrap_lora(model: nn.Module, r: int, alpha: float, dropout: float, groups: list[str]) -> nn.Module:
    """A peft ``PeftModel`` around ``model`` with LoRA on the target groups; only adapters are trainable."""
    peft = _peft()
    if not target_modules(model, groups):
        raise ConfigError(f"lora.targets: no Linear layer of the model matches {groups}")
    cfg = peft.LoraConfig(r=int(r), lora_alpha=float(alpha), lora_dropout=float(dropout),
                          target_modules=target_regex(groups), bias="none")
    return peft.get_peft_model(model, cfg)


def lora_layers(model: nn.Module) -> list[str]:
    """Names (relative to the HybridModel) of the modules carrying LoRA adapters."""
    peft = _peft()
    names = []
    for n, m in model.named_modules():
        if isinstance(m, peft.tuners.lora.LoraLayer):
            names.append(n.removeprefix("base_model.model."))
    return names


def save_adapters(peft_model: nn.Module, folder: Path) -> list[str]:
    """peft's adapter files (safetensors + JSON) into ``folder``; returns their names."""
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    (folder / "README.md").unlink(missing_ok=True)  # peft's generic model card; the task card replaces it
    return [ADAPTER_WEIGHTS, ADAPTER_CONFIG]


def load_adapters(model: nn.Module, folder: Path) -> nn.Module:
    """Attach the adapters saved in ``folder`` to ``model`` (a PeftModel, inference mode)."""
    peft = _peft()
    return peft.PeftModel.from_pretrained(model, str(folder), is_trainable=False)


def merge(peft_model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights (peft ``merge_and_unload``); returns the plain HybridModel."""
    return peft_model.merge_and_unload()


__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "TARGET_PATTERNS", "load_adapters", "lora_layers", "merge",
           "save_adapters", "target_modules", "target_regex", "wrap_lora"]
