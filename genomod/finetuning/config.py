"""Fine-tuning configuration: one YAML/JSON task file plus dotted ``key=value`` overrides, validated up front.

``FinetuneConfig`` holds the top-level ``task``, ``base`` and ``mode`` and one typed section per concern
(``FinetuneDataArgs``, ``SplitArgs``, ``LoraArgs``, ``HeadArgs``, ``FinetuneTrainArgs``, ``EvalArgs``,
``FinetuneCheckpointArgs``, the pretraining ``DistributedArgs``, ``FinetuneOutputArgs``): ``cfg.train.lr``.
Every key is known; an unknown key or a bad value raises ``ConfigError`` naming the file and the dotted key
(``task.yaml: task: one of sequence-classification, ... got 'clasification'``) before any model is loaded
or any data read. The data themselves (columns, labels) are checked when they are read (``genomod.finetuning.tasks``),
with errors naming the data file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
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
    section_defaults,
)

TASKS = ("sequence-classification", "sequence-regression", "variant-effect")
MODES = ("lora", "full", "frozen")
SPLIT_METHODS = ("column", "random", "folds")
LORA_TARGETS = ("projections", "hyena_out", "mlp", "attention")


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


# ---- the typed sections -----------------------------------------------------------------------------------
@dataclass
class FinetuneDataArgs:
    """``data``: the task file, its columns and label values (the keys that depend on the task are checked by
    ``FinetuneConfig``)."""

    path: str | None = None  # FASTA (labels in headers), TSV, or VCF (variant-effect); "genomod:<path>" = shipped data
    format: str = "auto"  # auto (by suffix) | fasta | tsv | vcf
    sequence_column: str = "sequence"  # TSV column of sequence tasks
    id_column: str | None = None  # TSV column of record ids (default: row number)
    label_column: str = "label"  # TSV column / FASTA header key (key=value) / VCF INFO key of the label
    score_column: str | None = None  # variant-effect: a numeric target instead of a label (regression)
    # label values of the positive class: binary task (the rest negative, or ``negative``)
    positive: list[str] = field(default_factory=list)
    # label values of the negative class (default: every other non-empty value)
    negative: list[str] = field(default_factory=list)
    classes: list[str] | None = None  # class order of a multi-class task (default: sorted label values)
    reference: str | None = None  # variant-effect: reference FASTA ("genomod:<path>" allowed)
    max_length: int | None = None  # sequence tasks: crop longer sequences to this (default: the model's max_seqlen)
    crop: str = "center"  # center | start
    window: int | None = None  # variant-effect: window around each variant (default: model max_seqlen, <= 8192)
    rc_augment: bool = False  # reverse-complement half of the training sequences (strand-symmetric tasks only)
    # variant-effect: more labelled variants {path, reference} (same label column and values), added to the training
    # rows of every fit and never evaluated, e.g. the genetic-code rows of data_prep.prepare_variant_aux
    auxiliary: dict[str, str] | None = None

    def validate(self) -> None:
        """Check paths, columns and label values (label values become lists of strings)."""
        d = vars(self)
        if not isinstance(self.path, str) or not self.path:
            fail("data.path", "missing: a FASTA, TSV or VCF file")
        resolve_data_path(self.path, "data.path")
        check_choice(d, "data", "format", ("auto", "fasta", "tsv", "vcf"))
        for key in ("sequence_column", "label_column"):
            if not isinstance(d[key], str) or not d[key]:
                fail(f"data.{key}", f"must be a column name, got {d[key]!r}")
        for key in ("id_column", "score_column"):
            if d[key] is not None and (not isinstance(d[key], str) or not d[key]):
                fail(f"data.{key}", f"must be a column name or null, got {d[key]!r}")
        _str_list(d, "data", "positive")
        _str_list(d, "data", "negative")
        if self.negative and not self.positive:
            fail("data.negative", "given without data.positive")
        if self.classes is not None:
            _str_list(d, "data", "classes")
            if len(self.classes) < 2:
                fail("data.classes", "needs at least two classes")
            if self.positive:
                fail("data.classes", "give either data.classes (multi-class) or data.positive (binary), not both")
        check_num(d, "data", "max_length", int, lo=2, allow_none=True)
        check_choice(d, "data", "crop", ("center", "start"))
        check_num(d, "data", "window", int, lo=16, allow_none=True)
        check_bool(d, "data", "rc_augment")


@dataclass
class SplitArgs:
    """``split``: how the rows are split into train / val / test or folds."""

    method: str | None = None  # column | random | folds; default: folds for variant-effect, random for sequences
    column: str = "split"  # method column: TSV column / FASTA header key with train / val / test
    val_fraction: float = 0.1  # method random: by record (seeded hash of the record id)
    test_fraction: float = 0.1
    n_folds: int = 5  # method folds: out-of-fold predictions for every row
    block_size: int = 100  # variant-effect: genomic block (bp) of the fold grouping (chrom, pos // block_size)
    seed: int = 0
    duplicates: str = "error"  # same sequence in two splits: error | drop (kept on the training side)
    final: bool = True  # method folds: also fit on all rows and save that model
    folds: list[int] | None = None  # method folds: fit only these folds (a quick check; metrics cover their rows)

    def validate(self, task: str) -> None:
        """Check every value (the default method follows ``task``)."""
        is_variant = task == "variant-effect"
        if self.method is None:
            self.method = "folds" if is_variant else "random"
        s = vars(self)
        check_choice(s, "split", "method", SPLIT_METHODS)
        if is_variant and self.method == "random":
            fail("split.method", "variant-effect tasks split by genomic blocks: use folds (or column)")
        if not isinstance(self.column, str) or not self.column:
            fail("split.column", f"must be a column name, got {self.column!r}")
        check_num(s, "split", "val_fraction", float, lo=0, hi=0.9)
        check_num(s, "split", "test_fraction", float, lo=0, hi=0.9)
        if self.val_fraction + self.test_fraction >= 1:
            fail("split.test_fraction", "split.val_fraction + split.test_fraction must be < 1")
        check_num(s, "split", "n_folds", int, lo=2)
        check_num(s, "split", "block_size", int, lo=1)
        check_num(s, "split", "seed", int, lo=0)
        check_choice(s, "split", "duplicates", ("error", "drop"))
        check_bool(s, "split", "final")
        if self.folds is not None:
            ks = self.folds
            if not isinstance(ks, list) or not ks or len(set(ks)) != len(ks) or not all(
                    isinstance(k, int) and not isinstance(k, bool) and 0 <= k < self.n_folds for k in ks):
                fail("split.folds", f"must be distinct fold numbers 0..{self.n_folds - 1}, got {ks!r}")


@dataclass
class LoraArgs:
    """``lora``: the adapters of mode lora."""

    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))

    def validate(self) -> None:
        """Check every value (a single target becomes a one-item list)."""
        lo = vars(self)
        check_num(lo, "lora", "r", int, lo=1)
        check_num(lo, "lora", "alpha", float, lo=0, lo_open=True)
        check_num(lo, "lora", "dropout", float, lo=0, hi=0.9)
        t = self.targets
        if isinstance(t, str):
            t = self.targets = [t]
        if not isinstance(t, list) or not t or any(x not in LORA_TARGETS for x in t):
            fail("lora.targets", f"a non-empty list of {', '.join(LORA_TARGETS)}, got {t!r}")


@dataclass
class HeadArgs:
    """``head``: the new head on the backbone's hidden states."""

    hidden: int = 64  # MLP width (0: a linear head)
    dropout: float = 0.1
    layer: str = "final"  # final (after the final norm) or blocks.K
    radius: int = 64  # variant-effect: pooled positions [off - radius, off + radius]
    parts: list[str] = field(default_factory=lambda: ["ref", "alt", "diff"])  # variant-effect features
    zero_shot: bool = True  # variant-effect: delta log-likelihood of the two windows as a feature

    def validate(self) -> None:
        """Check every value."""
        h = vars(self)
        check_num(h, "head", "hidden", int, lo=0)
        check_num(h, "head", "dropout", float, lo=0, hi=0.9)
        if not isinstance(self.layer, str) or not (self.layer == "final" or (
                self.layer.startswith("blocks.") and self.layer[7:].isdigit())):
            fail("head.layer", f"final or blocks.K, got {self.layer!r}")
        check_num(h, "head", "radius", int, lo=0)
        parts = self.parts
        if not isinstance(parts, list) or not parts or any(p not in ("ref", "alt", "diff") for p in parts):
            fail("head.parts", f"a non-empty list of ref, alt, diff, got {parts!r}")
        check_bool(h, "head", "zero_shot")


@dataclass
class FinetuneTrainArgs:
    """``train``: batch, optimizer, schedule, precision and logging of each fit."""

    micro_batch_size: int = 16
    grad_accum: int = 1
    lr: float = 5e-4  # backbone (LoRA adapters or all weights)
    head_lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.01
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    epochs: float = 3.0  # passes over the training rows (rounded up to whole steps) ...
    max_steps: int | None = None  # ... or a fixed number of optimizer steps
    grad_clip: float = 1.0
    class_weight: str = "none"  # none | balanced (classification loss weights from the training labels)
    seed: int = 0
    precision: str = "auto"
    base_dtype: str = "auto"  # auto: float32 for full, the checkpoint's dtype for lora/frozen; or float32/bfloat16
    activation_checkpointing: bool = False
    max_log_pole: float | None = 0.0  # full mode: Hyena-LI log-poles clamped as in pretraining (null: off)
    val_interval: int = 100  # optimizer steps between validations (when there is a val split)
    log_interval: int = 10
    deterministic: bool = False
    num_workers: int = 0

    def validate(self, task: str) -> None:
        """Check every value (betas become floats, precision a string); class_weight depends on ``task``."""
        tr = vars(self)
        check_optimization(tr)
        check_num(tr, "train", "head_lr", float, lo=0, lo_open=True)
        check_num(tr, "train", "epochs", float, lo=0, lo_open=True)
        check_num(tr, "train", "max_steps", int, lo=1, allow_none=True)
        check_choice(tr, "train", "class_weight", ("none", "balanced"))
        if self.class_weight == "balanced" and task == "sequence-regression":
            fail("train.class_weight", "not used by regression tasks")
        check_choice(tr, "train", "base_dtype", ("auto", "float32", "bfloat16", "float16"))
        check_num(tr, "train", "num_workers", int, lo=0)


@dataclass
class EvalArgs:
    """``eval``: prediction batch size and bootstrap of the metrics."""

    batch_size: int = 32
    n_boot: int = 1000
    seed: int = 0

    def validate(self) -> None:
        """Check every value."""
        e = vars(self)
        check_num(e, "eval", "batch_size", int, lo=1)
        check_num(e, "eval", "n_boot", int, lo=0)
        check_num(e, "eval", "seed", int, lo=0)


@dataclass
class FinetuneCheckpointArgs:
    """``checkpoint``: how often each fit saves, how many to keep, whether it resumes."""

    interval: int = 200
    keep_last: int = 2
    resume: str = "auto"

    def validate(self) -> None:
        """Check every value."""
        c = vars(self)
        check_num(c, "checkpoint", "interval", int, lo=1)
        check_num(c, "checkpoint", "keep_last", int, lo=1)
        if self.resume not in ("auto", "none"):
            fail("checkpoint.resume", f"auto or none, got {self.resume!r} (each fit resumes from its own folder)")


@dataclass
class FinetuneOutputArgs:
    """``output``: the run folder, its loggers and whether LoRA models are also saved merged."""

    dir: str = "runs/finetune"
    progress_bar: bool = True
    tensorboard: bool = False
    save_merged: bool = True

    def validate(self) -> None:
        """Check every value."""
        if not isinstance(self.dir, str) or not self.dir:
            fail("output.dir", "must be a folder path")
        o = vars(self)
        check_bool(o, "output", "progress_bar")
        check_bool(o, "output", "tensorboard")
        check_bool(o, "output", "save_merged")


SECTIONS: dict[str, type] = {"data": FinetuneDataArgs, "split": SplitArgs, "lora": LoraArgs, "head": HeadArgs,
                             "train": FinetuneTrainArgs, "eval": EvalArgs, "checkpoint": FinetuneCheckpointArgs,
                             "distributed": DistributedArgs, "output": FinetuneOutputArgs}

# The full default config, in the order of ``config.json``.
DEFAULTS: dict[str, Any] = {
    "task": None,  # sequence-classification | sequence-regression | variant-effect
    "base": "default",  # shipped model name, checkpoint folder (also a converted Evo 2 model)
    "mode": "lora",  # lora (peft adapters) | full | frozen (head only)
    **{name: section_defaults(cls) for name, cls in SECTIONS.items()},
}


@dataclass
class FinetuneConfig:
    """A validated fine-tuning config: ``cfg.train.lr``, ``cfg.split.method``, ... (top-level keys as in
    ``DEFAULTS``), plus resolved paths; ``to_dict`` for config.json."""

    task: str | None = None
    base: str = "default"
    mode: str = "lora"
    data: FinetuneDataArgs = field(default_factory=FinetuneDataArgs)
    split: SplitArgs = field(default_factory=SplitArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    head: HeadArgs = field(default_factory=HeadArgs)
    train: FinetuneTrainArgs = field(default_factory=FinetuneTrainArgs)
    eval: EvalArgs = field(default_factory=EvalArgs)
    checkpoint: FinetuneCheckpointArgs = field(default_factory=FinetuneCheckpointArgs)
    distributed: DistributedArgs = field(default_factory=DistributedArgs)
    output: FinetuneOutputArgs = field(default_factory=FinetuneOutputArgs)
    source: str | None = field(default=None, compare=False)  # the config file it was read from, if any

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str | None = None) -> FinetuneConfig:
        """Fill in defaults, build the sections and validate (ConfigError names the first bad key)."""
        merged = merge_sections(doc, DEFAULTS)
        cfg = cls(task=merged["task"], base=merged["base"], mode=merged["mode"], source=source,
                  **{name: sec(**merged[name]) for name, sec in SECTIONS.items()})
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The full config (defaults filled in) as a JSON-serialisable dict."""
        return {"task": self.task, "base": self.base, "mode": self.mode,
                **{name: asdict(getattr(self, name)) for name in SECTIONS}}

    def validate(self) -> None:
        """Check every value; raise ConfigError naming the first bad key."""
        if self.task is None:
            fail("task", f"missing: one of {', '.join(TASKS)}")
        if self.task not in TASKS:
            fail("task", f"one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(self.base, str) or not self.base:
            fail("base", f"a shipped model name or a checkpoint folder, got {self.base!r}")
        if self.mode not in MODES:
            fail("mode", f"one of {', '.join(MODES)}, got {self.mode!r}")
        self.data.validate()
        self._check_data_for_task()
        self.split.validate(self.task)
        self.lora.validate()
        self.head.validate()
        self.train.validate(self.task)
        self.eval.validate()
        self.checkpoint.validate()
        self.distributed.validate()
        self.output.validate()
        self.base_path()  # ConfigError naming ``base`` for an unknown model

    def _check_data_for_task(self) -> None:
        """``data`` keys that depend on the task."""
        d = self.data
        if self.is_variant:
            if not isinstance(d.reference, str) or not d.reference:
                fail("data.reference", "missing: variant-effect tasks need the reference FASTA of the variants")
            resolve_data_path(d.reference, "data.reference")
            if d.rc_augment:
                fail("data.rc_augment", "not used by variant-effect tasks")
            if d.score_column is not None and d.positive:
                fail("data.score_column", "give either a score column (regression) or data.positive (labels)")
            if d.classes is not None:
                fail("data.classes", "variant-effect labels are binary: use data.positive (and data.negative)")
            if d.auxiliary is not None:
                aux = d.auxiliary
                if not isinstance(aux, dict) or set(aux) != {"path", "reference"}:
                    fail("data.auxiliary", f"must be {{path: <TSV or VCF>, reference: <FASTA>}}, got {aux!r}")
                for key in ("path", "reference"):
                    if not isinstance(aux[key], str) or not aux[key]:
                        fail(f"data.auxiliary.{key}", f"must be a file path, got {aux[key]!r}")
                    resolve_data_path(aux[key], f"data.auxiliary.{key}")
        else:
            if d.auxiliary is not None:
                fail("data.auxiliary", "only variant-effect tasks take auxiliary variants")
            if d.score_column is not None:
                fail("data.score_column", f"only for variant-effect tasks; {self.task} reads data.label_column")
            if self.task == "sequence-regression" and (d.positive or d.classes):
                fail("data.positive" if d.positive else "data.classes", "not used by sequence-regression")

    @property
    def out_dir(self) -> Path:
        """Run output folder."""
        return Path(self.output.dir)

    @property
    def is_variant(self) -> bool:
        """Whether the task is variant-effect."""
        return self.task == "variant-effect"

    @property
    def data_path(self) -> Path:
        """The resolved ``data.path``."""
        return resolve_data_path(self.data.path, "data.path")

    @property
    def reference_path(self) -> Path:
        """The resolved ``data.reference``."""
        return resolve_data_path(self.data.reference, "data.reference")

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
        """Rows per optimizer step across all ranks."""
        return int(self.train.micro_batch_size) * int(self.train.grad_accum) * self.world_size()

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps for ``n_train`` training rows (max_steps, or epochs rounded up to whole steps)."""
        if self.train.max_steps is not None:
            return int(self.train.max_steps)
        return max(1, math.ceil(float(self.train.epochs) * n_train / self.global_batch()))


def load_config(path: str | Path | dict[str, Any] | None = None, overrides: list[str] | None = None
                ) -> FinetuneConfig:
    """Read ``path`` (YAML/JSON file, or a dict), apply ``--set`` overrides, validate; errors name file and key."""
    if isinstance(path, dict):
        doc, source = path, None
    else:
        doc = read_config_file(path) if path is not None else {}
        source = str(path) if path is not None else None
    try:
        return FinetuneConfig.from_dict(apply_overrides(doc, list(overrides or [])), source)
    except ConfigError as exc:
        if source is None:
            raise
        raise ConfigError(f"{source}: {exc}") from None


__all__ = ["DEFAULTS", "LORA_TARGETS", "MODES", "SECTIONS", "TASKS", "EvalArgs", "FinetuneCheckpointArgs",
           "FinetuneConfig", "FinetuneDataArgs", "FinetuneOutputArgs", "FinetuneTrainArgs", "HeadArgs", "LoraArgs",
           "SplitArgs", "load_config", "resolve_data_path"]
