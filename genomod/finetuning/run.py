"""Run a fine-tuning task: fits (folds, final, or one train/val/test fit), predictions, metrics, model, task card.

Each fit trains in its own folder ``OUT/fits/<name>/`` (``fold0``..``foldK-1`` and ``final`` for split
method folds, ``main`` otherwise) with the pretraining machinery: Lightning, pickle-free safetensors
checkpoints (the trainable tensors and the optimizer state) and exact resume from the newest valid checkpoint.
A finished fit leaves ``done.json`` and ``predictions.tsv`` and drops its checkpoints, so re-running the same
command after a kill resumes the interrupted fit and skips the finished ones.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from genomod import __version__
from genomod.checkpoint import WEIGHTS, read_checkpoint_config, save_model, shipped_models_dir
from genomod.errors import ConfigError
from genomod.finetuning.config import FinetuneConfig, load_config
from genomod.finetuning.tasks import TaskData, load_task
from genomod.model import ModelConfig
from genomod.scoring.finetuned import FT_FILE, FT_FORMAT, FT_FORMAT_VERSION, HEAD_FILE, head_output, make_head
from genomod.train.callbacks import StepLogWriter
from genomod.train.checkpointing import SafeCheckpointIO, checkpoint_step
from genomod.utils import atomic_dir, atomic_path, file_digest, write_json

log = logging.getLogger("genomod.finetuning")
TRAINABLE = "trainable.safetensors"


class FinetuneCheckpointIO(SafeCheckpointIO):
    """Training checkpoints of a fit: only the trainable tensors (adapters / weights + head) are stored; the
    frozen rest comes from the base model when the fit resumes (``FinetuneModule.strict_loading`` is off)."""

    def __init__(self, trainable: set[str], meta: dict[str, Any]) -> None:
        super().__init__(None, meta)
        self.trainable = trainable

    def write_weights(self, state_dict: dict[str, torch.Tensor], folder: Path, global_step: int) -> list[str]:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items() if k in self.trainable}
        save_file(tensors, str(folder / TRAINABLE), metadata={"format": "genomod-finetune-state"})
        (folder / "config.json").write_text(json.dumps({"format": "genomod-finetune-state", **self.training_meta,
                                                        "global_step": global_step}) + "\n")
        return [TRAINABLE]

    def read_weights(self, folder: Path) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(folder / TRAINABLE))


def _device_name(on_gpu: bool) -> str:
    if on_gpu:
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def _peak_memory(on_gpu: bool) -> dict[str, Any]:
    import resource

    out: dict[str, Any] = {"cpu_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if on_gpu:
        out["gpu_peak_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def _base_info(cfg: FinetuneConfig, base_path: Path, mcfg: ModelConfig) -> dict[str, Any]:
    shipped = base_path.resolve().parent == shipped_models_dir().resolve()
    from genomod.model import count_parameters

    return {"name": cfg.base, "resolved": base_path.name if shipped else str(base_path.resolve()),
            "shipped": shipped, "weights_sha256": file_digest(base_path / WEIGHTS), "model_name": mcfg.name,
            "parameters": count_parameters(mcfg), "max_seqlen": mcfg.max_seqlen, "dtype": mcfg.dtype}


def _head_config(cfg: FinetuneConfig, data: TaskData, mcfg: ModelConfig) -> dict[str, Any]:
    h = cfg.head
    layer = h.layer
    if layer != "final" and int(layer[7:]) >= mcfg.num_layers:
        raise ConfigError(f"head.layer: {layer} does not exist (the base model has {mcfg.num_layers} blocks)")
    n_out = 1 if data.target == "regression" else len(data.classes or [])
    head = {"kind": "variant" if cfg.is_variant else "sequence", "in_dim": mcfg.hidden_size,
            "hidden": int(h.hidden), "n_out": n_out, "dropout": float(h.dropout), "layer": layer}
    if cfg.is_variant:
        head.update(radius=int(h.radius), parts=list(h.parts), zero_shot=bool(h.zero_shot),
                    window=int(data.counts["window"]))
    else:
        head.update(max_length=int(data.counts["max_length"]), crop=cfg.data.crop)
    return head


def _base_dtype(cfg: FinetuneConfig, mcfg: ModelConfig) -> str:
    d = cfg.train.base_dtype
    if d != "auto":
        return d
    return "float32" if cfg.mode == "full" else mcfg.dtype


def _plan(cfg: FinetuneConfig, data: TaskData) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(fit name, training rows, evaluated rows) in run order."""
    if cfg.split.method == "folds":
        assert data.folds is not None
        # auxiliary rows (fold -1) train every fit and are never evaluated
        fits = [(f"fold{k}", np.flatnonzero(data.folds != k), np.flatnonzero(data.folds == k))
                for k in (cfg.split.folds or range(int(cfg.split.n_folds)))]
        if cfg.split.final:
            fits.append(("final", np.arange(len(data)), np.zeros(0, dtype=np.int64)))
        return fits
    return [("main", data.rows("train", "aux"), data.rows("val", "test"))]


def _target_card(data: TaskData, train_rows: np.ndarray) -> dict[str, Any]:
    if data.target == "regression":
        y = data.y[train_rows]
        std = float(np.std(y)) or 1.0
        return {"kind": "regression", "mean": float(np.mean(y)), "std": std}
    return {"kind": "classification", "classes": list(data.classes or []),
            "positive_index": 1 if len(data.classes or []) == 2 else None}


def _outputs(target: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    """Class probabilities (N, k) or predicted values (N,) in label units."""
    t = torch.from_numpy(raw)
    if target["kind"] == "regression":
        return head_output({"target": target}, t)
    return torch.softmax(t.float(), dim=-1).numpy()


def _prediction_table(data: TaskData, rows: np.ndarray, out: np.ndarray, target: dict[str, Any]) -> pd.DataFrame:
    df = pd.DataFrame({"id": [data.ids[i] for i in rows], "split": data.split[rows]})
    if data.variants is not None:
        v = data.variants.iloc[rows].reset_index(drop=True)
        df = pd.concat([v, df], axis=1)
        df["block"] = data.groups[rows]
    if target["kind"] == "regression":
        df["y"] = data.y[rows]
        df["pred"] = out
    else:
        classes = target["classes"]
        df["y"] = [classes[int(i)] for i in data.y[rows]]
        df["pred"] = [classes[int(i)] for i in out.argmax(1)] if len(out) else []
        for j, c in enumerate(classes):
            df[f"p_{c}"] = out[:, j] if len(out) else []
    return df


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    write_json(path, doc, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def build_module(cfg: FinetuneConfig, data: TaskData, base_path: Path, mcfg: ModelConfig,
                 train_rows: np.ndarray, total_steps: int) -> Any:
    """The FinetuneModule of one fit: base weights, LoRA / trainable / frozen backbone, a seeded new head."""
    from genomod.checkpoint import load_model
    from genomod.finetuning.module import FinetuneModule, class_weights

    backbone = load_model(base_path, device="cpu", dtype=_base_dtype(cfg, mcfg))
    backbone.checkpoint_info = None  # its weights are about to change: no longer the base checkpoint's
    for p in backbone.parameters():
        p.requires_grad_(cfg.mode == "full")
    backbone.set_activation_checkpointing(bool(cfg.train.activation_checkpointing))
    torch.manual_seed(int(cfg.train.seed))
    head = make_head(_head_config(cfg, data, mcfg))
    model = backbone
    if cfg.mode == "lora":
        from genomod.finetuning.adapters import wrap_lora

        lo = cfg.lora
        model = wrap_lora(backbone, int(lo.r), float(lo.alpha), float(lo.dropout), list(lo.targets))
    weights = None
    if data.target == "classification" and cfg.train.class_weight == "balanced":
        weights = class_weights(data.y[train_rows], len(data.classes or []))
    return FinetuneModule(model, head, data.target, cfg.mode, cfg.train, total_steps, weights)


def save_finetuned(module: Any, folder: Path, card: dict[str, Any], mode: str, save_merged: bool,
                   base_dtype: str) -> list[str]:
    """Write a fine-tuned model folder atomically: head, adapters / weights, finetune.json; returns file names."""
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in module.head.state_dict().items()},
                  str(tmp / HEAD_FILE), metadata={"format": FT_FORMAT})
        dtype = None if base_dtype == "float32" else base_dtype
        training = {"finetune": {k: card[k] for k in ("task", "mode", "base")}}
        if mode == "lora":
            from genomod.finetuning.adapters import merge, save_adapters

            save_adapters(module.model, tmp)
            if save_merged:
                merged = merge(module.model)
                save_model(merged, tmp, training=training, dtype=dtype)
        elif mode == "full":
            save_model(module.backbone, tmp, training=training, dtype=dtype)
        (tmp / FT_FILE).write_text(json.dumps(card, indent=2, default=_json_default) + "\n")
    return sorted(p.name for p in folder.iterdir())


def _fit_data(cfg: FinetuneConfig, data: TaskData, train_rows: np.ndarray, eval_rows: np.ndarray,
              target: dict[str, Any], total: int) -> Any:
    """The TaskDataModule of one fit (training rows; validation rows unless the split method is folds)."""
    from genomod.finetuning.module import TaskDataModule, TaskRows

    t = cfg.train
    mean, std = (target["mean"], target["std"]) if target["kind"] == "regression" else (0.0, 1.0)
    train_set = TaskRows(data, train_rows, seed=int(t.seed), rc_augment=bool(cfg.data.rc_augment),
                         target_mean=mean, target_std=std)
    val_rows = np.intersect1d(eval_rows, data.rows("val")) if cfg.split.method != "folds" else eval_rows[:0]
    val_set = TaskRows(data, val_rows, target_mean=mean, target_std=std) if len(val_rows) else None
    return TaskDataModule(train_set, val_set, int(t.micro_batch_size), int(t.grad_accum), total,
                          int(t.num_workers))


def _fit_trainer(cfg: FinetuneConfig, fit_dir: Path, name: str, module: Any, total: int, validate: bool,
                 extra_callbacks: list[Any] | None) -> tuple[Any, StepLogWriter, Path | None]:
    """Trainer, step log and resume checkpoint of one fit (rank 0 trims or drops the fit's old step log)."""
    from genomod.train.callbacks import RNGState, StepCheckpoint
    from genomod.train.checkpointing import find_resume_checkpoint
    from genomod.train.trainer import check_world_size, make_trainer

    t = cfg.train
    ckpt_dir = fit_dir / "checkpoints"
    ckpt_io = FinetuneCheckpointIO(module.trainable_names(), {"fit": name, "total_steps": total})
    ckpt_cb = StepCheckpoint(ckpt_dir, int(cfg.checkpoint.interval), int(cfg.checkpoint.keep_last), total)
    log_cb = StepLogWriter(fit_dir / "train_log.jsonl")
    trainer = make_trainer(fit_dir, cfg.distributed, t.precision, total, int(t.grad_accum),
                           float(t.grad_clip), int(t.val_interval), validate,
                           [ckpt_cb, log_cb, RNGState(), *(extra_callbacks or [])], ckpt_io,
                           bool(cfg.output.progress_bar), bool(cfg.output.tensorboard),
                           bool(t.deterministic))
    check_world_size(trainer, cfg.distributed)
    ckpt_path = find_resume_checkpoint(ckpt_dir) if cfg.checkpoint.resume == "auto" else None
    if trainer.is_global_zero:
        if ckpt_path is not None:
            log.info("fit %s: resuming from %s", name, ckpt_path)
        log_cb.start(checkpoint_step(ckpt_path) if ckpt_path is not None else None)
    return trainer, log_cb, ckpt_path


def _predict_fit(cfg: FinetuneConfig, data: TaskData, module: Any, eval_rows: np.ndarray, target: dict[str, Any],
                 fit_dir: Path) -> None:
    """Predict the evaluated rows of a fit into ``predictions.tsv`` (rank 0, after training)."""
    from genomod.finetuning.module import TaskRows, predict

    on_gpu = cfg.distributed.uses_gpu()
    module.to(torch.device("cuda") if on_gpu else torch.device("cpu"))
    mean, std = (target["mean"], target["std"]) if target["kind"] == "regression" else (0.0, 1.0)
    raw = predict(module, TaskRows(data, eval_rows, target_mean=mean, target_std=std), int(cfg.eval.batch_size))
    table = _prediction_table(data, eval_rows, _outputs(target, raw), target)
    with atomic_path(fit_dir / "predictions.tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def run_fit(cfg: FinetuneConfig, data: TaskData, base_path: Path, mcfg: ModelConfig, base: dict[str, Any],
            name: str, train_rows: np.ndarray, eval_rows: np.ndarray, save_model_dir: bool,
            extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train one fit (resuming when it has a checkpoint), predict its evaluated rows, save its model if asked."""
    import lightning.pytorch as pl

    from genomod.finetuning.module import trainable_counts

    fit_dir = cfg.out_dir / "fits" / name
    done_path = fit_dir / "done.json"
    if done_path.is_file():
        log.info("fit %s already done; skipping", name)
        return json.loads(done_path.read_text())
    t0, c0 = time.time(), time.process_time()
    fit_dir.mkdir(parents=True, exist_ok=True)
    t = cfg.train
    if t.deterministic:
        torch.use_deterministic_algorithms(True)
    pl.seed_everything(int(t.seed), workers=True, verbose=False)
    total = cfg.total_steps(len(train_rows))
    target = _target_card(data, train_rows)
    module = build_module(cfg, data, base_path, mcfg, train_rows, total)
    counts = trainable_counts(module)
    dm = _fit_data(cfg, data, train_rows, eval_rows, target, total)
    trainer, log_cb, ckpt_path = _fit_trainer(cfg, fit_dir, name, module, total, dm.val_set is not None,
                                              extra_callbacks)
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path is not None else None)
    if not trainer.is_global_zero:
        return {}
    _predict_fit(cfg, data, module, eval_rows, target, fit_dir)
    on_gpu = cfg.distributed.uses_gpu()
    losses = [r["loss"] for r in log_cb.rows if "loss" in r]
    result = {"fit": name, "steps": int(trainer.global_step), "train_rows": int(len(train_rows)),
              "eval_rows": int(len(eval_rows)), "resumed_from": str(ckpt_path) if ckpt_path else None,
              "final_train_loss": losses[-1] if losses else None,
              "val": [r for r in log_cb.rows if "val_loss" in r][-1:] or None,
              "wall_time_s": round(time.time() - t0, 3),
              "cpu_time_s": round(time.process_time() - c0, 3), "parameters": counts, "target": target,
              "memory": _peak_memory(on_gpu), "device": _device_name(on_gpu)}
    if save_model_dir:
        card = model_card(cfg, data, base, target, name, mcfg)
        module.to("cpu")
        result["model_files"] = save_finetuned(module, fit_dir / "model", card, cfg.mode,
                                               bool(cfg.output.save_merged), _base_dtype(cfg, mcfg))
    _write_json(done_path, result)
    shutil.rmtree(fit_dir / "checkpoints", ignore_errors=True)  # done: the fit is not resumed again
    return result


def model_card(cfg: FinetuneConfig, data: TaskData, base: dict[str, Any], target: dict[str, Any],
               fit: str, mcfg: ModelConfig) -> dict[str, Any]:
    """``finetune.json`` of a model folder: what loading and scoring need (see genomod.scoring.finetuned)."""
    card = {"format": FT_FORMAT, "format_version": FT_FORMAT_VERSION, "genomod_version": __version__,
            "task": cfg.task, "mode": cfg.mode, "base": base, "target": target,
            "head": _head_config(cfg, data, mcfg),
            "fit": fit, "data": {"files": data.files, "label_map": data.label_map}}
    if cfg.mode == "lora":
        card["lora"] = asdict(cfg.lora)
    return card


def _metrics(cfg: FinetuneConfig, data: TaskData, table: pd.DataFrame, target: dict[str, Any]) -> dict[str, Any]:
    from genomod.finetuning.metrics import classification_metrics, regression_metrics

    n_boot, seed = int(cfg.eval.n_boot), int(cfg.eval.seed)

    def one(df: pd.DataFrame) -> dict[str, Any]:
        if target["kind"] == "regression":
            return regression_metrics(df["y"].to_numpy(float), df["pred"].to_numpy(float), n_boot, seed)
        classes = target["classes"]
        y = df["y"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
        probs = df[[f"p_{c}" for c in classes]].to_numpy(float)
        return classification_metrics(y, probs, classes, n_boot, seed)

    if cfg.split.method == "folds":
        per = {f: one(sub) for f, sub in table.groupby("split")}
        return {"out_of_fold": one(table), "per_fold": per}
    return {s: one(table[table["split"] == s]) for s in ("val", "test") if (table["split"] == s).any()}


def _card_markdown(card: dict[str, Any]) -> str:
    lines = [f"# Fine-tuned {card['task']} model ({card['mode']})", "",
             f"- base: `{card['base']['name']}` (sha256 {card['base']['weights_sha256'][:16]}...)",
             "- data: " + ", ".join(f"`{f['path']}` (sha256 {f['sha256'][:16]}...)" for f in card["data"]["files"]),
             f"- rows used: {card['data']['counts']['used']} of {card['data']['counts']['records']}; by split: "
             f"{card['data']['counts']['by_split']}",
             f"- split: {card['split']['method']}" + (f" ({card['split']['n_folds']} folds)"
                                                      if card['split']['method'] == 'folds' else ""),
             f"- trainable parameters: {card['parameters']['trainable']:,} of {card['parameters']['total']:,} "
             f"({100 * card['parameters']['trainable_fraction']:.3f}%)",
             f"- wall time: {card['wall_time_s']:.1f} s on {card['device']}", "", "## Metrics", ""]
    for split, m in card["metrics"].items():
        if split == "per_fold":
            continue
        keys = [k for k in ("accuracy", "macro_f1", "auroc", "auprc", "spearman", "pearson", "mse", "r2") if k in m]
        parts = []
        for k in keys:
            v = m[k]
            lo, hi = m.get(f"{k}_lo"), m.get(f"{k}_hi")
            ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
            parts.append(f"{k} {v:.3f}{ci}" if v is not None else f"{k} n/a")
        lines.append(f"- {split} (n={m['n']}): " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def finetune(config: FinetuneConfig | str | os.PathLike | dict[str, Any], overrides: list[str] | None = None,
             extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Run a fine-tuning task (a config, a YAML/JSON path or a dict, plus ``--set`` overrides); returns the card.

    Writes into ``output.dir``: ``model/`` (the fine-tuned model), ``task_card.json`` and ``TASK_CARD.md``,
    ``predictions.tsv`` (out-of-fold or val/test rows), ``config.json`` and ``fits/<name>/`` (logs, checkpoints).
    """
    cfg = config if isinstance(config, FinetuneConfig) else load_config(
        config if isinstance(config, dict) else str(config), overrides)
    t0 = time.time()
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    base_path = cfg.base_path()
    mcfg = ModelConfig.from_dict(read_checkpoint_config(base_path)["model"], source=str(base_path))
    data = load_task(cfg, mcfg.max_seqlen)
    base = _base_info(cfg, base_path, mcfg)
    _write_json(out / "config.json", cfg.to_dict())
    fits = _plan(cfg, data)
    model_fit = fits[-1][0] if cfg.split.method != "folds" or cfg.split.final else None
    results = {}
    for name, train_rows, eval_rows in fits:
        results[name] = run_fit(cfg, data, base_path, mcfg, base, name, train_rows, eval_rows,
                                save_model_dir=name == model_fit, extra_callbacks=extra_callbacks)
    if any(not r for r in results.values()):
        return {}  # not global rank 0
    kinds = {"chrom": str, "id": str, "split": str}
    if data.target == "classification":
        kinds.update(y=str, pred=str)
    tables = [pd.read_csv(cfg.out_dir / "fits" / name / "predictions.tsv", sep="\t", dtype=kinds,
                          keep_default_na=False) for name, _, ev in fits if len(ev)]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    target = results[fits[-1][0]]["target"]
    metrics = _metrics(cfg, data, table, target) if len(table) else {}
    with atomic_path(out / "predictions.tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    if model_fit is not None:
        src = out / "fits" / model_fit / "model"
        with atomic_dir(out / "model") as tmp_dst:
            shutil.copytree(src, tmp_dst, dirs_exist_ok=True)
            doc = json.loads((tmp_dst / FT_FILE).read_text())
            doc["metrics"] = metrics
            (tmp_dst / FT_FILE).write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    ref = results[model_fit or fits[-1][0]]
    split_info = asdict(cfg.split)
    if data.folds is not None:
        split_info["folds"] = [{"fold": int(k), "rows": int((data.folds == k).sum()),
                                "blocks": int(len(set(data.groups[data.folds == k])))}
                               for k in range(int(cfg.split.n_folds))]
    card = {"format": "genomod-task-card", "genomod_version": __version__, "task": cfg.task, "mode": cfg.mode,
            "base": base, "data": {"files": data.files, "counts": data.counts, "label_map": data.label_map},
            "split": split_info, "metrics": metrics, "parameters": ref["parameters"],
            "fits": {k: {kk: vv for kk, vv in v.items() if kk != "target"} for k, v in results.items()},
            "wall_time_s": round(time.time() - t0, 3),
            "fit_wall_time_s": round(sum(r["wall_time_s"] for r in results.values()), 3),
            "fit_cpu_time_s": round(sum(r["cpu_time_s"] for r in results.values()), 3),
            "device": ref["device"], "memory": ref["memory"], "model_dir": str(out / "model") if model_fit else None,
            "config": cfg.to_dict()}
    _write_json(out / "task_card.json", card)
    with atomic_path(out / "TASK_CARD.md") as tmp:
        tmp.write_text(_card_markdown(card))
    return card


__all__ = ["FinetuneCheckpointIO", "build_module", "finetune", "model_card", "run_fit", "save_finetuned"]
