"""Matplotlib figures (Agg backend, written atomically): ROC, PR, score vs continuous target, reliability."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from genomod.utils import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def _finite(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(y) & np.isfinite(s)
    return y[ok], s[ok]


def roc_plot(y: np.ndarray, scores: Mapping[str, np.ndarray], path: str | os.PathLike,
             title: str = "ROC") -> None:
    """ROC curves of several oriented scores (higher = positive) on one axis; legend shows AUROC and n."""
    from genomod.eval.metrics import auroc

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        yy, ss = _finite(np.asarray(y, float), np.asarray(s, float))
        if yy.size == 0 or yy.min() == yy.max():
            continue
        fpr, tpr, _ = roc_curve(yy, ss)
        ax.plot(fpr, tpr, lw=1.3, label=f"{name} ({auroc(yy, ss):.3f}, n={yy.size})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def pr_plot(y: np.ndarray, scores: Mapping[str, np.ndarray], path: str | os.PathLike,
            title: str = "Precision-recall") -> None:
    """Precision-recall curves of several oriented scores; legend shows AUPRC and n; prevalence line dashed."""
    from genomod.eval.metrics import auprc

    fig, ax = plt.subplots(figsize=(5.5, 5))
    y = np.asarray(y, float)
    for name, s in scores.items():
        yy, ss = _finite(y, np.asarray(s, float))
        if yy.size == 0 or yy.max() == 0:
            continue
        prec, rec, _ = precision_recall_curve(yy, ss)
        ax.plot(rec, prec, lw=1.3, label=f"{name} ({auprc(yy, ss):.3f}, n={yy.size})")
    prevalence = np.nanmean(y) if np.isfinite(y).any() else 0.0
    ax.axhline(prevalence, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="Recall", ylabel="Precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="upper right")
    _save(fig, path)


def scatter_plot(scores: Mapping[str, np.ndarray], target: np.ndarray, classes: np.ndarray,
                 path: str | os.PathLike, target_name: str = "function score") -> None:
    """One panel per score: oriented score (x) vs the continuous target (y), points coloured by class."""
    names = list(scores)
    ncol = min(3, max(1, len(names)))
    nrow = max(1, -(-len(names) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.6 * nrow), squeeze=False)
    classes = np.asarray(classes, dtype=object)
    labels = [c for c in dict.fromkeys(classes.tolist()) if c is not None and c == c]
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(names):
        ax = axes[k // ncol][k % ncol]
        s = np.asarray(scores[name], float)
        for j, cls in enumerate(sorted(map(str, labels))):
            m = (classes.astype(str) == cls) & np.isfinite(s) & np.isfinite(target)
            ax.scatter(s[m], np.asarray(target, float)[m], s=4, alpha=0.5, color=cmap(j % 10), label=cls)
        ax.set(xlabel=f"{name} (higher = damaging)", ylabel=target_name)
        ax.legend(fontsize=6, markerscale=2)
    for k in range(len(names), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.tight_layout()
    _save(fig, path)


def reliability_plot(y: np.ndarray, p: np.ndarray, path: str | os.PathLike, n_bins: int = 10,
                     title: str = "Reliability (out-of-fold)") -> None:
    """Calibration curve: mean predicted probability vs observed frequency in equal-width bins."""
    from sklearn.calibration import calibration_curve

    yy, pp = _finite(np.asarray(y, float), np.asarray(p, float))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    if yy.size and yy.min() != yy.max():
        frac, mean = calibration_curve(yy, pp, n_bins=n_bins, strategy="uniform")
        ax.plot(mean, frac, marker="o", lw=1.3, label=f"head (n={yy.size})")
        ax.legend(fontsize=8, loc="upper left")
    ax.set(xlabel="Mean predicted probability", ylabel="Observed fraction positive", title=title,
           xlim=(0, 1), ylim=(0, 1))
    _save(fig, path)
