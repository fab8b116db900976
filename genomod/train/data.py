"""Training data from HDF5 shards: lazy, worker-safe h5py reads and sampling fixed by (seed, sample index).

Sample ``i`` of the run (counting across steps, accumulation micro-batches and ranks) is always the same
window: row ``perm_epoch[i % N]`` (a seeded permutation per pass over the rows), crop offset and strand from
``numpy.random.default_rng([seed, i])``. The sampler starts at ``global_step * global_batch``, so a resumed
run reads exactly the samples an uninterrupted run would. Sample layout per optimizer step ``s``: index
``s * G + a * (M * W) + r * M + j`` for accumulation micro-batch ``a``, rank ``r``, row ``j`` (G = global
batch, M = micro batch, W = world size): the union over ranks and micro-batches of one step is always the
same ``G`` samples, whatever the split, which makes DDP and single-process runs comparable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from genomod.errors import ConfigError
from genomod.tokenizer import TRACK_JUNCTION, reverse_complement


def check_shards(shards: list[str], window: int) -> None:
    """Each shard folder has readable ``train.h5`` and ``val.h5`` with stored windows of >= ``window`` tokens;
    ConfigError naming ``data.shards`` or ``data.window`` otherwise."""
    for s in shards:
        for split in ("train.h5", "val.h5"):
            if not (Path(s) / split).is_file():
                raise ConfigError(f"data.shards: {s}: no {split} (make shards with python -m data_prep.make_shards)")
    for s in shards:
        for split in ("train.h5", "val.h5"):
            _check_tokens(Path(s) / split, window)


def _check_tokens(path: Path, window: int) -> None:
    try:
        with h5py.File(path, "r") as h5:
            if "tokens" not in h5:
                raise ConfigError(f"data.shards: {path}: no 'tokens' dataset")
            shape = h5["tokens"].shape
    except OSError as exc:
        raise ConfigError(f"data.shards: {path}: unreadable HDF5 ({exc})") from None
    if len(shape) != 2 or (path.name == "train.h5" and shape[0] == 0):
        raise ConfigError(f"data.shards: {path}: empty or malformed tokens {shape}")
    if shape[1] < window:
        raise ConfigError(f"data.window: {window} is longer than the stored windows ({shape[1]}) in {path}")


class ShardWindows(Dataset):
    """Windows of one split (``train``/``val``) over one or more shard folders; h5 files opened lazily.

    Items are token tensors, or ``(tokens, loss_weights)`` when every shard carries a ``softmask`` track
    (data_prep.make_mixture): weight 1 for A/C/G/T, ``softmask_weight`` for soft-masked bases, ``junction_weight``
    for bases the mixture marked as splice-junction flanks (track value 2), 0 for N and the EOD separators between
    packed records. Reverse-complement augmentation flips the weights with the tokens.
    """

    def __init__(self, shard_dirs: list[str], split: str, window: int, seed: int = 0,
                 rc_augment: bool = False, random_crop: bool = True, softmask_weight: float = 0.1,
                 junction_weight: float = 1.0) -> None:
        self.paths = [str(Path(d) / f"{split}.h5") for d in shard_dirs]
        self.window, self.seed, self.rc_augment, self.random_crop = window, seed, rc_augment, random_crop
        self.softmask_weight, self.junction_weight = float(softmask_weight), float(junction_weight)
        counts, widths, masked = [], [], []
        for p in self.paths:  # read shapes only; the handle is closed before any worker forks
            with h5py.File(p, "r") as h5:
                counts.append(h5["tokens"].shape[0])
                widths.append(h5["tokens"].shape[1])
                masked.append("softmask" in h5)
        self.weighted = bool(masked) and all(masked)
        self.counts, self.widths = counts, widths
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.num_rows = int(self.offsets[-1])
        self._files: list[h5py.File] | None = None
        self._pid: int | None = None
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def __len__(self) -> int:
        return self.num_rows

    def _handles(self) -> list[h5py.File]:
        if self._files is None or self._pid != os.getpid():  # never reuse a handle across a fork
            self._files = [h5py.File(p, "r") for p in self.paths]
            self._pid = os.getpid()
        return self._files

    def close(self) -> None:
        """Close the open h5 handles of this process (reopened on next access)."""
        if self._files is not None and self._pid == os.getpid():
            for f in self._files:
                f.close()
        self._files = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = None, None
        return state

    def row_tokens(self, row: int, start: int, track: str = "tokens") -> np.ndarray:
        """Tokens (or another per-base track) ``[start, start + window)`` of global row ``row``."""
        f = int(np.searchsorted(self.offsets, row, side="right") - 1)
        local = row - int(self.offsets[f])
        return np.asarray(self._handles()[f][track][local, start : start + self.window], dtype=np.int64)

    def _item(self, row: int, start: int, rc: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        tokens = self.row_tokens(row, start)
        weights = None
        if self.weighted:
            weights = loss_weights(tokens, self.row_tokens(row, start, "softmask"), self.softmask_weight,
                                   self.junction_weight)
        if rc:
            tokens = np.ascontiguousarray(reverse_complement(tokens))
            weights = None if weights is None else np.ascontiguousarray(weights[::-1])
        if weights is None:
            return torch.from_numpy(tokens)
        return torch.from_numpy(tokens), torch.from_numpy(weights)

    def _row_for(self, index: int) -> int:
        epoch, pos = divmod(index, self.num_rows)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 7]).permutation(self.num_rows)
            self._perm_epoch = epoch
        assert self._perm is not None
        return int(self._perm[pos])

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not self.random_crop:  # validation: row ``index``, centred crop, forward strand
            row = index % self.num_rows
            f = int(np.searchsorted(self.offsets, row, side="right") - 1)
            return self._item(row, (self.widths[f] - self.window) // 2, rc=False)
        row = self._row_for(index)
        f = int(np.searchsorted(self.offsets, row, side="right") - 1)
        rng = np.random.default_rng([self.seed, index])
        start = int(rng.integers(0, self.widths[f] - self.window + 1))
        return self._item(row, start, rc=bool(self.rc_augment and rng.random() < 0.5))


_IS_BASE = np.zeros(256, dtype=bool)
_IS_BASE[np.frombuffer(b"ACGT", dtype=np.uint8)] = True


def loss_weights(tokens: np.ndarray, softmask: np.ndarray, softmask_weight: float,
                 junction_weight: float = 1.0) -> np.ndarray:
    """Per-base loss weight (float32): 1 for A/C/G/T, ``softmask_weight`` where soft-masked, ``junction_weight``
    on splice-junction flanks (track value 2), 0 for N/EOD."""
    table = np.array([1.0, softmask_weight, junction_weight], dtype=np.float32)
    w = table[np.clip(softmask, 0, TRACK_JUNCTION)]
    return w * _IS_BASE[np.clip(tokens, 0, 255)]


class StepSampler(Sampler[int]):
    """Global sample indices for one rank, starting at optimizer step ``start_step`` (see module docstring)."""

    def __init__(self, micro_batch: int, grad_accum: int, world_size: int, rank: int, total_steps: int,
                 start_step: int = 0) -> None:
        self.m, self.a, self.w, self.r = micro_batch, grad_accum, world_size, rank
        self.total_steps, self.start_step = total_steps, start_step

    def __len__(self) -> int:
        # the full run's length: Lightning counts batches already seen in the epoch on resume
        return self.total_steps * self.a * self.m

    def __iter__(self) -> Iterator[int]:
        g = self.m * self.a * self.w
        for step in range(self.start_step, self.total_steps):
            for acc in range(self.a):
                base = step * g + acc * self.m * self.w + self.r * self.m
                yield from range(base, base + self.m)


class ResumeLoader(DataLoader):
    """DataLoader whose position is derived from the restored global step (declared resumable to Lightning)."""

    def state_dict(self) -> dict[str, Any]:
        return {"start_step": int(self.sampler.start_step)}  # type: ignore[attr-defined]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass  # the position comes from trainer.global_step when the loader is built


def _worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    if info is not None and isinstance(info.dataset, ShardWindows):
        info.dataset._files = None  # open fresh handles in this worker
        info.dataset._pid = None


class ShardDataModule(pl.LightningDataModule):
    """Train/val loaders over shard folders; the train position follows ``trainer.global_step``."""

    def __init__(self, shard_dirs: list[str], window: int, micro_batch_size: int, grad_accum: int,
                 total_steps: int, seed: int = 0, rc_augment: bool = True, num_workers: int = 0,
                 val_batches: int = 8, softmask_weight: float = 0.1, junction_weight: float = 1.0) -> None:
        super().__init__()
        self.shard_dirs, self.window = list(shard_dirs), window
        self.micro_batch_size, self.grad_accum, self.total_steps = micro_batch_size, grad_accum, total_steps
        self.seed, self.rc_augment, self.num_workers, self.val_batches = seed, rc_augment, num_workers, val_batches
        self.softmask_weight, self.junction_weight = softmask_weight, junction_weight
        self.train_set: ShardWindows | None = None
        self.val_set: ShardWindows | None = None

    def setup(self, stage: str | None = None) -> None:
        """Index the shards (shapes only; no open handle is kept)."""
        if self.train_set is None:
            self.train_set = ShardWindows(self.shard_dirs, "train", self.window, self.seed, self.rc_augment,
                                          softmask_weight=self.softmask_weight, junction_weight=self.junction_weight)
            # validation keeps weight 1 on junction flanks: its loss stays comparable across recipes
            self.val_set = ShardWindows(self.shard_dirs, "val", self.window, self.seed, random_crop=False,
                                        softmask_weight=self.softmask_weight)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        """Loader for this rank starting at the (restored) global step."""
        self.setup()
        rank, world = self._rank_world()
        start = self.trainer.global_step if self.trainer is not None else 0
        sampler = StepSampler(self.micro_batch_size, self.grad_accum, world, rank, self.total_steps, start)
        return ResumeLoader(self.train_set, batch_size=self.micro_batch_size, sampler=sampler,
                             num_workers=self.num_workers, worker_init_fn=_worker_init,
                             persistent_workers=self.num_workers > 0, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        """Fixed validation windows: ``val_batches`` micro-batches per rank, evenly spread over val.h5."""
        self.setup()
        assert self.val_set is not None
        rank, world = self._rank_world()
        n = min(self.val_batches * self.micro_batch_size * world, len(self.val_set))
        rows = np.linspace(0, len(self.val_set) - 1, n).round().astype(int).tolist() if n else []
        mine = rows[rank::world][: (n // world)]
        return DataLoader(torch.utils.data.Subset(self.val_set, mine), batch_size=self.micro_batch_size,
                          num_workers=self.num_workers, worker_init_fn=_worker_init, shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        """Data position for the checkpoint (samples consumed = global_step * global batch)."""
        step = self.trainer.global_step if self.trainer is not None else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        return {"global_step": int(step),
                "samples_consumed": int(step * self.micro_batch_size * self.grad_accum * world),
                "seed": self.seed, "window": self.window}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore: the position follows the restored trainer.global_step."""
        self.restored_state = dict(state)
