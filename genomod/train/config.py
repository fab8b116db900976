"""Pretraining configuration: one YAML/JSON file plus dotted ``key=value`` overrides, validated up front.

``TrainConfig`` holds one typed section per concern (``DataArgs``, ``TrainArgs``, ``CheckpointArgs``,
``DistributedArgs``, ``OutputArgs``) plus the free-form ``model`` section (ModelConfig fields). Every key is
known; an unknown key or a bad value raises ``ConfigError`` naming the dotted key (``train.lr: must be > 0``).
Validation reads no file: the shards, a resume folder and an ``init_from`` checkpoint are checked by
``check_inputs`` (genomod.train) when the run is built, or by ``--check``.
The generic helpers (``read_config_file``, ``apply_overrides``, ``merge_sections``, ``section_defaults``,
``check_*``) and ``DistributedArgs`` are shared with the fine-tuning config.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genomod.errors import ConfigError
from genomod.model import ModelConfig

PRECISIONS = ("auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp", "single_device")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")


# ---- shared validation helpers (also used by the fine-tuning config) ------------------------------------
def fail(key: str, msg: str) -> None:
    """Raise ConfigError ``key: msg``."""
    raise ConfigError(f"{key}: {msg}")


def check_num(sec: MutableMapping[str, Any], section: str, key: str, kind: type, lo: float | None = None,
              lo_open: bool = False, hi: float | None = None, allow_none: bool = False) -> None:
    """``sec[key]`` is an int (``kind`` int) or a finite number (``kind`` float) within [lo, hi] (or null).

    A float given as text that Python reads as a number (YAML 1.1 reads ``1e-4``, without a dot, as a string)
    is converted in place."""
    v = sec[key]
    name = f"{section}.{key}"
    if v is None and allow_none:
        return
    if kind is float and isinstance(v, str):
        with contextlib.suppress(ValueError):
            sec[key] = v = float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int):
        fail(name, f"must be {'a number' if kind is float else 'an integer'}, got {v!r}")
    if kind is float and not math.isfinite(v):
        fail(name, f"must be finite, got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        fail(name, f"must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and v > hi:
        fail(name, f"must be <= {hi}, got {v!r}")


def check_bool(sec: Mapping[str, Any], section: str, key: str) -> None:
    """``sec[key]`` is true or false."""
    if not isinstance(sec[key], bool):
        fail(f"{section}.{key}", f"must be true or false, got {sec[key]!r}")


def check_choice(sec: Mapping[str, Any], section: str, key: str, choices: tuple[str, ...]) -> None:
    """``sec[key]`` is one of ``choices``."""
    if sec[key] not in choices:
        fail(f"{section}.{key}", f"one of {', '.join(choices)}, got {sec[key]!r}")


def check_betas(betas: Any, key: str) -> list[float]:
    """AdamW betas: two numbers in [0, 1), returned as floats."""
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < 1 for x in betas)):
        fail(key, f"must be two numbers in [0, 1), got {betas!r}")
    return [float(x) for x in betas]


def check_distributed(sec: Mapping[str, Any]) -> None:
    """A ``distributed`` section: strategy, accelerator, devices (auto, a count or device ids), num_nodes."""
    check_choice(sec, "distributed", "strategy", STRATEGIES)
    check_choice(sec, "distributed", "accelerator", ACCELERATORS)
    dev = sec["devices"]
    if not (dev == "auto" or (isinstance(dev, int) and not isinstance(dev, bool) and (dev >= 1 or dev == -1))
            or (isinstance(dev, list) and dev and all(isinstance(x, int) for x in dev))):
        fail("distributed.devices", f"auto, a positive integer or a list of device ids, got {dev!r}")
    check_num(sec, "distributed", "num_nodes", int, lo=1)


def merge_sections(doc: Mapping[str, Any], defaults: Mapping[str, Any],
                   free_form: tuple[str, ...] = ()) -> dict[str, Any]:
    """``defaults`` updated from ``doc`` section by section; unknown sections or keys raise ConfigError naming
    them (sections in ``free_form`` take any key)."""
    out = copy.deepcopy(dict(defaults))
    for section, value in doc.items():
        if section not in defaults:
            fail(section, f"unknown key (known: {', '.join(defaults)})")
        if not isinstance(defaults[section], dict):
            out[section] = value
            continue
        if value is None:
            continue
        if not isinstance(value, dict):
            fail(section, "must be a mapping")
        for key, v in value.items():
            if section not in free_form and key not in defaults[section]:
                fail(f"{section}.{key}", f"unknown key (known: {', '.join(defaults[section])})")
            out[section][key] = v
    return out


# ---- the typed sections -----------------------------------------------------------------------------------
@dataclass
class DataArgs:
    """``data``: the shard folders and how windows are drawn from them."""

    shards: list[str] = field(default_factory=list)  # shard folder(s) from data_prep.make_shards (train.h5 + val.h5)
    window: int = 1024  # training crop length; <= the stored window, random offset
    rc_augment: bool = True  # reverse-complement half of the training windows
    num_workers: int = 0
    val_batches: int = 8  # validation micro-batches per rank
    softmask_weight: float = 0.1  # loss weight of soft-masked (lowercase) bases when shards carry the mask track
    junction_weight: float = 1.0  # training loss weight of splice-junction flanks (make_mixture junction_flank)
    # > 0: a linear head on the last block's output predicts whether each base lies in a junction flank (binary
    # cross-entropy, added to the loss times this weight; training only, not exported with the model)
    junction_aux_weight: float = 0.0

    def validate(self) -> None:
        """Check every value (a single folder string becomes a one-item list)."""
        if isinstance(self.shards, str):
            self.shards = [self.shards]
        if not isinstance(self.shards, list) or not all(isinstance(s, str) for s in self.shards):
            fail("data.shards", "must be a folder or a list of folders")
        if not self.shards:
            fail("data.shards", "no shard folder given")
        v = vars(self)
        check_num(v, "data", "window", int, lo=2)
        check_bool(v, "data", "rc_augment")
        check_num(v, "data", "num_workers", int, lo=0)
        check_num(v, "data", "val_batches", int, lo=0)
        check_num(v, "data", "softmask_weight", float, lo=0, hi=1)
        check_num(v, "data", "junction_weight", float, lo=0, hi=100)
        check_num(v, "data", "junction_aux_weight", float, lo=0, hi=100)
        if self.junction_aux_weight > 0 and self.junction_weight in (0.0, 1.0, self.softmask_weight):
            fail("data.junction_aux_weight", "needs data.junction_weight other than 0, 1 and data.softmask_weight "
                 "(the flanks are told apart by their loss weight)")


@dataclass
class TrainArgs:
    """``train``: batch, optimizer, schedule, precision and logging of the optimisation."""

    micro_batch_size: int = 8  # per device per forward
    grad_accum: int = 1  # global batch = micro_batch_size * grad_accum * world size
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1  # not applied to norms, filters, biases, embeddings
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    max_steps: int | None = None
    max_tokens: int | None = None  # alternative to max_steps (rounded up to whole steps)
    grad_clip: float = 1.0  # 0 = off
    seed: int = 0
    precision: str = "auto"  # auto = bf16-mixed on CUDA, 32 on CPU; bf16-mixed also runs on CPU (autocast)
    activation_checkpointing: bool = False
    max_log_pole: float | None = 0.0  # Hyena-LI log-poles are clamped to <= this after every update (null: off)
    val_interval: int = 500  # optimizer steps
    log_interval: int = 10  # optimizer steps between progress/CSV rows
    deterministic: bool = False  # torch.use_deterministic_algorithms (exact-resume checks)

    def validate(self) -> None:
        """Check every value (betas become floats, precision a string)."""
        v = vars(self)
        check_optimization(v)
        check_num(v, "train", "max_steps", int, lo=1, allow_none=True)
        check_num(v, "train", "max_tokens", int, lo=1, allow_none=True)
        if (self.max_steps is None) == (self.max_tokens is None):
            fail("train.max_steps", "set exactly one of train.max_steps and train.max_tokens")


def check_optimization(v: dict[str, Any]) -> None:
    """The ``train`` keys pretraining and fine-tuning share: batch, optimizer, schedule, precision, logging
    (in place: betas become floats, precision a string)."""
    check_num(v, "train", "micro_batch_size", int, lo=1)
    check_num(v, "train", "grad_accum", int, lo=1)
    check_num(v, "train", "lr", float, lo=0, lo_open=True)
    v["betas"] = check_betas(v["betas"], "train.betas")
    check_num(v, "train", "eps", float, lo=0, lo_open=True)
    check_num(v, "train", "weight_decay", float, lo=0)
    check_num(v, "train", "warmup_steps", int, lo=0)
    check_num(v, "train", "min_lr_ratio", float, lo=0, hi=1)
    check_num(v, "train", "grad_clip", float, lo=0)
    check_num(v, "train", "max_log_pole", float, allow_none=True)
    check_num(v, "train", "seed", int, lo=0)
    v["precision"] = str(v["precision"])
    check_choice(v, "train", "precision", PRECISIONS)
    check_bool(v, "train", "activation_checkpointing")
    check_bool(v, "train", "deterministic")
    check_num(v, "train", "val_interval", int, lo=1)
    check_num(v, "train", "log_interval", int, lo=1)


@dataclass
class CheckpointArgs:
    """``checkpoint``: how often to save, how many to keep, where to resume from."""

    interval: int = 500  # optimizer steps
    keep_last: int = 3
    resume: str = "auto"  # auto (latest valid in OUT/checkpoints), none, or a checkpoint folder

    def validate(self) -> None:
        """Check every value (whether a resume folder exists is checked when the run starts)."""
        check_num(vars(self), "checkpoint", "interval", int, lo=1)
        check_num(vars(self), "checkpoint", "keep_last", int, lo=1)
        if not isinstance(self.resume, str) or not self.resume:
            fail("checkpoint.resume", f"auto, none or a checkpoint folder, got {self.resume!r}")


@dataclass
class DistributedArgs:
    """``distributed``: Lightning strategy, accelerator, devices and nodes."""

    strategy: str = "auto"
    accelerator: str = "auto"
    devices: Any = "auto"  # auto, a count (-1 = all) or a list of device ids
    num_nodes: int = 1

    def validate(self) -> None:
        """Check every value."""
        check_distributed(vars(self))

    def uses_gpu(self) -> bool:
        """Whether the run is on CUDA (accelerator gpu/cuda, or auto with CUDA present)."""
        import torch

        return self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available())

    def world_size(self) -> int:
        """Training processes (devices * num_nodes); 'auto' devices = all GPUs or 1 CPU process."""
        devices = self.devices
        if devices == "auto" or devices == -1:
            import torch

            devices = max(torch.cuda.device_count(), 1) if self.uses_gpu() else 1
        elif isinstance(devices, list):
            devices = len(devices)
        return int(devices) * int(self.num_nodes)


@dataclass
class OutputArgs:
    """``output``: the run folder and its loggers."""

    dir: str = "runs/pretrain"
    tensorboard: bool = True
    progress_bar: bool = True

    def validate(self) -> None:
        """Check every value."""
        if not isinstance(self.dir, str) or not self.dir:
            fail("output.dir", "must be a folder path")
        check_bool(vars(self), "output", "tensorboard")
        check_bool(vars(self), "output", "progress_bar")


SECTIONS: dict[str, type] = {"data": DataArgs, "train": TrainArgs, "checkpoint": CheckpointArgs,
                             "distributed": DistributedArgs, "output": OutputArgs}


def section_defaults(cls: type) -> dict[str, Any]:
    """The default of every field of the dataclass ``cls`` (a section's entry in ``DEFAULTS``)."""
    return {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
            for f in dataclasses.fields(cls)}


# The full default config, in the order of ``config.json``: ``model.preset`` names a ModelConfig preset; every
# other model key overrides a ModelConfig field (``preset: null`` = the remaining keys are the whole model).
DEFAULTS: dict[str, Any] = {
    "model": {"preset": "tiny"},
    **{name: section_defaults(cls) for name, cls in SECTIONS.items()},
    "init_from": None,  # genomod checkpoint (folder or shipped name) to start from, e.g. context extension
    "init_layers": None,  # depth growth: per layer of the model, the init_from layer it copies (null = new layer)
}


@dataclass
class TrainConfig:
    """A validated pretraining config: ``cfg.train.lr``, ``cfg.data.window``, ...; ``to_dict`` for config.json."""

    model: dict[str, Any] = field(default_factory=lambda: {"preset": "tiny"})
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    checkpoint: CheckpointArgs = field(default_factory=CheckpointArgs)
    distributed: DistributedArgs = field(default_factory=DistributedArgs)
    output: OutputArgs = field(default_factory=OutputArgs)
    init_from: str | None = None
    init_layers: list[int | None] | None = None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> TrainConfig:
        """Fill in defaults, build the sections and validate (ConfigError names the first bad key)."""
        merged = merge_sections(doc, DEFAULTS, free_form=("model",))
        cfg = cls(model=merged["model"], init_from=merged["init_from"], init_layers=merged["init_layers"],
                  **{name: sec(**merged[name]) for name, sec in SECTIONS.items()})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Check every section; without ``init_from`` also the model config and the window against it."""
        for name in SECTIONS:
            getattr(self, name).validate()
        if self.init_from is not None and not isinstance(self.init_from, str):
            fail("init_from", f"must be a checkpoint folder or shipped model name, got {self.init_from!r}")
        if self.init_layers is not None:
            if not self.init_from:
                fail("init_layers", "needs init_from (the model whose layers it copies)")
            if not isinstance(self.init_layers, list) or not self.init_layers or any(
                    v is not None and (isinstance(v, bool) or not isinstance(v, int)) for v in self.init_layers):
                fail("init_layers", f"must be a list of layer indices or null, got {self.init_layers!r}")
        if not self.init_from:  # with init_from the model needs the checkpoint: check_inputs checks it
            self.check_window(self.model_config())

    def check_window(self, mcfg: ModelConfig) -> None:
        """The training window fits the model."""
        if self.data.window > mcfg.max_seqlen:
            fail("data.window", f"{self.data.window} exceeds model.max_seqlen {mcfg.max_seqlen}")

    def to_dict(self) -> dict[str, Any]:
        """The full config (defaults filled in) as a JSON-serialisable dict (the run's ``config.json``)."""
        return {"model": copy.deepcopy(self.model), **{name: asdict(getattr(self, name)) for name in SECTIONS},
                "init_from": self.init_from, "init_layers": copy.deepcopy(self.init_layers)}

    @property
    def out_dir(self) -> Path:
        """Run output folder."""
        return Path(self.output.dir)

    def model_config(self) -> ModelConfig:
        """Build the ModelConfig (preset + overrides, or the init_from checkpoint's config + overrides)."""
        fields = {k: v for k, v in self.model.items() if k != "preset"}
        try:
            if self.init_from:
                from genomod.checkpoint import read_checkpoint_config, resolve_checkpoint

                base = read_checkpoint_config(resolve_checkpoint(self.init_from))["model"]
                return ModelConfig.from_dict({**base, **fields}, source="model")
            if self.model.get("preset"):
                return ModelConfig.preset(str(self.model["preset"]), **fields)
            return ModelConfig.from_dict(fields, source="model")
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith("model") else f"model: {msg}") from None

    def world_size(self) -> int:
        """Number of training processes (devices * num_nodes)."""
        return self.distributed.world_size()

    def global_batch(self) -> int:
        """Sequences per optimizer step across all ranks."""
        return self.train.micro_batch_size * self.train.grad_accum * self.world_size()

    def total_steps(self) -> int:
        """Optimizer steps of the run (max_steps, or max_tokens / tokens per step rounded up)."""
        if self.train.max_steps is not None:
            return int(self.train.max_steps)
        return math.ceil(int(self.train.max_tokens) / (self.global_batch() * self.data.window))


def _parse_value(text: str) -> Any:
    """Parse an override value as YAML (numbers, booleans, null, lists), falling back to the raw string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(doc: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a nested config dict."""
    doc = copy.deepcopy(doc)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: bad key {key!r}")
        node = doc
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                fail(".".join(parts[: parts.index(p) + 1]), "is not a section")
            node = node[p]
        node[parts[-1]] = _parse_value(value)
    return doc


def deep_merge(base: Mapping[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` over ``base``: sections (mappings) merge key by key, any other value replaces the base's."""
    out = copy.deepcopy(dict(base))
    for key, value in doc.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict (ConfigError on a missing or malformed file)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: cannot parse config (not UTF-8 text: byte {exc.start})") from None
    try:
        doc = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: cannot parse config (line {exc.lineno}: {exc.msg})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: cannot parse config ({where}{problem})") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: expected a mapping at top level")
    return doc


def read_pretrain_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A pretraining config file; a top-level ``base: other.yaml`` (relative to this file, as in mixture recipes)
    is read first and this file merged over it (``deep_merge``), so a later stage states only what it changes.
    (Fine-tuning configs use ``base`` for the model to fine-tune.)"""
    p = Path(path)
    doc = read_config_file(p)
    if "base" not in doc:
        return doc
    base = doc.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{p}: base: expected the path of another pretraining config")
    base_path, seen = p.parent / base, (*_seen, p.resolve())
    if base_path.resolve() in seen:
        raise ConfigError(f"{p}: base: {base} includes itself")
    try:
        parent = read_pretrain_config(base_path, seen)
    except ConfigError as exc:
        raise ConfigError(f"{p}: base: {exc}") from None
    return deep_merge(parent, doc)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read ``path`` (YAML/JSON; None = defaults only), apply overrides, validate and return the config."""
    doc = read_pretrain_config(path) if path is not None else {}
    try:
        return TrainConfig.from_dict(apply_overrides(doc, list(overrides or [])))
    except ConfigError as exc:
        if path is None:
            raise
        raise ConfigError(f"{path}: {exc}") from None
