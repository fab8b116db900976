"""LightningModule for next-token pretraining of a HybridModel (AdamW, warmup + cosine, grad-norm logging)."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from genomod.errors import ConfigError
from genomod.model import HybridModel, ModelConfig, grow_depth
from genomod.train.config import TrainArgs


def split_batch(batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(tokens, per-base loss weights or None) of a shard batch: shards with a loss-weight track yield pairs."""
    return batch if isinstance(batch, (tuple, list)) else (batch, None)


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy (nats per nucleotide) of logits[:, :-1] against tokens[:, 1:].

    With per-base ``weights`` (B, L) the loss is the weighted mean over the predicted positions (weights[:, 1:]),
    so soft-masked repeats count less and N/separator targets not at all.
    """
    flat = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    target = tokens[:, 1:].reshape(-1)
    if weights is None:
        return F.cross_entropy(flat, target)
    w = weights[:, 1:].reshape(-1).float()
    return (F.cross_entropy(flat, target, reduction="none") * w).sum() / w.sum().clamp_min(1e-6)


def junction_aux_loss(logits: torch.Tensor, weights: torch.Tensor, junction_weight: float) -> torch.Tensor:
    """Binary cross-entropy of per-base junction logits (B, L, 1) against "this base lies in a splice-junction
    flank", read off the loss weights (B, L) as the bases weighted ``junction_weight``; N and separators (weight
    0) do not count."""
    w = weights.float()
    target = torch.isclose(w, torch.full_like(w, junction_weight)).float()
    valid = (w > 0).float()
    bce = F.binary_cross_entropy_with_logits(logits[..., 0].float(), target, reduction="none")
    return (bce * valid).sum() / valid.sum().clamp_min(1.0)


def decays(module: torch.nn.Module, name: str) -> bool:
    """Whether parameter ``name`` of ``module`` gets weight decay: weights of nn.Linear layers only, unless tagged
    ``_no_weight_decay`` (as mamba does); filters, poles, residues, norms, biases and embeddings never decay."""
    p = getattr(module, name)
    return isinstance(module, torch.nn.Linear) and name == "weight" and not getattr(p, "_no_weight_decay", False)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups chosen by parameter kind (``decays``), not by name; tied parameters are listed once."""
    decay: dict[int, torch.nn.Parameter] = {}
    no_decay: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                (decay if decays(module, name) else no_decay)[id(p)] = p
    for key in set(decay) & set(no_decay):  # a tensor shared with a non-Linear owner (tied embedding): no decay
        decay.pop(key)
    return [{"params": list(decay.values()), "weight_decay": weight_decay},
            {"params": list(no_decay.values()), "weight_decay": 0.0}]


def step_stats(module: pl.LightningModule, losses: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss of a step's micro-batches and the pre-clip gradient norm, each averaged over ranks
    (call in ``on_before_optimizer_step``, when every micro-batch's gradient is in)."""
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    grad_norm = torch.stack(norms).norm() if norms else torch.zeros((), device=module.device)
    loss = torch.stack(losses).mean() if losses else torch.zeros((), device=module.device)
    reduce = module.trainer.strategy.reduce
    return reduce(loss, reduce_op="mean"), reduce(grad_norm, reduce_op="mean")


@torch.no_grad()
def clamp_log_poles(model: torch.nn.Module, bound: float = 0.0) -> int:
    """Clamp every Hyena-LI ``log_poles`` parameter to <= ``bound`` in place; returns how many values moved."""
    moved = 0
    for name, p in model.named_parameters():
        if name.endswith("log_poles"):
            moved += int((p > bound).sum())
            p.clamp_(max=bound)
    return moved


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1 over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class PretrainModule(pl.LightningModule):
    """Next-token pretraining of ``HybridModel``; logs loss, ppl, lr, grad norm, tokens/s per optimizer step."""

    def __init__(self, model_config: ModelConfig, args: TrainArgs, total_steps: int,
                 init_weights: dict[str, torch.Tensor] | None = None,
                 init_layers: list[int | None] | None = None,
                 junction_aux: tuple[float, float] = (1.0, 0.0)) -> None:
        super().__init__()
        self.model_config, self.train_args, self.total_steps = model_config, args, total_steps
        self.model = HybridModel(model_config)
        if init_weights is not None:
            if init_layers is not None:  # depth growth: copied layers + new layers that start as identities
                init_weights = grow_depth(self.model.state_dict(), init_weights, init_layers)
            self.model.load_state_dict(init_weights)
        if args.max_log_pole is not None:
            clamp_log_poles(self.model, float(args.max_log_pole))
        self.model.set_activation_checkpointing(args.activation_checkpointing)
        # (junction loss weight, auxiliary weight): with the latter > 0, a training-only junction-flank head
        self.junction_weight, self.junction_aux_weight = float(junction_aux[0]), float(junction_aux[1])
        self.junction_head = None
        if self.junction_aux_weight > 0:  # zero init: the auxiliary loss starts at ln 2 and adds no gradient at step 0
            self.junction_head = torch.nn.Linear(model_config.hidden_size, 1)
            torch.nn.init.zeros_(self.junction_head.weight)
            torch.nn.init.zeros_(self.junction_head.bias)
        self._acc_loss: list[torch.Tensor] = []
        self._acc_aux: list[torch.Tensor] = []
        self._t0 = time.perf_counter()
        self._tokens_since = 0
        self.step_log: list[dict[str, float]] = []
        self._val_losses: list[torch.Tensor] = []
        self.last_val: dict[str, float] = {}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, vocab) for ``tokens``."""
        return self.model(tokens).logits

    def training_step(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One micro-batch: next-token cross-entropy (weighted per base when the shards carry loss weights)."""
        tokens, weights = split_batch(batch)
        if self.junction_head is not None and weights is None:
            raise ConfigError("data.junction_aux_weight: the shards carry no softmask track, so no junction flanks "
                              "(build them with data_prep.make_mixture and junction_flank)")
        if self.junction_head is None:
            loss = total = next_token_loss(self(tokens), tokens, weights)
        else:
            m = self.model  # the same computation as ``self(tokens)``, keeping the last block's output for the head
            hidden, _ = m.run_blocks(m.embedding_layer(tokens), [{} for _ in m.blocks])
            loss = next_token_loss(m.head(hidden), tokens, weights)
            # the residual stream's scale grows with depth and training (RMS in the hundreds): the head reads it at
            # unit RMS
            h = hidden.float()
            aux = junction_aux_loss(self.junction_head(h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)),
                                    weights, self.junction_weight)
            self._acc_aux.append(aux.detach())
            total = loss + self.junction_aux_weight * aux
        self._acc_loss.append(loss.detach())
        self._tokens_since += tokens.numel()
        return total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """All micro-batches of the step are done: log loss (mean over ranks), pre-clip grad norm, lr, tokens/s."""
        step = self.trainer.global_step + 1  # the step this update completes (1-based)
        loss, grad_norm = step_stats(self, self._acc_loss)
        self._acc_loss = []
        now = time.perf_counter()
        tps = self._tokens_since * self.trainer.world_size / max(now - self._t0, 1e-9)
        self._t0, self._tokens_since = now, 0
        row = {"step": step, "loss": float(loss), "ppl": math.exp(min(float(loss), 50.0)),
               "lr": float(optimizer.param_groups[0]["lr"]), "grad_norm": float(grad_norm), "tokens_per_s": tps}
        if self._acc_aux:  # the junction-flank head's loss (not part of "loss", which stays next-token only)
            row["junction_aux_loss"] = float(self.trainer.strategy.reduce(torch.stack(self._acc_aux).mean(),
                                                                          reduce_op="mean"))
            self._acc_aux = []
        if loss.is_cuda:
            row["gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        self.step_log.append(row)
        log_now = step % self.train_args.log_interval == 0 or step == self.total_steps
        if log_now:
            self.log_dict({f"train/{k}": v for k, v in row.items() if k != "step"}, rank_zero_only=True)
        self.log("loss", row["loss"], prog_bar=True, logger=False, rank_zero_only=True)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The update, then keep Hyena-LI filters stable: project log-poles onto <= ``max_log_pole``, so that a
        modal filter never grows with distance (one-pass and cached/chunked forwards then agree at any length).
        Done here, not in ``on_train_batch_end``, so that a checkpoint taken after the step holds clamped weights."""
        super().optimizer_step(*args, **kwargs)
        bound = self.train_args.max_log_pole
        if bound is not None:
            clamp_log_poles(self.model, float(bound))

    def validation_step(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Validation micro-batch loss (weighted like training)."""
        tokens, weights = split_batch(batch)
        self._val_losses.append(next_token_loss(self(tokens), tokens, weights).detach())

    def on_validation_epoch_end(self) -> None:
        """Mean validation loss (all ranks) and per-nucleotide perplexity."""
        if not self._val_losses:
            return
        loss = self.trainer.strategy.reduce(torch.stack(self._val_losses).mean(), reduce_op="mean")
        self._val_losses = []
        self.last_val = {"step": self.trainer.global_step, "val_loss": float(loss),
                         "val_ppl": math.exp(min(float(loss), 50.0))}
        self.log("val/loss", float(loss), prog_bar=True, rank_zero_only=True)
        self.log("val/ppl", self.last_val["val_ppl"], rank_zero_only=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The junction head is not part of the exported model: its weights travel with the trainer state."""
        if self.junction_head is not None:
            checkpoint["junction_head"] = {k: v for k, v in checkpoint["state_dict"].items()
                                           if k.startswith("junction_head.")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the junction head's weights back beside the model's (before Lightning loads the state dict)."""
        head = checkpoint.pop("junction_head", None)
        if self.junction_head is not None:
            if head is None:
                raise ConfigError("data.junction_aux_weight: the checkpoint to resume has no junction head "
                                  "(it was trained without one)")
            checkpoint["state_dict"].update(head)

    def configure_optimizers(self) -> Any:
        """AdamW with warmup + cosine, stepped every optimizer step."""
        a = self.train_args
        opt = torch.optim.AdamW(param_groups(self, float(a.weight_decay)), lr=float(a.lr),
                                betas=(float(a.betas[0]), float(a.betas[1])), eps=float(a.eps))
        warmup, total, ratio = int(a.warmup_steps), self.total_steps, float(a.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total, ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
