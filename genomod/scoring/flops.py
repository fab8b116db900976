"""Forward FLOP counts of a ModelConfig, and the work per scored variant in exact and fast mode.

Conventions (one multiply-add = 2 FLOPs; element-wise work such as norms, gates, activations, softmax and
rotary embeddings is not counted):

- matrix products: ``2 x tokens x P`` with ``P`` the weights used in matrix products, counted on a
  meta-device model (every ``nn.Linear`` weight, plus the tied embedding used as unembedding);
- attention: ``4 x hidden x (keys seen)`` per query and attention layer (QK^T and AV), causal: the query
  at absolute position t sees t + 1 keys (``context`` cached tokens come first);
- convolutions, as the reference operators compute them: direct FIR ``2 x taps`` per channel and token
  (featurizer on 3 x hidden channels, Hyena-SE inner filter); FFT convolutions (Hyena-MR, Hyena-LI) of
  size n = 2 x length with a real FFT costing ``2.5 n log2 n``: rfft(u) + irfft per row and channel, the
  spectrum product (6 FLOPs per complex bin), and once per forward the filter's rfft (and for LI the
  modal filter, 4 FLOPs per mode and tap). With a cache, MR convolves the carried ``taps - 1`` inputs too
  and LI adds the carried modal state's output (2 FLOPs per mode and token); ``use_cache`` adds LI's
  state update (2 FLOPs per mode and token).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache

from genomod.model.config import ModelConfig


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward, by kind."""

    matmul: float
    attention: float
    conv: float

    @property
    def total(self) -> float:
        return self.matmul + self.attention + self.conv

    def __add__(self, other: FlopCount) -> FlopCount:
        return FlopCount(self.matmul + other.matmul, self.attention + other.attention, self.conv + other.conv)

    def scale(self, factor: float) -> FlopCount:
        return FlopCount(self.matmul * factor, self.attention * factor, self.conv * factor)

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


@lru_cache(maxsize=32)
def _matmul_params(config_json: str) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Per block the matrix-product weights, per block those of its input projection (Hyena ``projections``,
    attention ``Wqkv``: the part a block runs at every position even when only its last outputs are read),
    and the head's."""
    import torch.nn as nn

    from genomod.model.hybrid import build_model

    cfg = ModelConfig.from_dict(json.loads(config_json))
    model = build_model(cfg, meta=True)

    def linear(module: nn.Module) -> int:
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))

    blocks = tuple(linear(b) for b in model.blocks)
    inputs = tuple(linear(b.inner_mha_cls.Wqkv if b.kind == "MHA" else b.projections) for b in model.blocks)
    # tied: the embedding matrix is the unembedding's weight
    head = model.embedding_layer.weight.numel() if model.unembed is None else linear(model.unembed)
    return blocks, inputs, int(head)


def matmul_params(cfg: ModelConfig) -> int:
    """Weights used in matrix products per token, counted on a meta-device model (no memory used)."""
    blocks, _, head = _matmul_params(cfg.to_json())
    return sum(blocks) + head


def _rfft(n: int) -> float:
    return 2.5 * n * math.log2(n) if n > 1 else 0.0


def _fft_conv(channels: int, rows: int, length: int) -> float:
    """FFT convolution of ``rows`` x ``channels`` signals of ``length`` with per-channel filters."""
    n = 2 * length
    per_row = 2 * _rfft(n) + 6 * (n // 2 + 1)
    return channels * (rows * per_row + _rfft(n))


def forward_flops(
    cfg: ModelConfig, tokens: int, context: int = 0, batch: int = 1, use_cache: bool = False,
    layers: range | None = None, head: bool = True, outputs: int | None = None,
) -> FlopCount:
    """FLOPs of one forward over ``batch`` rows of ``tokens`` new tokens after ``context`` cached ones;
    ``layers`` (default all) and ``head`` (the unembedding) count part of the model (``HybridModel.run_blocks``);
    ``outputs``: the blocks compute their outputs at the last ``outputs`` positions only (``keep_last``)."""
    d, rows = cfg.hidden_size, batch
    layers = range(cfg.num_layers) if layers is None else layers
    out = tokens if outputs is None else outputs
    block_params, input_params, head_params = _matmul_params(cfg.to_json())
    per_row = sum(input_params[i] * tokens + (block_params[i] - input_params[i]) * out for i in layers)
    matmul = 2.0 * (per_row + (head_params * out if head else 0)) * rows
    attention = conv = 0.0
    ks, state = cfg.short_filter_length, cfg.li_state_size
    for kind in (cfg.layer_types[i] for i in layers):
        if kind == "MHA":  # the query at new position t (0-based) sees context + t + 1 keys; the last `out` queries
            keys = out * context + out * tokens - out * (out - 1) / 2
            attention += 4.0 * d * keys * rows
            continue
        conv += 2.0 * ks * 3 * d * tokens * rows
        if kind == "SE":
            conv += 2.0 * cfg.se_filter_length * d * tokens * rows
        elif kind == "MR":
            carried = cfg.mr_filter_length - 1 if context > 0 else 0
            conv += _fft_conv(d, rows, tokens + carried)
        else:
            conv += _fft_conv(d, rows, tokens) + 4.0 * d * state * tokens
            if context > 0:
                conv += 2.0 * d * state * tokens * rows
            if use_cache:
                conv += 2.0 * d * state * tokens * rows
    return FlopCount(matmul, attention, conv)


def prefill_flops(cfg: ModelConfig, tokens: int, batch: int = 1) -> FlopCount:
    """``HybridModel.prefill`` of ``batch`` rows of ``tokens``: each block's state over all its inputs, its outputs
    only where later blocks read them (``ModelConfig.trailing_outputs``), the head at the last position."""
    need = cfg.trailing_outputs(tokens)
    total, n_in = FlopCount(0.0, 0.0, 0.0), tokens
    for i, n in enumerate(need):
        total = total + forward_flops(cfg, n_in, batch=batch, use_cache=True, layers=range(i, i + 1), head=False,
                                      outputs=n if n < n_in else None)
        n_in = n
    _, _, head_params = _matmul_params(cfg.to_json())
    return total + FlopCount(2.0 * head_params * batch, 0.0, 0.0)


def exact_flops(cfg: ModelConfig, window: int, alts_per_site: float = 3.0, batch: int = 8) -> dict[str, FlopCount]:
    """Exact mode (prefix reuse, ``genomod.scoring.exact``) per variant.

    ``minimal``: one suffix forward (window - window // 2 tokens after the cached prefix), the issue's
    definition of the work a variant needs. ``executed``: what exact_deltas runs for SNVs, per variant: the
    prefix (``prefill_flops``) and the REF suffix forward, shared by the site's ALTs, and per ALT the first
    ``k`` blocks over ``span`` positions and the other blocks over the whole suffix (``local_split``).
    """
    from genomod.scoring.exact import local_split

    off = window // 2
    suffix = forward_flops(cfg, window - off, context=off, batch=batch).scale(1 / batch)
    prefix = prefill_flops(cfg, off, batch=batch).scale(1 / batch)
    k, span = local_split(cfg, window - off)
    alt = (forward_flops(cfg, span, context=off, batch=batch, layers=range(k), head=False)
           + forward_flops(cfg, window - off, context=off, batch=batch, layers=range(k, cfg.num_layers)))
    executed = (prefix + suffix + alt.scale(alts_per_site / batch)).scale(1 / alts_per_site)
    return {"minimal": suffix, "executed": executed}


def fast_flops(cfg: ModelConfig, window: int, rc: bool = False, batch: int = 8,
               variants_per_tile: float | None = None) -> FlopCount:
    """Fast mode per SNV: one forward of 2 x (window // 2) tokens per tile and strand, which scores
    ``variants_per_tile`` SNVs (default 3 x (window // 2), a dense scan; a sparse VCF scores fewer per tile)."""
    half = window // 2
    tile = forward_flops(cfg, 2 * half, batch=batch).scale(1 / batch)
    return tile.scale((2 if rc else 1) / (variants_per_tile or 3 * half))
