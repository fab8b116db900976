"""LightningModule and data for fine-tuning: backbone (LoRA-wrapped, fully trainable or frozen) plus a head.

Sampling follows pretraining (``genomod.train.data``): sample ``i`` of a run is training row
``perm_epoch[i % N]`` of a seeded permutation per pass, and the loader starts at ``global_step * global batch``
(``StepSampler``), so a killed and resumed fit sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from genomod.finetuning.config import FinetuneTrainArgs
from genomod.finetuning.tasks import TaskData
from genomod.tokenizer import PAD_ID, reverse_complement
from genomod.train.data import ResumeLoader, StepSampler
from genomod.train.module import clamp_log_poles, decays, lr_factor, step_stats


class TaskRows(Dataset):
    """Items of a task by row: ``(tokens, y)`` (sequences) or ``(ref, alt, y)`` (variants).

    With ``seed`` set (training), item ``i`` is the row at position ``i % N`` of a seeded permutation of ``rows``
    for pass ``i // N``, and ``rc_augment`` reverse-complements a seeded half of the sequences.
    """

    def __init__(self, data: TaskData, rows: np.ndarray, seed: int | None = None, rc_augment: bool = False,
                 target_mean: float = 0.0, target_std: float = 1.0) -> None:
        self.data, self.rows = data, np.asarray(rows, dtype=np.int64)
        self.seed, self.rc_augment = seed, rc_augment
        self.mean, self.std = target_mean, target_std
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:
        return len(self.rows)

    def _row(self, index: int) -> tuple[int, bool]:
        if self.seed is None:
            return int(self.rows[index]), False
        epoch, pos = divmod(index, len(self.rows))
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 11]).permutation(len(self.rows))
            self._perm_epoch = epoch
        rc = self.rc_augment and np.random.default_rng([self.seed, index]).random() < 0.5
        return int(self.rows[self._perm[pos]]), bool(rc)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        row, rc = self._row(index)
        d = self.data
        if d.target == "regression":
            y = torch.tensor((float(d.y[row]) - self.mean) / self.std, dtype=torch.float32)
        else:
            y = torch.tensor(int(d.y[row]), dtype=torch.long)
        if d.ref_tokens is not None:
            return torch.from_numpy(d.ref_tokens[row]), torch.from_numpy(d.alt_tokens[row]), y
        tokens = d.tokens[row]
        if rc:
            tokens = np.ascontiguousarray(reverse_complement(tokens))
        return torch.from_numpy(tokens), y


def collate(items: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Stack variant items; right-pad sequence items with PAD and add a mask (causal: padding changes nothing)."""
    if len(items[0]) == 3:
        return tuple(torch.stack(x) for x in zip(*items))
    length = max(len(t) for t, _ in items)
    tokens = torch.full((len(items), length), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(items), length), dtype=torch.bool)
    for i, (t, _) in enumerate(items):
        tokens[i, : len(t)] = t
        mask[i, : len(t)] = True
    return tokens, mask, torch.stack([y for _, y in items])


class TaskDataModule(pl.LightningDataModule):
    """Training rows through ``StepSampler`` (exact resume, DDP-consistent); validation rows in order."""

    def __init__(self, train_set: TaskRows, val_set: TaskRows | None, micro_batch_size: int, grad_accum: int,
                 total_steps: int, num_workers: int = 0) -> None:
        super().__init__()
        self.train_set, self.val_set = train_set, val_set
        self.micro_batch_size, self.grad_accum, self.total_steps = micro_batch_size, grad_accum, total_steps
        self.num_workers = num_workers

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        start = self.trainer.global_step if self.trainer is not None else 0
        sampler = StepSampler(self.micro_batch_size, self.grad_accum, world, rank, self.total_steps, start)
        return ResumeLoader(self.train_set, batch_size=self.micro_batch_size, sampler=sampler, collate_fn=collate,
                            num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        sub = torch.utils.data.Subset(self.val_set, list(range(rank, len(self.val_set), world))) \
            if self.val_set is not None else []
        return DataLoader(sub, batch_size=self.micro_batch_size, collate_fn=collate, shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        step = self.trainer.global_step if self.trainer is not None else 0
        return {"global_step": int(step)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.restored_state = dict(state)


class FinetuneModule(pl.LightningModule):
    """Backbone + head; loss cross-entropy (classes) or MSE (standardised target); AdamW with warmup + cosine."""

    def __init__(self, model: nn.Module, head: nn.Module, target: str, mode: str, train_cfg: FinetuneTrainArgs,
                 total_steps: int, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model, self.head = model, head
        self.target, self.mode, self.total_steps = target, mode, total_steps
        self.cfg = dataclasses.replace(train_cfg)  # a copy of the ``train`` section
        self.strict_loading = False  # checkpoints hold the trainable tensors only; the rest is the base model
        if class_weights is not None:
            self.register_buffer("class_weights", class_weights.float(), persistent=False)
        else:
            self.class_weights = None
        if mode == "frozen":
            for p in self.model.parameters():
                p.requires_grad_(False)
        self.model.train(mode != "frozen")  # load_model gives eval mode; adapters' dropout needs train mode
        self.step_log: list[dict[str, float]] = []
        self._acc_loss: list[torch.Tensor] = []
        self._t0, self._rows_since = time.perf_counter(), 0
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.last_val: dict[str, float] = {}

    @property
    def backbone(self) -> nn.Module:
        """The HybridModel (inside the peft wrapper for LoRA)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def trainable_names(self) -> set[str]:
        """Lightning state-dict keys of the trainable tensors (what a checkpoint stores)."""
        return {n for n, p in self.named_parameters() if p.requires_grad}

    def forward(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Head outputs (B, n_out) for a collated batch (the last element, the labels, is ignored)."""
        inputs = batch[:-1]
        if self.mode == "frozen":
            with torch.no_grad():
                feats = self.head.features(self.backbone, *inputs)
        else:
            feats = self.head.features(self.backbone, *inputs)
        return self.head.classify(feats.float())

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.target == "regression":
            return F.mse_loss(out[:, 0].float(), y.float())
        return F.cross_entropy(out.float(), y, weight=self.class_weights)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch), batch[-1])
        self._acc_loss.append(loss.detach())
        self._rows_since += batch[-1].shape[0]
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Log the step's loss (mean over ranks), pre-clip grad norm, lr and rows/s."""
        step = self.trainer.global_step + 1
        loss, grad_norm = step_stats(self, self._acc_loss)
        self._acc_loss = []
        now = time.perf_counter()
        rps = self._rows_since * self.trainer.world_size / max(now - self._t0, 1e-9)
        self._t0, self._rows_since = now, 0
        row = {"step": step, "loss": float(loss), "lr": float(optimizer.param_groups[0]["lr"]),
               "grad_norm": float(grad_norm), "rows_per_s": rps}
        self.step_log.append(row)
        if step % int(self.cfg.log_interval) == 0 or step == self.total_steps:
            self.log_dict({f"train/{k}": v for k, v in row.items() if k != "step"}, rank_zero_only=True)
        self.log("loss", row["loss"], prog_bar=True, logger=False, rank_zero_only=True)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The update, then (full mode) the Hyena-LI log-pole clamp of pretraining, before any checkpoint."""
        super().optimizer_step(*args, **kwargs)
        bound = self.cfg.max_log_pole
        if self.mode == "full" and bound is not None:
            clamp_log_poles(self.backbone, float(bound))

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        out = self(batch)
        self._val.append((out.detach().float(), batch[-1]))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        out = torch.cat([o for o, _ in self._val])
        y = torch.cat([t for _, t in self._val])
        self._val = []
        loss = self.trainer.strategy.reduce(self.loss(out, y), reduce_op="mean")
        self.last_val = {"step": self.trainer.global_step, "val_loss": float(loss)}
        if self.target == "classification":
            acc = self.trainer.strategy.reduce((out.argmax(-1) == y).float().mean(), reduce_op="mean")
            self.last_val["val_accuracy"] = float(acc)
        self.log("val/loss", float(loss), prog_bar=True, rank_zero_only=True)

    def configure_optimizers(self) -> Any:
        """AdamW: backbone (lr) and head (head_lr), each split into decay / no-decay by parameter kind."""
        c = self.cfg
        groups = []
        for part, lr in ((self.model, float(c.lr)), (self.head, float(c.head_lr))):
            decay, no_decay = {}, {}
            for module in part.modules():
                for name, p in module.named_parameters(recurse=False):
                    if p.requires_grad:
                        (decay if decays(module, name) else no_decay)[id(p)] = p
            for key in set(decay) & set(no_decay):
                decay.pop(key)
            groups += [{"params": list(decay.values()), "weight_decay": float(c.weight_decay), "lr": lr},
                       {"params": list(no_decay.values()), "weight_decay": 0.0, "lr": lr}]
        groups = [g for g in groups if g["params"]]
        opt = torch.optim.AdamW(groups, lr=float(c.lr), betas=tuple(c.betas), eps=float(c.eps))
        warmup, total, ratio = int(c.warmup_steps), self.total_steps, float(c.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total, ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}


@torch.no_grad()
def predict(module: FinetuneModule, dataset: TaskRows, batch_size: int) -> np.ndarray:
    """Raw head outputs (N, n_out) for every item of ``dataset``, in order (eval mode, no gradient)."""
    module.eval()
    device = next(module.head.parameters()).device
    outs = []
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate, shuffle=False)
    for batch in loader:
        batch = tuple(t.to(device) for t in batch)
        outs.append(module(batch).float().cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, 1), dtype=np.float32)


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """'balanced' class weights n / (k * count) from training labels (as scikit-learn)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = len(y) / (n_classes * np.maximum(counts, 1.0))
    return torch.tensor(w, dtype=torch.float32)


def trainable_counts(module: FinetuneModule) -> dict[str, Any]:
    """Trainable and total parameters of backbone + head (LoRA adapters counted as trainable)."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    head = sum(p.numel() for p in module.head.parameters())
    return {"trainable": int(trainable), "total": int(total), "head": int(head),
            "trainable_fraction": trainable / total if total else math.nan}


__all__ = ["FinetuneModule", "TaskDataModule", "TaskRows", "class_weights", "collate", "predict",
           "trainable_counts"]
