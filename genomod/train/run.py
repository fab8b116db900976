"""A pretraining run in three steps: ``build`` (model, data, trainer, callbacks), ``fit``, ``finalize``
(``final/`` export and ``summary.json``); ``run_pretraining`` does all three."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genomod.errors import ConfigError
from genomod.model import ModelConfig
from genomod.train.callbacks import StepCheckpoint, StepLogWriter
from genomod.train.config import TrainConfig
from genomod.utils import atomic_dir, write_json

log = logging.getLogger("genomod.train")


@dataclass
class PretrainRun:
    """What ``build`` makes and ``fit`` / ``finalize`` use."""

    cfg: TrainConfig
    model_config: ModelConfig
    total_steps: int
    module: Any  # PretrainModule
    data: Any  # ShardDataModule
    trainer: Any  # lightning.pytorch.Trainer
    checkpoints: StepCheckpoint
    step_log: StepLogWriter
    resume_from: Path | None
    started: float  # time.time() at build


def check_inputs(cfg: TrainConfig) -> ModelConfig:
    """The checks that read files (shards, resume folder, init_from checkpoint); returns the model config."""
    from genomod.train.data import check_shards

    check_shards(cfg.data.shards, cfg.data.window)
    resume = cfg.checkpoint.resume
    if resume not in ("auto", "none") and not Path(resume).is_dir():
        raise ConfigError(f"checkpoint.resume: {resume}: not a checkpoint folder")
    mcfg = cfg.model_config()
    cfg.check_window(mcfg)
    if cfg.init_layers is not None:
        from genomod.checkpoint import read_checkpoint_config, resolve_checkpoint
        from genomod.model.grow import check_layer_map

        old = read_checkpoint_config(resolve_checkpoint(str(cfg.init_from)))["model"]["layer_types"]
        check_layer_map(cfg.init_layers, mcfg.layer_types, old)
    return mcfg


def resume_checkpoint(cfg: TrainConfig) -> Path | None:
    """The checkpoint to resume from: newest valid in OUT/checkpoints (auto), none, or the given folder."""
    from genomod.train.checkpointing import find_resume_checkpoint

    resume = cfg.checkpoint.resume
    if resume == "auto":
        return find_resume_checkpoint(cfg.out_dir / "checkpoints")
    return None if resume == "none" else Path(resume)


def build(cfg: TrainConfig, extra_callbacks: list[Any] | None = None) -> PretrainRun:
    """Check the inputs, seed, and build module, data, callbacks and trainer; rank 0 writes ``config.json``."""
    import lightning.pytorch as pl
    import torch

    from genomod.train.callbacks import RNGState
    from genomod.train.checkpointing import SafeCheckpointIO, checkpoint_step
    from genomod.train.data import ShardDataModule
    from genomod.train.module import PretrainModule
    from genomod.train.trainer import check_world_size, make_trainer

    started = time.time()
    mcfg = check_inputs(cfg)
    out, t, d = cfg.out_dir, cfg.train, cfg.data
    out.mkdir(parents=True, exist_ok=True)
    total = cfg.total_steps()
    if t.deterministic:
        torch.use_deterministic_algorithms(True)
    pl.seed_everything(t.seed, workers=True, verbose=False)
    ckpt_path = resume_checkpoint(cfg)
    module = PretrainModule(mcfg, t, total, _init_weights(cfg) if ckpt_path is None else None, cfg.init_layers,
                            junction_aux=(d.junction_weight, d.junction_aux_weight))
    dm = ShardDataModule(d.shards, d.window, t.micro_batch_size, t.grad_accum, total, seed=t.seed,
                         rc_augment=d.rc_augment, num_workers=d.num_workers, val_batches=d.val_batches,
                         softmask_weight=d.softmask_weight, junction_weight=d.junction_weight)
    ckpt_io = SafeCheckpointIO(mcfg, training_meta={"run": str(out), "total_steps": total})
    ckpt_cb = StepCheckpoint(out / "checkpoints", cfg.checkpoint.interval, cfg.checkpoint.keep_last, total)
    log_cb = StepLogWriter(out / "train_log.jsonl")
    trainer = make_trainer(out, cfg.distributed, t.precision, total, t.grad_accum, t.grad_clip, t.val_interval,
                           d.val_batches > 0, [ckpt_cb, log_cb, RNGState(), *(extra_callbacks or [])], ckpt_io,
                           cfg.output.progress_bar, cfg.output.tensorboard, t.deterministic)
    check_world_size(trainer, cfg.distributed)
    if trainer.is_global_zero:
        write_json(out / "config.json", cfg.to_dict(), default=None)
        if ckpt_path is not None:
            log.info("resuming from %s", ckpt_path)
        log_cb.start(checkpoint_step(ckpt_path) if ckpt_path is not None else None)
    return PretrainRun(cfg, mcfg, total, module, dm, trainer, ckpt_cb, log_cb, ckpt_path, started)


def _init_weights(cfg: TrainConfig) -> dict[str, Any] | None:
    """The ``init_from`` checkpoint's weights (None without init_from)."""
    if not cfg.init_from:
        return None
    from safetensors.torch import load_file

    from genomod.checkpoint import WEIGHTS, resolve_checkpoint

    return load_file(str(resolve_checkpoint(cfg.init_from) / WEIGHTS))


def fit(run: PretrainRun) -> None:
    """Train to the last step, checkpoint it, and validate it unless the last validation was at that step."""
    trainer, module = run.trainer, run.module
    ckpt = run.resume_from
    trainer.fit(module, datamodule=run.data, ckpt_path=str(ckpt) if ckpt is not None else None)
    run.checkpoints.save_last(trainer)
    if run.cfg.data.val_batches > 0 and module.last_val.get("step") != trainer.global_step:
        trainer.validate(module, datamodule=run.data, verbose=False)  # the step log writes its row


def export_final(checkpoint: Path, final: Path, meta: dict[str, Any]) -> None:
    """Copy a training checkpoint's model into ``final`` (a genomod checkpoint folder; ``meta`` added to its
    ``training`` metadata), replacing ``final`` atomically."""
    from genomod.checkpoint import CONFIG, WEIGHTS

    with atomic_dir(final) as tmp:
        for name in (WEIGHTS, CONFIG):
            shutil.copy2(checkpoint / name, tmp / name)
        doc = json.loads((tmp / CONFIG).read_text())
        doc["training"] = {**doc.get("training", {}), **meta}
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2) + "\n")


def summarize(run: PretrainRun, final: Path) -> dict[str, Any]:
    """``summary.json`` of a finished run, from the step log rows kept in memory."""
    import torch

    from genomod.train.trainer import precision_name

    cfg, trainer = run.cfg, run.trainer
    train_rows = {r["step"]: r for r in run.step_log.rows if "loss" in r}
    val_rows = [r for r in run.step_log.rows if "val_loss" in r]
    curve = [train_rows[s] for s in sorted(train_rows)]
    stride = max(1, len(curve) // 500)
    steps = trainer.global_step
    tps = [r["tokens_per_s"] for r in curve[1:]] or [0.0]
    on_gpu = cfg.distributed.uses_gpu()
    return {
        "steps": steps, "tokens": steps * cfg.global_batch() * cfg.data.window,
        "wall_time_s": round(time.time() - run.started, 3),
        "device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
        "world_size": trainer.world_size, "precision": precision_name(cfg.train.precision, on_gpu),
        "parameters": run.module.model.num_parameters(), "global_batch": cfg.global_batch(),
        "window": cfg.data.window, "resumed_from": str(run.resume_from) if run.resume_from else None,
        "final_train_loss": curve[-1]["loss"] if curve else None,
        "final_val_loss": val_rows[-1]["val_loss"] if val_rows else None,
        "final_val_ppl": val_rows[-1]["val_ppl"] if val_rows else None,
        "median_tokens_per_s": sorted(tps)[len(tps) // 2],
        "final_model": str(final),
        "train_curve": [{"step": r["step"], "loss": r["loss"]} for r in curve[::stride]],
        "val_curve": val_rows,
    }


def finalize(run: PretrainRun) -> dict[str, Any]:
    """Rank 0: export ``final/`` from the last checkpoint and write ``summary.json``; returns the summary
    ({} on other ranks)."""
    if not run.trainer.is_global_zero:
        return {}
    out = run.cfg.out_dir
    assert run.checkpoints.last_path is not None
    export_final(run.checkpoints.last_path, out / "final",
                 {"config": run.cfg.to_dict(), "total_steps": run.total_steps})
    summary = summarize(run, out / "final")
    write_json(out / "summary.json", summary, default=None)
    return summary


def run_pretraining(cfg: TrainConfig, extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train as configured (resuming when a checkpoint exists); return the summary dict (rank 0 writes it)."""
    run = build(cfg, extra_callbacks)
    fit(run)
    return finalize(run)
