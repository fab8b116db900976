"""Fine-tuning configuration: one YAML/JSON task file plus dotted ``key=value`` overrides, validated up front.

Every key is known; an unknown key or a bad value raises ``ConfigError`` naming the file and the dotted key
(``task.yaml: task: one of sequence-classification, ... got 'clasification'``) before any model is loaded
or any data read. The data themselves (columns, labels) are checked when they are read (``genomod.finetuning.tasks``),
with errors naming the data file and the key.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from genomod.errors import ConfigError, ModelError
from genomod.train.config import (
    DistributedArgs,
    apply_overrides,
    check_bool,
    check_choice,
    check_num,
    check_optimization,
    fail,
    merge_sections,
    read_config_file,
)

TASKS = ("sequence-classification", "sequence-regression", "variant-effect")
MODES = ("lora", "full", "frozen")
SPLIT_METHODS = ("column", "random", "folds")
LORA_TARGETS = ("projections", "hyena_out", "mlp", "attention")

DEFAULTS: dict[str, Any] = {
    "task": None,  # sequence-classification | sequence-regression | variant-effect
    "base": "default",  # shipped model name, checkpoint folder (also a converted Evo 2 model)
    "mode": "lora",  # lora (peft adapters) | full | frozen (head only)
    "data": {
        "path": None,  # FASTA (labels in headers), TSV, or VCF (variant-effect); "genomod:<path>" = shipped data
        "format": "auto",  # auto (by suffix) | fasta | tsv | vcf
        "sequence_column": "sequence",  # TSV column of sequence tasks
        "id_column": None,  # TSV column of record ids (default: row number)
        "label_column": "label",  # TSV column / FASTA header key (key=value) / VCF INFO key of the label
        "score_column": None,  # variant-effect: a numeric target instead of a label (regression)
        "positive": [],  # label values of the positive class: binary task (the rest negative, or ``negative``)
        "negative": [],  # label values of the negative class (default: every other non-empty value)
        "classes": None,  # class order of a multi-class task (default: sorted label values)
        "reference": None,  # variant-effect: reference FASTA ("genomod:<path>" allowed)
        "max_length": None,  # sequence tasks: crop longer sequences to this (default: the model's max_seqlen)
        "crop": "center",  # center | start
        "window": None,  # variant-effect: window around each variant (default: model max_seqlen, <= 8192)
        "rc_augment": False,  # reverse-complement half of the training sequences (strand-symmetric tasks only)
    },
    "split": {
        "method": None,  # column | random | folds; default: folds for variant-effect, random for sequences
        "column": "split",  # method column: TSV column / FASTA header key with train / val / test
        "val_fraction": 0.1,  # method random: by record (seeded hash of the record id)
        "test_fraction": 0.1,
        "n_folds": 5,  # method folds: out-of-fold predictions for every row
        "block_size": 100,  # variant-effect: genomic block (bp) of the fold grouping (chrom, pos // block_size)
        "seed": 0,
        "duplicates": "error",  # same sequence in two splits: error | drop (kept on the training side)
        "final": True,  # method folds: also fit on all rows and save that model
    },
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "targets": list(LORA_TARGETS)},
    "head": {
        "hidden": 64,  # MLP width (0: a linear head)
        "dropout": 0.1,
        "layer": "final",  # final (after the final norm) or blocks.K
        "radius": 64,  # variant-effect: pooled positions [off - radius, off + radius]
        "parts": ["ref", "alt", "diff"],  # variant-effect features
        "zero_shot": True,  # variant-effect: delta log-likelihood of the two windows as a feature
    },
    "train": {
        "micro_batch_size": 16,
        "grad_accum": 1,
        "lr": 5e-4,  # backbone (LoRA adapters or all weights)
        "head_lr": 1e-3,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.01,
        "warmup_steps": 20,
        "min_lr_ratio": 0.1,
        "epochs": 3.0,  # passes over the training rows (rounded up to whole steps) ...
        "max_steps": None,  # ... or a fixed number of optimizer steps
        "grad_clip": 1.0,
        "class_weight": "none",  # none | balanced (classification loss weights from the training labels)
        "seed": 0,
        "precision": "auto",
        "base_dtype": "auto",  # auto: float32 for full, the checkpoint's dtype for lora/frozen; or float32/bfloat16
        "activation_checkpointing": False,
        "max_log_pole": 0.0,  # full mode: Hyena-LI log-poles clamped as in pretraining (null: off)
        "val_interval": 100,  # optimizer steps between validations (when there is a val split)
        "log_interval": 10,
        "deterministic": False,
        "num_workers": 0,
    },
    "eval": {"batch_size": 32, "n_boot": 1000, "seed": 0},
    "checkpoint": {"interval": 200, "keep_last": 2, "resume": "auto"},
    "distributed": {"strategy": "auto", "accelerator": "auto", "devices": "auto", "num_nodes": 1},
    "output": {"dir": "runs/finetune", "progress_bar": True, "tensorboard": False, "save_merged": True},
}


def _str_list(sec: dict[str, Any], name: str, key: str) -> None:
    v = sec[key]
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        v = sec[key] = [v]
    if not isinstance(v, list) or not all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in v):
        fail(f"{name}.{key}", f"must be a list of label values, got {v!r}")
    sec[key] = [str(x) for x in v]


def resolve_data_path(value: str, key: str) -> Path:
    """A data path: ``genomod:<path>`` is inside the package's shipped data (genomod/data), else as given."""
    if value.startswith("genomod:"):
        from genomod.data_paths import data_dir

        path = data_dir() / value[len("genomod:"):]
    else:
        path = Path(value)
    if not path.is_file():
        fail(key, f"{value}: file not found")
    return path


class FinetuneConfig:
    """A validated fine-tuning config: sections as dicts (``cfg.train["lr"]``; ``distributed`` is the
    pretraining ``DistributedArgs``), plus resolved paths."""

    def __init__(self, doc: dict[str, Any], source: str | None = None) -> None:
        merged = merge_sections(doc, DEFAULTS)
        self.raw = merged
        self.source = source
        self.task: str = merged["task"]
        self.base: str = merged["base"]
        self.mode: str = merged["mode"]
        self.data: dict[str, Any] = merged["data"]
        self.split: dict[str, Any] = merged["split"]
        self.lora: dict[str, Any] = merged["lora"]
        self.head: dict[str, Any] = merged["head"]
        self.train: dict[str, Any] = merged["train"]
        self.eval: dict[str, Any] = merged["eval"]
        self.checkpoint: dict[str, Any] = merged["checkpoint"]
        self.output: dict[str, Any] = merged["output"]
        self.distributed = DistributedArgs(**merged["distributed"])
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """The full config (defaults filled in) as a JSON-serialisable dict."""
        return copy.deepcopy(self.raw)

    @property
    def out_dir(self) -> Path:
        return Path(self.output["dir"])

    @property
    def is_variant(self) -> bool:
        return self.task == "variant-effect"

    @property
    def data_path(self) -> Path:
        return resolve_data_path(self.data["path"], "data.path")

    @property
    def reference_path(self) -> Path:
        return resolve_data_path(self.data["reference"], "data.reference")

    def base_path(self) -> Path:
        """The base checkpoint folder (ConfigError naming ``base`` when it cannot be found)."""
        from genomod.checkpoint import resolve_checkpoint

        try:
            return resolve_checkpoint(self.base)
        except ModelError as exc:
            raise ConfigError(f"base: {exc}") from None

    def world_size(self) -> int:
        """Training processes (devices * num_nodes; 'auto' = all GPUs or 1 CPU process)."""
        return self.distributed.world_size()

    def global_batch(self) -> int:
        return int(self.train["micro_batch_size"]) * int(self.train["grad_accum"]) * self.world_size()

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps for ``n_train`` training rows (max_steps, or epochs rounded up to whole steps)."""
        if self.train["max_steps"] is not None:
            return int(self.train["max_steps"])
        return max(1, math.ceil(float(self.train["epochs"]) * n_train / self.global_batch()))


def validate(cfg: FinetuneConfig) -> None:
    """Check every value; raise ConfigError naming the first bad key."""
    if cfg.task is None:
        fail("task", f"missing: one of {', '.join(TASKS)}")
    if cfg.task not in TASKS:
        fail("task", f"one of {', '.join(TASKS)}, got {cfg.task!r}")
    if not isinstance(cfg.base, str) or not cfg.base:
        fail("base", f"a shipped model name or a checkpoint folder, got {cfg.base!r}")
    if cfg.mode not in MODES:
        fail("mode", f"one of {', '.join(MODES)}, got {cfg.mode!r}")
    for check in (_check_data, _check_data_for_task, _check_split, _check_lora, _check_head, _check_train,
                  _check_run):
        check(cfg)


def _check_data(cfg: FinetuneConfig) -> None:
    """``data``: paths, columns and label values."""
    d = cfg.data
    if not isinstance(d["path"], str) or not d["path"]:
        fail("data.path", "missing: a FASTA, TSV or VCF file")
    resolve_data_path(d["path"], "data.path")
    check_choice(d, "data", "format", ("auto", "fasta", "tsv", "vcf"))
    for key in ("sequence_column", "label_column"):
        if not isinstance(d[key], str) or not d[key]:
            fail(f"data.{key}", f"must be a column name, got {d[key]!r}")
    for key in ("id_column", "score_column"):
        if d[key] is not None and (not isinstance(d[key], str) or not d[key]):
            fail(f"data.{key}", f"must be a column name or null, got {d[key]!r}")
    _str_list(d, "data", "positive")
    _str_list(d, "data", "negative")
    if d["negative"] and not d["positive"]:
        fail("data.negative", "given without data.positive")
    if d["classes"] is not None:
        _str_list(d, "data", "classes")
        if len(d["classes"]) < 2:
            fail("data.classes", "needs at least two classes")
        if d["positive"]:
            fail("data.classes", "give either data.classes (multi-class) or data.positive (binary), not both")
    check_num(d, "data", "max_length", int, lo=2, allow_none=True)
    check_choice(d, "data", "crop", ("center", "start"))
    check_num(d, "data", "window", int, lo=16, allow_none=True)
    check_bool(d, "data", "rc_augment")


def _check_data_for_task(cfg: FinetuneConfig) -> None:
    """``data`` keys that depend on the task."""
    d = cfg.data
    if cfg.is_variant:
        if not isinstance(d["reference"], str) or not d["reference"]:
            fail("data.reference", "missing: variant-effect tasks need the reference FASTA of the variants")
        resolve_data_path(d["reference"], "data.reference")
        if d["rc_augment"]:
            fail("data.rc_augment", "not used by variant-effect tasks")
        if d["score_column"] is not None and d["positive"]:
            fail("data.score_column", "give either a score column (regression) or data.positive (labels)")
        if d["classes"] is not None:
            fail("data.classes", "variant-effect labels are binary: use data.positive (and data.negative)")
    else:
        if d["score_column"] is not None:
            fail("data.score_column", f"only for variant-effect tasks; {cfg.task} reads data.label_column")
        if cfg.task == "sequence-regression" and (d["positive"] or d["classes"]):
            fail("data.positive" if d["positive"] else "data.classes", "not used by sequence-regression")


def _check_split(cfg: FinetuneConfig) -> None:
    """``split`` (the default method follows the task)."""
    s = cfg.split
    if s["method"] is None:
        s["method"] = "folds" if cfg.is_variant else "random"
    check_choice(s, "split", "method", SPLIT_METHODS)
    if cfg.is_variant and s["method"] == "random":
        fail("split.method", "variant-effect tasks split by genomic blocks: use folds (or column)")
    if not isinstance(s["column"], str) or not s["column"]:
        fail("split.column", f"must be a column name, got {s['column']!r}")
    check_num(s, "split", "val_fraction", float, lo=0, hi=0.9)
    check_num(s, "split", "test_fraction", float, lo=0, hi=0.9)
    if s["val_fraction"] + s["test_fraction"] >= 1:
        fail("split.test_fraction", "split.val_fraction + split.test_fraction must be < 1")
    check_num(s, "split", "n_folds", int, lo=2)
    check_num(s, "split", "block_size", int, lo=1)
    check_num(s, "split", "seed", int, lo=0)
    check_choice(s, "split", "duplicates", ("error", "drop"))
    check_bool(s, "split", "final")


def _check_lora(cfg: FinetuneConfig) -> None:
    """``lora``."""
    lo = cfg.lora
    check_num(lo, "lora", "r", int, lo=1)
    check_num(lo, "lora", "alpha", float, lo=0, lo_open=True)
    check_num(lo, "lora", "dropout", float, lo=0, hi=0.9)
    t = lo["targets"]
    if isinstance(t, str):
        t = lo["targets"] = [t]
    if not isinstance(t, list) or not t or any(x not in LORA_TARGETS for x in t):
        fail("lora.targets", f"a non-empty list of {', '.join(LORA_TARGETS)}, got {t!r}")


def _check_head(cfg: FinetuneConfig) -> None:
    """``head``."""
    h = cfg.head
    check_num(h, "head", "hidden", int, lo=0)
    check_num(h, "head", "dropout", float, lo=0, hi=0.9)
    if not isinstance(h["layer"], str) or not (h["layer"] == "final" or (
            h["layer"].startswith("blocks.") and h["layer"][7:].isdigit())):
        fail("head.layer", f"final or blocks.K, got {h['layer']!r}")
    check_num(h, "head", "radius", int, lo=0)
    parts = h["parts"]
    if not isinstance(parts, list) or not parts or any(p not in ("ref", "alt", "diff") for p in parts):
        fail("head.parts", f"a non-empty list of ref, alt, diff, got {parts!r}")
    check_bool(h, "head", "zero_shot")


def _check_train(cfg: FinetuneConfig) -> None:
    """``train``."""
    tr = cfg.train
    check_optimization(tr)
    check_num(tr, "train", "head_lr", float, lo=0, lo_open=True)
    check_num(tr, "train", "epochs", float, lo=0, lo_open=True)
    check_num(tr, "train", "max_steps", int, lo=1, allow_none=True)
    check_choice(tr, "train", "class_weight", ("none", "balanced"))
    if tr["class_weight"] == "balanced" and cfg.task == "sequence-regression":
        fail("train.class_weight", "not used by regression tasks")
    check_choice(tr, "train", "base_dtype", ("auto", "float32", "bfloat16", "float16"))
    check_num(tr, "train", "num_workers", int, lo=0)


def _check_run(cfg: FinetuneConfig) -> None:
    """``eval``, ``checkpoint``, ``distributed``, ``output`` and the base model."""
    e = cfg.eval
    check_num(e, "eval", "batch_size", int, lo=1)
    check_num(e, "eval", "n_boot", int, lo=0)
    check_num(e, "eval", "seed", int, lo=0)

    c = cfg.checkpoint
    check_num(c, "checkpoint", "interval", int, lo=1)
    check_num(c, "checkpoint", "keep_last", int, lo=1)
    if c["resume"] not in ("auto", "none"):
        fail("checkpoint.resume", f"auto or none, got {c['resume']!r} (each fit resumes from its own folder)")

    cfg.distributed.validate()

    o = cfg.output
    if not isinstance(o["dir"], str) or not o["dir"]:
        fail("output.dir", "must be a folder path")
    check_bool(o, "output", "progress_bar")
    check_bool(o, "output", "tensorboard")
    check_bool(o, "output", "save_merged")
    cfg.base_path()  # ConfigError naming ``base`` for an unknown model


def load_config(path: str | Path | dict[str, Any] | None = None, overrides: list[str] | None = None
                ) -> FinetuneConfig:
    """Read ``path`` (YAML/JSON file, or a dict), apply ``--set`` overrides, validate; errors name file and key."""
    if isinstance(path, dict):
        doc, source = path, None
    else:
        doc = read_config_file(path) if path is not None else {}
        source = str(path) if path is not None else None
    try:
        return FinetuneConfig(apply_overrides(doc, list(overrides or [])), source)
    except ConfigError as exc:
        if source is None:
            raise
        raise ConfigError(f"{source}: {exc}") from None


__all__ = ["DEFAULTS", "LORA_TARGETS", "MODES", "TASKS", "FinetuneConfig", "load_config", "resolve_data_path"]
