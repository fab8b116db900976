"""Weight averaging ("model soups", Wortsman et al. 2022) and a checkpoint's validation loss.

Runs continued from one checkpoint on different data or loss weights stay in one basin, so the mean of their
weights is a model too, often better than each on what they were trained for; ``validation_loss`` measures such
a model exactly as a training run measures itself (same windows, loss weights and autocast).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from genomod.checkpoint import load_model
from genomod.errors import ConfigError
from genomod.model import HybridModel
from genomod.train.config import TrainConfig
from genomod.train.data import ShardDataModule
from genomod.train.module import next_token_loss, split_batch
from genomod.train.trainer import precision_name


def average_checkpoints(paths: Sequence[str | os.PathLike], weights: Sequence[float] | None = None) -> HybridModel:
    """The weighted mean (default: uniform) of checkpoints of one architecture, as a float32 model.

    Every tensor is averaged, Hyena-LI log-poles included: a mean of non-positive log-poles stays non-positive,
    so the stability bound the runs trained under still holds."""
    if len(paths) < 2:
        raise ConfigError("average_checkpoints: give at least two checkpoints")
    w = [1.0 / len(paths)] * len(paths) if weights is None else [float(x) for x in weights]
    if len(w) != len(paths) or any(not math.isfinite(x) or x < 0 for x in w) or not math.isclose(sum(w), 1.0):
        raise ConfigError(f"average_checkpoints: weights must be {len(paths)} non-negative numbers summing to 1, "
                          f"got {list(weights or [])}")
    out = load_model(paths[0], dtype="float32")
    shape = {k: v for k, v in out.config.to_dict().items() if k not in ("name", "dtype")}
    acc = {k: v.detach().double() * w[0] for k, v in out.state_dict().items()}
    for p, wi in zip(paths[1:], w[1:], strict=True):
        member = load_model(p, dtype="float32")
        other = member.config.to_dict()
        diff = sorted(k for k in shape if other.get(k) != shape[k])
        if diff:
            raise ConfigError(f"average_checkpoints: {p} differs from {paths[0]} in {', '.join(diff)}")
        for k, v in member.state_dict().items():
            acc[k] += v.detach().double() * wi
    out.load_state_dict({k: v.float() for k, v in acc.items()})
    return out


@torch.no_grad()
def validation_loss(model: HybridModel, cfg: TrainConfig) -> float:
    """Mean loss over the run's validation windows (``cfg.data``: shards, window, val_batches, soft-mask weight;
    junction flanks weigh 1), under the autocast the run trained with: the number a run logs as val_loss."""
    data = cfg.data
    dm = ShardDataModule(data.shards, data.window, cfg.train.micro_batch_size, 1, 1, seed=cfg.train.seed,
                         rc_augment=data.rc_augment, val_batches=data.val_batches,
                         softmask_weight=data.softmask_weight)
    device = next(model.parameters()).device
    precision = precision_name(cfg.train.precision, device.type == "cuda")
    autocast = {"bf16-mixed": torch.bfloat16, "bf16-true": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    was_training = model.training
    model.eval()
    losses = []
    try:
        for batch in dm.val_dataloader():
            tokens, weights = split_batch(batch)
            tokens = tokens.to(device)
            weights = weights.to(device) if weights is not None else None
            with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                losses.append(next_token_loss(model(tokens).logits, tokens, weights).float())
    finally:
        model.train(was_training)
    if not losses:
        raise ConfigError(f"validation_loss: no validation windows in {data.shards}")
    return float(torch.stack(losses).mean())
