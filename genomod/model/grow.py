"""Depth growth: start a deeper model from a trained one so that it computes the same function at step 0.

Each layer of the new model either copies a layer of the same kind from the trained model or is new; a new
layer keeps its fresh initialisation except that its residual outputs (the mixer's output projection and the
MLP's last linear) start at zero, so the block adds nothing until training moves them (function-preserving
growth, as in Net2Net's identity layers and progressive stacking).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from genomod.errors import ConfigError

# The parameters through which a block writes into the residual stream, per block class.
RESIDUAL_OUTPUTS = ("out_filter_dense.", "inner_mha_cls.out_proj.", "mlp.l3.")


def check_layer_map(layer_map: Sequence[int | None], new_types: Sequence[str], old_types: Sequence[str]) -> None:
    """Raise ConfigError unless ``layer_map`` gives each new layer a source layer of the same kind, or None."""
    if len(layer_map) != len(new_types):
        raise ConfigError(f"init_layers: {len(layer_map)} entries for a model of {len(new_types)} layers")
    for i, src in enumerate(layer_map):
        if src is None:
            continue
        if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < len(old_types):
            raise ConfigError(f"init_layers[{i}]: {src!r} is not a layer of the init_from model "
                              f"(0..{len(old_types) - 1}) or null")
        if old_types[src] != new_types[i]:
            raise ConfigError(f"init_layers[{i}]: layer {i} is {new_types[i]} but init_from layer {src} is "
                              f"{old_types[src]}")


def grow_depth(fresh: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor],
               layer_map: Sequence[int | None]) -> dict[str, torch.Tensor]:
    """The new model's state: ``blocks.i`` from ``source``'s ``blocks.layer_map[i]``, or ``fresh`` with zero
    residual outputs where ``layer_map[i]`` is None; every other tensor (embedding, final norm) from ``source``."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in fresh.items():
        if not name.startswith("blocks."):
            src_name = name
        else:
            _, idx, rest = name.split(".", 2)
            src = layer_map[int(idx)]
            if src is None:
                zero = rest.startswith(RESIDUAL_OUTPUTS)
                out[name] = torch.zeros_like(tensor) if zero else tensor.clone()
                continue
            src_name = f"blocks.{src}.{rest}"
        if src_name not in source:
            raise ConfigError(f"init_layers: the init_from checkpoint has no {src_name}")
        if source[src_name].shape != tensor.shape:
            raise ConfigError(f"init_layers: {src_name} has shape {tuple(source[src_name].shape)}, the new "
                              f"model's {name} {tuple(tensor.shape)}")
        out[name] = source[src_name].to(tensor.dtype).clone()
    return out
