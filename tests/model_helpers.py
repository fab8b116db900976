"""Shared test helpers: tiny random models for scoring tests (kept tiny: 2 shared CPU cores)."""

from __future__ import annotations

import torch

from genomod.model import HybridModel, ModelConfig, build_model


def tiny_test_config(layer_types: tuple[str, ...] = ("SE", "MR", "LI", "MHA"), name: str = "tinytest") -> ModelConfig:
    """A 32-wide model with every operator kind and a short MR filter."""
    return ModelConfig.preset(
        "tiny", hidden_size=32, inner_mlp_size=64, li_filter_groups=32, se_filter_groups=4, mr_filter_groups=4,
        num_attention_heads=2, layer_types=list(layer_types), mr_filter_length=16, name=name,
    )


def tiny_test_model(seed: int = 0, **kw) -> HybridModel:
    """A seeded random ``tiny_test_config`` model in eval mode."""
    torch.manual_seed(seed)
    return build_model(tiny_test_config(**kw)).eval()
