"""Evaluation reports over any variant table: metrics.json, scores.tsv, report.md and PNG figures.

All files are written atomically (``genomod.utils.atomic_path``). Scores are evaluated on exactly the same
labelled rows; a score that is missing on some of them reports ``n_used``/``n_missing`` instead of being
silently dropped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomod.errors import InputError
from genomod.eval.metrics import NEGATIVE_IS_DAMAGING, ScoreSpec, binary_labels, evaluate
from genomod.utils import atomic_path, write_json

FILES = ("metrics.json", "scores.tsv", "report.md", "roc.png", "pr.png")


def _specs(score_columns: Sequence[str | ScoreSpec], negate: Iterable[str]) -> list[ScoreSpec]:
    negate = set(negate)
    out: list[ScoreSpec] = []
    for item in score_columns:
        if isinstance(item, ScoreSpec):
            out.append(item)
        else:
            neg = item in negate or item in NEGATIVE_IS_DAMAGING
            out.append(ScoreSpec(item, -1 if neg else 1, "model" if item in NEGATIVE_IS_DAMAGING else "score"))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise InputError(f"duplicate score column(s) among {', '.join(names)}")
    return out


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj


def _fmt(v: float, lo: float | None = None, hi: float | None = None) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def metrics_markdown(table: pd.DataFrame, group: str = "overall", spearman: bool = True) -> str:
    """A Markdown table of the rows of one group: AUROC and AUPRC with 95% CIs, Spearman, n used/missing."""
    rows = table[table["group"] == group]
    head = "| score | kind | AUROC [95% CI] | AUPRC [95% CI] |" + (" Spearman |" if spearman else "")
    head += " n used | n missing | pos/neg |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows.itertuples(index=False):
        cells = [f"`{r.score}`", r.kind, _fmt(r.auroc, r.auroc_lo, r.auroc_hi), _fmt(r.auprc, r.auprc_lo, r.auprc_hi)]
        if spearman:
            cells.append(_fmt(getattr(r, "spearman", float("nan"))))
        cells += [str(r.n_used), str(r.n_missing), f"{r.n_pos}/{r.n_neg}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def breakdown_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of AUROC (n used) with one row per group and one column per score."""
    scores = list(dict.fromkeys(table["score"]))
    lines = ["| group | " + " | ".join(f"`{s}`" for s in scores) + " |", "|" + "---|" * (len(scores) + 1)]
    for group, sub in table.groupby("group", sort=False):
        by = {r.score: r for r in sub.itertuples(index=False)}
        cells = [f"{_fmt(by[s].auroc)} ({by[s].n_used})" if s in by else "" for s in scores]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_report(df: pd.DataFrame, score_columns: Sequence[str | ScoreSpec], label_column: str,
               positive: Sequence[str], out_dir: str | os.PathLike, negative: Sequence[str] | None = None,
               negate: Iterable[str] = (), continuous_column: str | None = None,
               group_columns: Sequence[str] = (), n_boot: int = 1000, seed: int = 0,
               title: str = "genomod evaluation", extra: Mapping[str, Any] | None = None,
               plots: bool = True) -> dict[str, Any]:
    """Evaluate scores against binary labels and write metrics.json, scores.tsv, report.md and figures.

    ``score_columns`` are column names (or ScoreSpecs); names in ``negate`` and the zero-shot delta columns
    (delta_ll_mean, delta_ll_sum, delta_fast) are negated so that higher = more damaging. Rows whose label
    is neither positive nor negative are outside the task. Returns the metrics.json content as a dict.
    """
    if label_column not in df.columns:
        raise InputError(f"label column {label_column!r} not in table")
    specs = _specs(score_columns, negate)
    if not specs:
        raise InputError("no score column to evaluate")
    group_columns = [g for g in group_columns if g in df.columns]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = binary_labels(df[label_column], positive, negative)
    if not (labels == 1).any():
        raise InputError(f"no row of column {label_column!r} has a positive class ({', '.join(positive)})")
    if not (labels == 0).any():
        raise InputError(f"no row of column {label_column!r} has a negative class")
    table = evaluate(df, specs, labels, continuous_column, group_columns, n_boot, seed)

    oriented = {s.name: s.values(df) for s in specs}
    scores = df.copy()
    scores["label"] = labels
    for s in specs:
        if s.sign < 0:
            scores[s.name] = oriented[s.name]
    with atomic_path(out / "scores.tsv") as tmp:
        scores.to_csv(tmp, sep="\t", index=False, na_rep="")

    overall = table[table["group"] == "overall"]
    result: dict[str, Any] = {
        "title": title,
        "label_column": label_column, "positive": list(positive),
        "negative": None if negative is None else list(negative),
        "orientation": "higher = more damaging; negated columns are shown with a leading '-'",
        "continuous_column": continuous_column, "group_columns": list(group_columns),
        "n_rows": len(df), "n_in_task": int(labels.notna().sum()),
        "n_pos": int((labels == 1).sum()), "n_neg": int((labels == 0).sum()),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95, "stratified": True},
        "scores": [{"name": s.name, "column": s.column, "sign": s.sign, "kind": s.kind} for s in specs],
        "overall": overall.to_dict(orient="records"),
        "metrics": table.to_dict(orient="records"),
        **dict(extra or {}),
    }
    write_json(out / "metrics.json", _json_safe(result), default=None)

    figures = []
    if plots:
        from genomod.eval import plots as P

        y = labels.to_numpy(dtype=float)
        P.roc_plot(y, oriented, out / "roc.png", title=f"ROC: {label_column} {'+'.join(positive)}")
        P.pr_plot(y, oriented, out / "pr.png", title=f"PR: {label_column} {'+'.join(positive)}")
        figures += ["roc.png", "pr.png"]
        if continuous_column is not None:
            target = pd.to_numeric(df[continuous_column], errors="coerce").to_numpy(dtype=float)
            P.scatter_plot(oriented, target, df[label_column].to_numpy(dtype=object), out / "scatter.png",
                           target_name=continuous_column)
            figures.append("scatter.png")

    md = [f"# {title}", "",
          f"Task: `{label_column}` in {{{', '.join(positive)}}} = positive vs "
          f"{'{' + ', '.join(negative) + '}' if negative is not None else 'all other classes'} = negative; "
          f"{result['n_in_task']} of {len(df)} rows in the task ({result['n_pos']} positive, "
          f"{result['n_neg']} negative).",
          "Scores are oriented so that higher = more damaging (a leading '-' marks a negated column, e.g. "
          "the zero-shot delta log-likelihood, which is negative for damaging variants).",
          f"95% CIs: stratified percentile bootstrap, {n_boot} resamples, seed {seed}. Rows of the task where a "
          "score is missing are counted in *n missing* and excluded for that score only.", ""]
    if continuous_column is not None:
        md.append(f"Spearman: rank correlation of the oriented score with `{continuous_column}` over the rows of "
                  "the task (for the BRCA1 function score, lower = more damaging, so good scores are negative).")
        md.append("")
    md += ["## Overall", "", metrics_markdown(table, "overall", continuous_column is not None), ""]
    if group_columns:
        md += ["## AUROC by group (n used)", "", breakdown_markdown(table), ""]
    if extra and extra.get("heads"):
        h = extra["heads"]
        md += ["## Supervised heads", "",
               f"{h.get('kind')} head on {'+'.join(h.get('feature_spec', {}).get('parts', []))} embeddings"
               f"{' + zero-shot score' if h.get('feature_spec', {}).get('zero_shot') else ''}; grouped CV "
               f"({h.get('n_splits')} folds, groups {h.get('grouping')}), layer chosen by inner CV "
               f"({h.get('inner_splits')} folds) per outer fold: {', '.join(h.get('chosen_layers_per_fold', []))}.",
               f"Out-of-fold AUROC {_fmt(h.get('oof_auroc', float('nan')))}, Brier "
               f"{_fmt(h.get('oof_brier', float('nan')))}, n used {h.get('n_used')}, excluded "
               f"{h.get('n_excluded')}; final head (layer {h.get('final_layer')}) saved in heads/head/. "
               "Fold assignment and out-of-fold predictions: heads/folds.tsv; calibration: heads/reliability.png.",
               ""]
    if extra and extra.get("calibration"):
        c = extra["calibration"]
        md += ["## Background calibration", "",
               "`*_cal` scores are the raw score minus the model's mean score at background sites with the same "
               "5-base reference context (pos-2..pos+2, forward strand) and ALT "
               f"(table {c.get('file') or 'in memory'}: {c.get('n_sites')} sites, window {c.get('window')}, "
               f"back-off below {c.get('min_count')} sites per cell: 5-mer, then 3-mer, then 1-base).", ""]
    if figures:
        md += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(md))
    result["table"] = table
    result["files"] = ["metrics.json", "scores.tsv", "report.md"] + figures
    return result


def write_head_outputs(result: Mapping[str, Any], y: np.ndarray, pos: np.ndarray, out_dir: str | os.PathLike
                       ) -> list[str]:
    """Write a ``fit_heads_on_embeddings`` result under ``out_dir/heads``: folds.tsv (per-variant block, fold,
    label, out-of-fold probability), reliability.png and the final head (safetensors + JSON); returns the files
    (also recorded in ``result['summary']['files']``)."""
    from genomod.eval.plots import reliability_plot

    hdir = Path(out_dir) / "heads"
    hdir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y, dtype=np.float64)
    oof = result["oof"]
    table = pd.DataFrame({"pos": np.asarray(pos), "block": result["blocks"], "fold": result["folds"], "label": y,
                          "oof": oof})
    with atomic_path(hdir / "folds.tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="")
    summary = result["summary"]
    ok = np.isfinite(oof)
    reliability_plot(y[ok], oof[ok], hdir / "reliability.png",
                     title=f"{summary['kind']} head, out-of-fold (Brier {summary['oof_brier']:.3f})")
    result["head"].save(hdir / "head")
    files = ["heads/folds.tsv", "heads/reliability.png", "heads/head/head.safetensors", "heads/head/head.json"]
    summary["files"] = files
    return files
