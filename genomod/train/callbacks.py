"""Training callbacks: periodic pickle-free checkpoints (keep last N), JSONL step log, RNG state capture."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Protocol

import lightning.pytorch as pl
import numpy as np
import torch

from genomod.train.checkpointing import prune_checkpoints


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint taken after optimizer step ``step``."""
    return f"step_{step:08d}"


class StepCheckpoint(pl.Callback):
    """Save a checkpoint every ``interval`` optimizer steps and at the last step; keep the newest ``keep_last``."""

    def __init__(self, ckpt_dir: Path, interval: int, keep_last: int, total_steps: int) -> None:
        self.ckpt_dir, self.interval, self.keep_last, self.total_steps = ckpt_dir, interval, keep_last, total_steps
        self.saved_step = -1  # the step of ``last_path``, the newest checkpoint this run wrote
        self.last_path: Path | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Checkpoint at step boundaries (all ranks call save_checkpoint; rank 0 writes)."""
        step = trainer.global_step
        if step == self.saved_step or step == 0:
            return
        if step % self.interval == 0 or step >= self.total_steps:
            self.save(trainer, step)

    def save(self, trainer: pl.Trainer, step: int) -> Path:
        """Write ``step_<step>`` now and prune old ones."""
        path = self.ckpt_dir / checkpoint_name(step)
        trainer.save_checkpoint(path)
        self.saved_step, self.last_path = step, path
        if trainer.is_global_zero:
            prune_checkpoints(self.ckpt_dir, self.keep_last)
        trainer.strategy.barrier("genomod-checkpoint")
        return path

    def save_last(self, trainer: pl.Trainer) -> Path:
        """Make sure the trainer's current step is checkpointed (after fit); returns its folder."""
        if self.saved_step != trainer.global_step or self.last_path is None:
            return self.save(trainer, trainer.global_step)
        return self.last_path


class RecordsSteps(Protocol):
    """What ``StepLogWriter`` reads from the LightningModule (PretrainModule, FinetuneModule)."""

    step_log: list[dict[str, float]]  # one row per optimizer step, appended in on_before_optimizer_step
    last_val: dict[str, float]  # the latest validation result ({} before the first)


class StepLogWriter(pl.Callback):
    """Append one JSON line per optimizer step (and per validation) to ``train_log.jsonl`` on rank 0.

    ``rows`` holds every row of the file in memory (those kept from before a resume, see ``start``), so that the
    run's summary needs not read the file back.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self._written = 0

    def start(self, resume_step: int | None) -> None:
        """Rank 0, before fit: keep the rows up to ``resume_step`` (later ones are recomputed) or, for a new run
        (None), drop an old log."""
        self.rows = []
        if resume_step is None or not self.path.is_file():
            self.path.unlink(missing_ok=True)
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("step", 0) <= resume_step:
                self.rows.append(row)
                kept.append(line + "\n")
        self.path.write_text("".join(kept))

    def write(self, trainer: pl.Trainer, row: dict[str, Any]) -> None:
        """Append ``row`` (rank 0 only)."""
        if trainer.is_global_zero:
            self.rows.append(row)
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: RecordsSteps, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Write the step rows the module recorded since the last call."""
        rows = pl_module.step_log
        for row in rows[self._written:]:
            self.write(trainer, row)
        self._written = len(rows)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: RecordsSteps) -> None:
        """Write the validation result."""
        if pl_module.last_val and not trainer.sanity_checking:
            self.write(trainer, dict(pl_module.last_val))


class RNGState(pl.Callback):
    """Save and restore torch / CUDA / Python / NumPy RNG states with the checkpoint.

    The states are restored when the checkpoint is loaded and once more at the first training batch after it:
    creating the resumed run's DataLoader iterator draws from the torch RNG (its base seed), which the
    uninterrupted run did long before, so random layers (dropout) would otherwise see other numbers.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Current RNG states (tensors are stored in safetensors by the CheckpointIO)."""
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                                 "numpy": np.random.get_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore RNG states (again at the next training batch, see the class docstring)."""
        self._pending = state_dict
        self._restore(state_dict)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Re-apply restored RNG states once, after the loader iterator was created."""
        if self._pending is not None:
            self._restore(self._pending)
            self._pending = None

    @staticmethod
    def _restore(state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        random.setstate(state_dict["python"])
        np.random.set_state(state_dict["numpy"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
