"""Model size and cost from a config: parameters are counted on the meta-device model, so no hand-kept
formula has to follow the model's shapes."""

from __future__ import annotations

import functools
import json
import math

from genomod.model.config import ModelConfig
from genomod.model.hybrid import build_model


@functools.lru_cache(maxsize=64)
def _count(config_json: str) -> int:
    return build_model(ModelConfig.from_dict(json.loads(config_json)), meta=True).num_parameters()


def count_parameters(cfg: ModelConfig) -> int:
    """Parameters of the model built from ``cfg`` (meta device: no memory, no initialisation cost)."""
    return _count(cfg.to_json())


def flops_per_token(cfg: ModelConfig, seqlen: int) -> float:
    """Approximate training FLOPs per token (forward + backward = 3x forward) for MFU reporting."""
    d = cfg.hidden_size
    dense = 2 * (count_parameters(cfg) - cfg.vocab_size * d) + 2 * cfg.vocab_size * d
    extra = 0.0
    for kind in cfg.layer_types:
        if kind == "MHA":
            extra += 2 * 2 * seqlen * d  # QK^T and AV, causal average ~ L/2 each, times 2 flops
        elif kind == "SE":
            extra += 2 * d * (cfg.se_filter_length + 3 * cfg.short_filter_length)
        elif kind == "MR":
            extra += 2 * d * (cfg.mr_filter_length + 3 * cfg.short_filter_length)
        else:
            extra += d * (10 * math.log2(max(2 * seqlen, 2)) + 6 * cfg.short_filter_length)
    return 3.0 * (dense + extra)
