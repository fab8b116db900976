"""Pretraining with Lightning: ``run_pretraining(load_config(path, overrides))`` (``genomod train``, scripts/pretrain.py).

Where things are: ``config`` (the typed config and the shared config helpers), ``data`` (HDF5 shards, sampling),
``module`` (the LightningModule: loss, optimizer, schedule), ``callbacks`` (step checkpoints, step log, RNG
state), ``checkpointing`` (pickle-free checkpoint folders), ``trainer`` (the Lightning Trainer, also used by
fine-tuning), ``run`` (build / fit / finalize of a run) and ``soup`` (weight averaging of runs, a checkpoint's
validation loss; scripts/soup.py).

Outputs in ``output.dir``: ``checkpoints/step_*/`` (safetensors + JSON, resumable), ``train_log.jsonl`` (one row
per step and per validation), ``logs/`` (Lightning CSV, TensorBoard when installed), ``config.json`` (the
resolved config), ``summary.json`` and ``final/`` (a genomod checkpoint folder for ``genomod.load_model``).
"""

from __future__ import annotations

from genomod.train.config import TrainConfig, load_config
from genomod.train.run import build, check_inputs, finalize, fit, run_pretraining
from genomod.train.soup import average_checkpoints, validation_loss
from genomod.train.trainer import make_trainer, precision_name, progress_callbacks

__all__ = ["TrainConfig", "average_checkpoints", "build", "check_inputs", "finalize", "fit", "load_config",
           "make_trainer", "precision_name", "progress_callbacks", "run_pretraining", "validation_loss"]
