"""Pretraining with Lightning: ``run_pretraining(load_config(path, overrides))`` (scripts/pretrain.py, genomod train).

Outputs in ``output.dir``: ``checkpoints/step_*/`` (safetensors + JSON, resumable), ``train_log.jsonl`` (one row
per step and per validation), ``logs/`` (Lightning CSV, TensorBoard when installed), ``config.json`` (the
resolved config), ``summary.json`` and ``final/`` (a genomod checkpoint folder for ``genomod.load_model``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from genomod.train.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config", "make_trainer", "precision_name", "progress_callbacks", "run_pretraining",
           "uses_gpu"]

log = logging.getLogger("genomod.train")


def precision_name(precision: str, on_gpu: bool) -> str:
    """Lightning precision for a config value: auto = bf16-mixed on CUDA, 32-true on CPU."""
    if precision == "auto":
        return "bf16-mixed" if on_gpu else "32-true"
    return "32-true" if precision == "32" else precision


def _precision(cfg: TrainConfig, on_gpu: bool) -> str:
    return precision_name(cfg.train["precision"], on_gpu)


def uses_gpu(distributed: dict[str, Any]) -> bool:
    """Whether a ``distributed`` config section runs on CUDA (accelerator gpu/cuda, or auto with CUDA present)."""
    import torch

    acc = distributed["accelerator"]
    return acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())


def progress_callbacks(enabled: bool) -> list[Any]:
    """A rich progress bar (TQDM when rich is missing), or nothing."""
    if not enabled:
        return []
    if importlib.util.find_spec("rich") is not None:
        from lightning.pytorch.callbacks import RichProgressBar

        return [RichProgressBar()]
    from lightning.pytorch.callbacks import TQDMProgressBar

    return [TQDMProgressBar()]


def make_trainer(out: Path, distributed: dict[str, Any], precision: str, total_steps: int, grad_accum: int,
                 grad_clip: float, val_every_steps: int, run_validation: bool, callbacks: list[Any], ckpt_io: Any,
                 progress_bar: bool, tensorboard: bool, deterministic: bool) -> Any:
    """The Lightning Trainer of genomod runs (pretraining and fine-tuning): step-based, pickle-free checkpoints
    through ``ckpt_io``, DDP/FSDP from ``distributed`` (gloo on CPU), CSV (+ TensorBoard) logs in ``out``."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    on_gpu = uses_gpu(distributed)
    loggers: list[Any] = [CSVLogger(str(out), name="logs")]
    if tensorboard and importlib.util.find_spec("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out), name="tb"))
    strategy: Any = distributed["strategy"]
    if strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        strategy = FSDPStrategy(state_dict_type="full", checkpoint_io=ckpt_io)
    elif strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(checkpoint_io=ckpt_io, process_group_backend=None if on_gpu else "gloo")
    plugins = [] if not isinstance(strategy, str) else [ckpt_io]
    acc = distributed["accelerator"]
    return pl.Trainer(
        accelerator="gpu" if acc == "cuda" else acc, devices=distributed["devices"],
        num_nodes=int(distributed["num_nodes"]), strategy=strategy, plugins=plugins,
        precision=precision_name(precision, on_gpu), max_steps=total_steps, max_epochs=-1,
        accumulate_grad_batches=grad_accum, gradient_clip_val=float(grad_clip) or None,
        val_check_interval=min(val_every_steps, total_steps) * grad_accum, check_val_every_n_epoch=None,
        limit_val_batches=1.0 if run_validation else 0, num_sanity_val_steps=0,
        logger=loggers, callbacks=[*callbacks, *progress_callbacks(progress_bar)], enable_checkpointing=False,
        use_distributed_sampler=False, log_every_n_steps=1, enable_progress_bar=progress_bar,
        enable_model_summary=False, default_root_dir=str(out), deterministic=deterministic,
    )


def _trim_log(path: Path, upto_step: int) -> None:
    """Drop step-log rows after ``upto_step`` (they are recomputed by the resumed run)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= upto_step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    path.write_text("".join(k + "\n" for k in keep))


def run_pretraining(cfg: TrainConfig, extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train as configured (resuming when a checkpoint exists); return the summary dict (rank 0 writes it)."""
    import lightning.pytorch as pl
    import torch
    from safetensors.torch import load_file

    from genomod.checkpoint import CONFIG, WEIGHTS, resolve_checkpoint
    from genomod.errors import ConfigError
    from genomod.train.callbacks import RNGState, StepCheckpoint, StepLogWriter
    from genomod.train.checkpointing import SafeCheckpointIO, find_resume_checkpoint
    from genomod.train.data import ShardDataModule
    from genomod.train.module import PretrainModule

    t_start = time.time()
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    mcfg = cfg.model_config()
    total = cfg.total_steps()
    t, d, dist = cfg.train, cfg.data, cfg.distributed
    if t["deterministic"]:
        torch.use_deterministic_algorithms(True)
    pl.seed_everything(int(t["seed"]), workers=True, verbose=False)

    resume = cfg.checkpoint["resume"]
    ckpt_path: Path | None = None
    if resume == "auto":
        ckpt_path = find_resume_checkpoint(ckpt_dir)
    elif resume != "none":
        ckpt_path = Path(resume)
    init_weights = None
    if cfg.init_from and ckpt_path is None:
        init_weights = load_file(str(resolve_checkpoint(cfg.init_from) / WEIGHTS))

    module = PretrainModule(mcfg, t, total, init_weights)
    dm = ShardDataModule(d["shards"], int(d["window"]), int(t["micro_batch_size"]), int(t["grad_accum"]), total,
                         seed=int(t["seed"]), rc_augment=bool(d["rc_augment"]), num_workers=int(d["num_workers"]),
                         val_batches=int(d["val_batches"]), softmask_weight=float(d["softmask_weight"]))
    meta = {"config": cfg.to_dict(), "total_steps": total}
    ckpt_io = SafeCheckpointIO(mcfg, training_meta={"run": str(out), "total_steps": total})
    ckpt_cb = StepCheckpoint(ckpt_dir, int(cfg.checkpoint["interval"]), int(cfg.checkpoint["keep_last"]), total)
    step_log = out / "train_log.jsonl"
    callbacks: list[Any] = [ckpt_cb, StepLogWriter(step_log), RNGState(), *(extra_callbacks or [])]
    on_gpu = uses_gpu(dist)
    trainer = make_trainer(out, dist, t["precision"], total, int(t["grad_accum"]), float(t["grad_clip"]),
                           int(t["val_interval"]), int(d["val_batches"]) > 0, callbacks, ckpt_io,
                           bool(cfg.output["progress_bar"]), bool(cfg.output["tensorboard"]),
                           bool(t["deterministic"]))
    if trainer.world_size * int(t["micro_batch_size"]) * int(t["grad_accum"]) != cfg.global_batch():
        raise ConfigError(f"distributed.devices: resolved world size {trainer.world_size} differs from the "
                          f"configured {cfg.world_size()}")
    if trainer.is_global_zero:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        if ckpt_path is not None:
            log.info("resuming from %s", ckpt_path)
            _trim_log(step_log, int(ckpt_path.name[5:]))
        elif step_log.exists():
            step_log.unlink()
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path is not None else None)
    if ckpt_cb._saved_step != trainer.global_step:  # make sure the last step is checkpointed
        ckpt_cb.save(trainer, trainer.global_step)
    if int(d["val_batches"]) > 0 and module.last_val.get("step") != trainer.global_step:
        trainer.validate(module, datamodule=dm, verbose=False)
        if trainer.is_global_zero and module.last_val:
            with open(step_log, "a") as fh:
                fh.write(json.dumps(module.last_val) + "\n")

    summary: dict[str, Any] = {}
    if trainer.is_global_zero:
        final = out / "final"
        tmp = out / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        assert ckpt_cb.last_path is not None
        for name in (WEIGHTS, CONFIG):
            shutil.copy2(ckpt_cb.last_path / name, tmp / name)
        doc = json.loads((tmp / CONFIG).read_text())
        doc["training"] = {**doc.get("training", {}), **meta}
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        rows = [json.loads(x) for x in step_log.read_text().splitlines() if x.strip()] if step_log.exists() else []
        train_rows = {r["step"]: r for r in rows if "loss" in r}
        val_rows = [r for r in rows if "val_loss" in r]
        curve = [train_rows[s] for s in sorted(train_rows)]
        stride = max(1, len(curve) // 500)
        steps = trainer.global_step
        tps = [r["tokens_per_s"] for r in curve[1:]] or [0.0]
        summary = {
            "steps": steps, "tokens": steps * cfg.global_batch() * int(d["window"]),
            "wall_time_s": round(time.time() - t_start, 3),
            "device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
            "world_size": trainer.world_size, "precision": _precision(cfg, on_gpu),
            "parameters": module.model.num_parameters(), "global_batch": cfg.global_batch(),
            "window": int(d["window"]), "resumed_from": str(ckpt_path) if ckpt_path else None,
            "final_train_loss": curve[-1]["loss"] if curve else None,
            "final_val_loss": val_rows[-1]["val_loss"] if val_rows else None,
            "final_val_ppl": val_rows[-1]["val_ppl"] if val_rows else None,
            "median_tokens_per_s": sorted(tps)[len(tps) // 2],
            "final_model": str(final),
            "train_curve": [{"step": r["step"], "loss": r["loss"]} for r in curve[::stride]],
            "val_curve": val_rows,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
