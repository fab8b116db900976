"""Classification metrics for variant-effect scores: AUROC/AUPRC with stratified bootstrap CIs, Spearman.

Convention: every score passed to these functions is oriented so that HIGHER = MORE DAMAGING. A zero-shot
delta log-likelihood (alt - ref) is negative for damaging variants, so it enters as ``-delta_ll``.

AUROC and AUPRC are computed with vectorised NumPy code that reproduces scikit-learn's ``roc_auc_score``
(average ranks for ties, i.e. the Mann-Whitney U statistic) and ``average_precision_score`` (step-wise
precision at each distinct threshold) exactly; the tests check the equality against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

from genomod.errors import ConfigError, InputError

#: Task name -> (positive classes, negative classes) of the ``func_class`` column (Findlay et al. 2018).
TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lof_vs_rest": (("LOF",), ("FUNC", "INT")),  # the Evo 2 convention: INT counts as negative
    "lof_vs_func": (("LOF",), ("FUNC",)),  # intermediate variants dropped
}

#: Zero-shot model score columns whose sign must be flipped (negative = damaging).
# raw zero-shot scores and their background-calibrated versions (genomod.scoring.calibration)
NEGATIVE_IS_DAMAGING = (
    "delta_ll_mean", "delta_ll_sum", "delta_fast", "delta_ll_mean_cal", "delta_ll_sum_cal", "delta_fast_cal",
    "delta_embed", "delta_embed_cal",
)


@dataclass(frozen=True)
class ScoreSpec:
    """One score to evaluate: a table column, its sign (+1: higher = damaging, -1: lower) and a kind label."""

    column: str
    sign: int = 1
    kind: str = "score"

    @property
    def name(self) -> str:
        """Display name: the column, prefixed with '-' when it is negated."""
        return self.column if self.sign > 0 else f"-{self.column}"

    def values(self, df: pd.DataFrame) -> np.ndarray:
        """Oriented float values (higher = more damaging); NaN where missing."""
        if self.column not in df.columns:
            raise InputError(f"score column {self.column!r} not in table (columns: {', '.join(map(str, df.columns))})")
        vals = pd.to_numeric(df[self.column], errors="coerce").to_numpy(dtype=float)
        return vals * float(self.sign)


def binary_labels(values: pd.Series, positive: Iterable[str], negative: Iterable[str] | None = None) -> pd.Series:
    """1.0 for values in ``positive``, 0.0 for ``negative`` (all other non-missing values when None), else NaN."""
    pos = {str(p) for p in positive}
    if not pos:
        raise ConfigError("at least one positive class is needed")
    neg = None if negative is None else {str(n) for n in negative}
    if neg is not None and pos & neg:
        raise ConfigError(f"class(es) {', '.join(sorted(pos & neg))} listed as both positive and negative")
    text = values.astype("string")
    out = pd.Series(np.nan, index=values.index, dtype=float)
    out[text.isin(pos).fillna(False).to_numpy(dtype=bool)] = 1.0
    if neg is None:
        is_neg = text.notna() & ~text.isin(pos)
    else:
        is_neg = text.isin(neg)
    out[is_neg.fillna(False).to_numpy(dtype=bool)] = 0.0
    return out


def task_labels(df: pd.DataFrame, task: str = "lof_vs_rest", label_column: str = "func_class") -> pd.Series:
    """Binary labels (1 = LOF) for a named task of :data:`TASKS`; rows outside the task are NaN."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if label_column not in df.columns:
        raise InputError(f"label column {label_column!r} not in table")
    pos, neg = TASKS[task]
    return binary_labels(df[label_column], pos, neg)


def _check(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    s = np.asarray(s, dtype=float).ravel()
    if y.shape != s.shape:
        raise InputError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    return y, s


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (equals sklearn.metrics.roc_auc_score); NaN unless both classes present."""
    y, s = _check(y, s)
    return float(_auroc_rows(y[None, :], s[None, :])[0])


def auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision (equals sklearn.metrics.average_precision_score); NaN without positives."""
    y, s = _check(y, s)
    return float(_ap_rows(y[None, :], s[None, :])[0])


def _auroc_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Row-wise AUROC of (B, n) label/score matrices via average ranks (Mann-Whitney U)."""
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    ranks = rankdata(s, axis=1)
    u = (ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = u / (n_pos * n_neg)
    out[(n_pos == 0) | (n_neg == 0)] = np.nan
    return out


def _ap_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Row-wise average precision of (B, n) matrices, ties handled as one threshold (as scikit-learn)."""
    order = np.argsort(-s, axis=1, kind="mergesort")
    ys = np.take_along_axis(y, order, axis=1)
    ss = np.take_along_axis(s, order, axis=1)
    tps = np.cumsum(ys, axis=1)
    n_pos = tps[:, -1]
    distinct = np.ones_like(ss, dtype=bool)
    distinct[:, :-1] = ss[:, 1:] != ss[:, :-1]  # last index of each run of equal scores
    precision = tps / np.arange(1, ss.shape[1] + 1)[None, :]
    at = np.where(distinct, tps, 0.0)
    prev = np.zeros_like(at)
    prev[:, 1:] = np.maximum.accumulate(at, axis=1)[:, :-1]
    contrib = np.where(distinct, (tps - prev) * precision, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = contrib.sum(axis=1) / n_pos
    out[n_pos == 0] = np.nan
    return out


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"auroc": _auroc_rows, "auprc": _ap_rows}


def bootstrap_ci(y: np.ndarray, s: np.ndarray, metric: str = "auroc", n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, chunk: int = 250) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric`` ('auroc'|'auprc'); classes resampled separately (stratified).

    Deterministic for a given ``seed``; returns (nan, nan) when ``n_boot`` is 0 or a class is missing.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    y, s = _check(y, s)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if n_boot <= 0 or pos.size == 0 or neg.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    fn = METRICS[metric]
    stats = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = np.concatenate([rng.choice(pos, size=(b, pos.size)), rng.choice(neg, size=(b, neg.size))], axis=1)
        stats.append(fn(y[idx], s[idx]))
    vals = np.concatenate(stats)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(vals, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def spearman(s: np.ndarray, target: np.ndarray) -> float:
    """Spearman rho between a score and a continuous target over rows where both are finite (NaN if < 3)."""
    s, target = np.asarray(s, dtype=float), np.asarray(target, dtype=float)
    ok = np.isfinite(s) & np.isfinite(target)
    if ok.sum() < 3 or np.ptp(s[ok]) == 0 or np.ptp(target[ok]) == 0:
        return float("nan")
    return float(spearmanr(s[ok], target[ok]).statistic)


def score_metrics(y: np.ndarray, s: np.ndarray, target: np.ndarray | None = None, n_boot: int = 1000,
                  seed: int = 0) -> dict[str, float | int]:
    """AUROC/AUPRC with CIs, counts and Spearman for one score; rows with NaN label are outside the task.

    Rows in the task whose score is missing are counted in ``n_missing`` and excluded from the metrics.
    """
    y, s = _check(y, s)
    in_task = np.isfinite(y)
    has = in_task & np.isfinite(s)
    yy, ss = y[has], s[has]
    row: dict[str, float | int] = {
        "n": int(in_task.sum()), "n_used": int(has.sum()), "n_missing": int((in_task & ~np.isfinite(s)).sum()),
        "n_pos": int((yy == 1).sum()), "n_neg": int((yy == 0).sum()),
    }
    for m in ("auroc", "auprc"):
        row[m] = float(METRICS[m](yy[None, :], ss[None, :])[0]) if yy.size else float("nan")
        lo, hi = bootstrap_ci(yy, ss, m, n_boot=n_boot, seed=seed)
        row[f"{m}_lo"], row[f"{m}_hi"] = lo, hi
    if target is not None:
        t = np.asarray(target, dtype=float)
        row["spearman"] = spearman(s[in_task], t[in_task])
    return row


def evaluate(df: pd.DataFrame, scores: Sequence[ScoreSpec], labels: pd.Series, target_column: str | None = None,
             group_columns: Sequence[str] = (), n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Metrics for every score overall and per value of each group column, on exactly the same rows.

    Returns one row per (score, group) with columns score, kind, group, and those of :func:`score_metrics`.
    """
    if len(labels) != len(df):
        raise InputError(f"labels ({len(labels)}) and table ({len(df)}) differ in length")
    y = labels.to_numpy(dtype=float)
    target = None
    if target_column is not None:
        if target_column not in df.columns:
            raise InputError(f"continuous column {target_column!r} not in table")
        target = pd.to_numeric(df[target_column], errors="coerce").to_numpy(dtype=float)
    groups: list[tuple[str, np.ndarray]] = [("overall", np.ones(len(df), dtype=bool))]
    for col in group_columns:
        if col not in df.columns:
            raise InputError(f"group column {col!r} not in table")
        for value in sorted(df[col].dropna().astype(str).unique()):
            groups.append((f"{col}={value}", (df[col].astype("string") == value).fillna(False).to_numpy(bool)))
    rows = []
    for spec in scores:
        s = spec.values(df)
        for gname, mask in groups:
            metrics = score_metrics(y[mask], s[mask], None if target is None else target[mask], n_boot, seed)
            rows.append({"score": spec.name, "column": spec.column, "kind": spec.kind, "group": gname, **metrics})
    return pd.DataFrame(rows)


def default_specs(columns: Iterable[str], negate: Iterable[str] = (), kinds: Mapping[str, str] | None = None
                  ) -> list[ScoreSpec]:
    """ScoreSpecs for ``columns``: negated when listed in ``negate`` or a known zero-shot delta column."""
    negate = set(negate)
    kinds = dict(kinds or {})
    out = []
    for col in columns:
        sign = -1 if (col in negate or col in NEGATIVE_IS_DAMAGING) else 1
        out.append(ScoreSpec(col, sign, kinds.get(col, "model" if col in NEGATIVE_IS_DAMAGING else "score")))
    return out
