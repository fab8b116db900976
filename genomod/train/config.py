"""Pretraining configuration: one YAML/JSON file plus dotted ``key=value`` overrides, validated up front.

Every key is known; an unknown key or a bad value raises ``ConfigError`` naming the dotted key
(``train.lr: must be > 0``) before any model is built or any shard opened.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import yaml

from genomod.errors import ConfigError
from genomod.model import ModelConfig

DEFAULTS: dict[str, Any] = {
    # ``preset`` names a ModelConfig preset; every other key overrides a ModelConfig field
    # (``preset: null`` = the remaining keys are the whole inline model config).
    "model": {"preset": "tiny"},
    "data": {
        "shards": [],  # shard folder(s) from data_prep.make_shards (train.h5 + val.h5)
        "window": 1024,  # training crop length; <= the stored window, random offset
        "rc_augment": True,  # reverse-complement half of the training windows
        "num_workers": 0,
        "val_batches": 8,  # validation micro-batches per rank
        "softmask_weight": 0.1,  # loss weight of soft-masked (lowercase) bases when shards carry the mask track
    },
    "train": {
        "micro_batch_size": 8,  # per device per forward
        "grad_accum": 1,  # global batch = micro_batch_size * grad_accum * world size
        "lr": 3e-4,
        "betas": [0.9, 0.95],
        "eps": 1e-8,
        "weight_decay": 0.1,  # not applied to norms, filters, biases, embeddings
        "warmup_steps": 100,
        "min_lr_ratio": 0.1,  # cosine decays to lr * min_lr_ratio at the last step
        "max_steps": None,
        "max_tokens": None,  # alternative to max_steps (rounded up to whole steps)
        "grad_clip": 1.0,  # 0 = off
        "seed": 0,
        "precision": "auto",  # auto = bf16-mixed on CUDA, 32 on CPU; bf16-mixed also runs on CPU (autocast)
        "activation_checkpointing": False,
        "max_log_pole": 0.0,  # Hyena-LI log-poles are clamped to <= this after every update (null: off)
        "val_interval": 500,  # optimizer steps
        "log_interval": 10,  # optimizer steps between progress/CSV rows
        "deterministic": False,  # torch.use_deterministic_algorithms (exact-resume checks)
    },
    "checkpoint": {
        "interval": 500,  # optimizer steps
        "keep_last": 3,
        "resume": "auto",  # auto (latest valid in OUT/checkpoints), none, or a checkpoint folder
    },
    "distributed": {"strategy": "auto", "accelerator": "auto", "devices": "auto", "num_nodes": 1},
    "output": {"dir": "runs/pretrain", "tensorboard": True, "progress_bar": True},
    "init_from": None,  # genomod checkpoint (folder or shipped name) to start from, e.g. context extension
}

PRECISIONS = ("auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp", "single_device")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")


def _fail(key: str, msg: str) -> None:
    raise ConfigError(f"{key}: {msg}")


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
                _fail(".".join(parts[: parts.index(p) + 1]), "is not a section")
            node = node[p]
        node[parts[-1]] = _parse_value(value)
    return doc


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


class TrainConfig:
    """A validated pretraining config: nested dict access through ``cfg.train['lr']`` etc."""

    def __init__(self, doc: dict[str, Any]) -> None:
        merged = merge_defaults(doc)
        self.raw = merged
        self.model: dict[str, Any] = merged["model"]
        self.data: dict[str, Any] = merged["data"]
        self.train: dict[str, Any] = merged["train"]
        self.checkpoint: dict[str, Any] = merged["checkpoint"]
        self.distributed: dict[str, Any] = merged["distributed"]
        self.output: dict[str, Any] = merged["output"]
        self.init_from: str | None = merged["init_from"]
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """The full config (defaults filled in) as a JSON-serialisable dict."""
        return copy.deepcopy(self.raw)

    @property
    def out_dir(self) -> Path:
        """Run output folder."""
        return Path(self.output["dir"])

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
        """Number of training processes (devices * num_nodes); 'auto' devices = all GPUs or 1 CPU process."""
        devices = self.distributed["devices"]
        if devices == "auto" or devices == -1:
            import torch

            acc = self.distributed["accelerator"]
            use_gpu = acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())
            devices = max(torch.cuda.device_count(), 1) if use_gpu else 1
        elif isinstance(devices, list):
            devices = len(devices)
        return int(devices) * int(self.distributed["num_nodes"])

    def global_batch(self) -> int:
        """Sequences per optimizer step across all ranks."""
        return int(self.train["micro_batch_size"]) * int(self.train["grad_accum"]) * self.world_size()

    def total_steps(self) -> int:
        """Optimizer steps of the run (max_steps, or max_tokens / tokens per step rounded up)."""
        if self.train["max_steps"] is not None:
            return int(self.train["max_steps"])
        return math.ceil(int(self.train["max_tokens"]) / (self.global_batch() * int(self.data["window"])))


def merge_defaults(doc: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults into ``doc``; unknown sections or keys raise ConfigError naming them."""
    out = copy.deepcopy(DEFAULTS)
    for section, value in doc.items():
        if section not in DEFAULTS:
            _fail(section, f"unknown key (known: {', '.join(DEFAULTS)})")
        if isinstance(DEFAULTS[section], dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                _fail(section, "must be a mapping")
            if section == "model":  # free-form: checked against ModelConfig fields
                out["model"].update(value)
                continue
            for key, v in value.items():
                if key not in DEFAULTS[section]:
                    _fail(f"{section}.{key}", f"unknown key (known: {', '.join(DEFAULTS[section])})")
                out[section][key] = v
        else:
            out[section] = value
    return out


def _num(cfg: dict[str, Any], section: str, key: str, kind: type, lo: float | None = None,
         lo_open: bool = False, hi: float | None = None, allow_none: bool = False) -> None:
    v = cfg[key]
    name = f"{section}.{key}"
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int):
        _fail(name, f"must be {'a number' if kind is float else 'an integer'}, got {v!r}")
    if kind is float and not math.isfinite(v):
        _fail(name, f"must be finite, got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        _fail(name, f"must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and v > hi:
        _fail(name, f"must be <= {hi}, got {v!r}")


def _bool(cfg: dict[str, Any], section: str, key: str) -> None:
    if not isinstance(cfg[key], bool):
        _fail(f"{section}.{key}", f"must be true or false, got {cfg[key]!r}")


def validate(cfg: TrainConfig) -> None:
    """Check every value; raise ConfigError naming the first bad key."""
    d, t, c, dist, o = cfg.data, cfg.train, cfg.checkpoint, cfg.distributed, cfg.output
    shards = d["shards"]
    if isinstance(shards, str):
        shards = d["shards"] = [shards]
    if not isinstance(shards, list) or not all(isinstance(s, str) for s in shards):
        _fail("data.shards", "must be a folder or a list of folders")
    if not shards:
        _fail("data.shards", "no shard folder given")
    for s in shards:
        for split in ("train.h5", "val.h5"):
            if not (Path(s) / split).is_file():
                _fail("data.shards", f"{s}: no {split} (make shards with python -m data_prep.make_shards)")
    _num(d, "data", "window", int, lo=2)
    _bool(d, "data", "rc_augment")
    _num(d, "data", "num_workers", int, lo=0)
    _num(d, "data", "val_batches", int, lo=0)
    _num(d, "data", "softmask_weight", float, lo=0, hi=1)

    _num(t, "train", "micro_batch_size", int, lo=1)
    _num(t, "train", "grad_accum", int, lo=1)
    _num(t, "train", "lr", float, lo=0, lo_open=True)
    b = t["betas"]
    if not (isinstance(b, (list, tuple)) and len(b) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < 1 for x in b)):
        _fail("train.betas", f"must be two numbers in [0, 1), got {b!r}")
    t["betas"] = [float(x) for x in b]
    _num(t, "train", "eps", float, lo=0, lo_open=True)
    _num(t, "train", "weight_decay", float, lo=0)
    _num(t, "train", "warmup_steps", int, lo=0)
    _num(t, "train", "min_lr_ratio", float, lo=0, hi=1)
    _num(t, "train", "max_steps", int, lo=1, allow_none=True)
    _num(t, "train", "max_tokens", int, lo=1, allow_none=True)
    if (t["max_steps"] is None) == (t["max_tokens"] is None):
        _fail("train.max_steps", "set exactly one of train.max_steps and train.max_tokens")
    _num(t, "train", "grad_clip", float, lo=0)
    _num(t, "train", "max_log_pole", float, allow_none=True)
    _num(t, "train", "seed", int, lo=0)
    t["precision"] = str(t["precision"])
    if t["precision"] not in PRECISIONS:
        _fail("train.precision", f"one of {', '.join(PRECISIONS)}, got {t['precision']!r}")
    _bool(t, "train", "activation_checkpointing")
    _bool(t, "train", "deterministic")
    _num(t, "train", "val_interval", int, lo=1)
    _num(t, "train", "log_interval", int, lo=1)

    _num(c, "checkpoint", "interval", int, lo=1)
    _num(c, "checkpoint", "keep_last", int, lo=1)
    if not isinstance(c["resume"], str) or not c["resume"]:
        _fail("checkpoint.resume", f"auto, none or a checkpoint folder, got {c['resume']!r}")
    if c["resume"] not in ("auto", "none") and not Path(c["resume"]).is_dir():
        _fail("checkpoint.resume", f"{c['resume']}: not a checkpoint folder")

    if dist["strategy"] not in STRATEGIES:
        _fail("distributed.strategy", f"one of {', '.join(STRATEGIES)}, got {dist['strategy']!r}")
    if dist["accelerator"] not in ACCELERATORS:
        _fail("distributed.accelerator", f"one of {', '.join(ACCELERATORS)}, got {dist['accelerator']!r}")
    dev = dist["devices"]
    if not (dev == "auto" or (isinstance(dev, int) and not isinstance(dev, bool) and (dev >= 1 or dev == -1))
            or (isinstance(dev, list) and dev and all(isinstance(x, int) for x in dev))):
        _fail("distributed.devices", f"auto, a positive integer or a list of device ids, got {dev!r}")
    _num(dist, "distributed", "num_nodes", int, lo=1)

    if not isinstance(o["dir"], str) or not o["dir"]:
        _fail("output.dir", "must be a folder path")
    _bool(o, "output", "tensorboard")
    _bool(o, "output", "progress_bar")
    if cfg.init_from is not None and not isinstance(cfg.init_from, str):
        _fail("init_from", f"must be a checkpoint folder or shipped model name, got {cfg.init_from!r}")

    mcfg = cfg.model_config()  # ConfigError names model.<field>
    if d["window"] > mcfg.max_seqlen:
        _fail("data.window", f"{d['window']} exceeds model.max_seqlen {mcfg.max_seqlen}")
    _check_shard_windows(shards, int(d["window"]))


def _check_shard_windows(shards: list[str], window: int) -> None:
    import h5py

    for s in shards:
        for split in ("train.h5", "val.h5"):
            path = Path(s) / split
            try:
                with h5py.File(path, "r") as h5:
                    if "tokens" not in h5:
                        _fail("data.shards", f"{path}: no 'tokens' dataset")
                    shape = h5["tokens"].shape
            except OSError as exc:
                _fail("data.shards", f"{path}: unreadable HDF5 ({exc})")
            if len(shape) != 2 or (split == "train.h5" and shape[0] == 0):
                _fail("data.shards", f"{path}: empty or malformed tokens {shape}")
            if shape[1] < window:
                _fail("data.window", f"{window} is longer than the stored windows ({shape[1]}) in {path}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read ``path`` (YAML/JSON; None = defaults only), apply overrides, validate and return the config."""
    doc = read_config_file(path) if path is not None else {}
    try:
        return TrainConfig(apply_overrides(doc, list(overrides or [])))
    except ConfigError as exc:
        if path is None:
            raise
        raise ConfigError(f"{path}: {exc}") from None
