"""Metrics of fine-tuned predictions with percentile-bootstrap 95% CIs (rows resampled, seeded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _boot(fn: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int) -> tuple[float | None, float | None]:
    """Percentile CI of ``fn(idx)`` over ``n_boot`` resamples of row indices (NaN resamples skipped)."""
    if n_boot <= 0 or n < 2:
        return None, None
    rng = np.random.default_rng(seed)
    vals = [fn(rng.integers(0, n, n)) for _ in range(n_boot)]
    vals = np.array([v for v in vals if np.isfinite(v)])
    if len(vals) < max(10, n_boot // 10):
        return None, None
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def _f(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def classification_metrics(y: np.ndarray, probs: np.ndarray, classes: list[str], n_boot: int = 1000,
                           seed: int = 0) -> dict[str, Any]:
    """Accuracy and macro-F1 with CIs, per-class F1 and counts; binary tasks add AUROC (CI), AUPRC and Brier."""
    from sklearn.metrics import f1_score

    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(1)
    labels = list(range(len(classes)))

    def acc(idx: np.ndarray) -> float:
        return float((pred[idx] == y[idx]).mean())

    def f1(idx: np.ndarray) -> float:
        return float(f1_score(y[idx], pred[idx], labels=labels, average="macro", zero_division=0))

    out: dict[str, Any] = {"n": int(len(y)), "counts": {c: int((y == i).sum()) for i, c in enumerate(classes)}}
    out["accuracy"], (out["accuracy_lo"], out["accuracy_hi"]) = acc(np.arange(len(y))), _boot(acc, len(y), n_boot,
                                                                                             seed)
    out["macro_f1"], (out["macro_f1_lo"], out["macro_f1_hi"]) = f1(np.arange(len(y))), _boot(f1, len(y), n_boot,
                                                                                            seed + 1)
    per = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    out["f1_per_class"] = {c: float(v) for c, v in zip(classes, per)}
    if len(classes) == 2:
        from genomod.eval.metrics import auprc, auroc, bootstrap_ci

        p1 = probs[:, 1]
        out["auroc"] = _f(auroc(y, p1))
        lo, hi = bootstrap_ci(y, p1, "auroc", n_boot=n_boot, seed=seed) if n_boot > 0 else (np.nan, np.nan)
        out["auroc_lo"], out["auroc_hi"] = _f(lo), _f(hi)
        out["auprc"] = _f(auprc(y, p1))
        out["brier"] = float(np.mean((p1 - y) ** 2))
    return out


def regression_metrics(y: np.ndarray, pred: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Pearson and Spearman (with CIs), MSE and R^2."""
    from scipy.stats import pearsonr, spearmanr

    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)

    def rho(idx: np.ndarray) -> float:
        if np.unique(y[idx]).size < 2 or np.unique(pred[idx]).size < 2:
            return np.nan
        return float(spearmanr(pred[idx], y[idx]).statistic)

    def r(idx: np.ndarray) -> float:
        if np.unique(y[idx]).size < 2 or np.unique(pred[idx]).size < 2:
            return np.nan
        return float(pearsonr(pred[idx], y[idx]).statistic)

    all_idx = np.arange(len(y))
    out: dict[str, Any] = {"n": int(len(y))}
    out["spearman"], (out["spearman_lo"], out["spearman_hi"]) = _f(rho(all_idx)), _boot(rho, len(y), n_boot, seed)
    out["pearson"], (out["pearson_lo"], out["pearson_hi"]) = _f(r(all_idx)), _boot(r, len(y), n_boot, seed + 1)
    mse = float(np.mean((pred - y) ** 2)) if len(y) else np.nan
    var = float(np.var(y)) if len(y) else np.nan
    out["mse"] = _f(mse)
    out["r2"] = _f(1 - mse / var) if var and var > 0 else None
    return out


__all__ = ["classification_metrics", "regression_metrics"]
