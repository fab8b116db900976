"""The Lightning Trainer of genomod runs (pretraining and fine-tuning) and its precision / progress-bar choices."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from genomod.errors import ConfigError
from genomod.train.config import DistributedArgs


def precision_name(precision: str, on_gpu: bool) -> str:
    """Lightning precision for a config value: auto = bf16-mixed on CUDA, 32-true on CPU."""
    if precision == "auto":
        return "bf16-mixed" if on_gpu else "32-true"
    return "32-true" if precision == "32" else precision


def progress_callbacks(enabled: bool) -> list[Any]:
    """A rich progress bar (TQDM when rich is missing), or nothing."""
    if not enabled:
        return []
    if importlib.util.find_spec("rich") is not None:
        from lightning.pytorch.callbacks import RichProgressBar

        return [RichProgressBar()]
    from lightning.pytorch.callbacks import TQDMProgressBar

    return [TQDMProgressBar()]


def _strategy(distributed: DistributedArgs, ckpt_io: Any, on_gpu: bool) -> Any:
    """The strategy name, or an FSDP / DDP strategy object carrying the pickle-free ``ckpt_io``."""
    if distributed.strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        return FSDPStrategy(state_dict_type="full", checkpoint_io=ckpt_io)
    if distributed.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(checkpoint_io=ckpt_io, process_group_backend=None if on_gpu else "gloo")
    return distributed.strategy


def make_trainer(out: Path, distributed: DistributedArgs, precision: str, total_steps: int, grad_accum: int,
                 grad_clip: float, val_every_steps: int, run_validation: bool, callbacks: list[Any], ckpt_io: Any,
                 progress_bar: bool, tensorboard: bool, deterministic: bool) -> Any:
    """The Lightning Trainer of genomod runs (pretraining and fine-tuning): step-based, pickle-free checkpoints
    through ``ckpt_io``, DDP/FSDP from ``distributed`` (gloo on CPU), CSV (+ TensorBoard) logs in ``out``."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    on_gpu = distributed.uses_gpu()
    loggers: list[Any] = [CSVLogger(str(out), name="logs")]
    if tensorboard and importlib.util.find_spec("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out), name="tb"))
    strategy = _strategy(distributed, ckpt_io, on_gpu)
    plugins = [] if not isinstance(strategy, str) else [ckpt_io]
    acc = distributed.accelerator
    return pl.Trainer(
        accelerator="gpu" if acc == "cuda" else acc, devices=distributed.devices,
        num_nodes=int(distributed.num_nodes), strategy=strategy, plugins=plugins,
        precision=precision_name(precision, on_gpu), max_steps=total_steps, max_epochs=-1,
        accumulate_grad_batches=grad_accum, gradient_clip_val=float(grad_clip) or None,
        val_check_interval=min(val_every_steps, total_steps) * grad_accum, check_val_every_n_epoch=None,
        limit_val_batches=1.0 if run_validation else 0, num_sanity_val_steps=0,
        logger=loggers, callbacks=[*callbacks, *progress_callbacks(progress_bar)], enable_checkpointing=False,
        use_distributed_sampler=False, log_every_n_steps=1, enable_progress_bar=progress_bar,
        enable_model_summary=False, default_root_dir=str(out), deterministic=deterministic,
    )


def check_world_size(trainer: Any, distributed: DistributedArgs) -> None:
    """The Trainer resolved the configured number of processes (the global batch depends on it)."""
    if trainer.world_size != distributed.world_size():
        raise ConfigError(f"distributed.devices: resolved world size {trainer.world_size} differs from the "
                          f"configured {distributed.world_size()}")
