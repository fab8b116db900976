"""Grouped cross-validation for heads: genomic blocks, GroupKFold folds, out-of-fold predictions, nested sweep.

Neighbouring variants share most of their sequence context (and so most of their embedding), so a random
split leaks. Variants are grouped into genomic blocks (``pos // block_size``, 100 bp by default, or exon
ids when given) and a block is never on both sides of a split. Layers are chosen by INNER grouped CV on the
outer training part only (nested), so the out-of-fold AUROC of a sweep is not optimistically biased.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genomod.errors import ConfigError, InputError
from genomod.heads.base import FeatureSpec, Head, build_features, new_head

HeadFactory = Callable[[], Head]


def genomic_blocks(pos: np.ndarray, block_size: int = 100, exon_ids: Sequence[Any] | None = None) -> np.ndarray:
    """Group id per variant: ``pos // block_size`` (int), or the given exon ids (as strings) when present."""
    if exon_ids is not None:
        ids = np.asarray(exon_ids, dtype=object)
        if ids.shape[0] != np.asarray(pos).shape[0]:
            raise InputError(f"exon ids ({ids.shape[0]}) and positions ({np.asarray(pos).shape[0]}) differ")
        return ids.astype(str)
    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}")
    return np.asarray(pos, dtype=np.int64) // int(block_size)


def grouped_folds(groups: np.ndarray, n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index (0..n_splits-1) per row from GroupKFold(shuffle=True, random_state=seed); deterministic."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_splits < 2:
        raise ConfigError(f"n_splits must be >= 2, got {n_splits}")
    if n_groups < n_splits:
        raise InputError(f"only {n_groups} genomic block(s) for {n_splits} folds; use fewer folds or smaller blocks")
    folds = np.full(groups.shape[0], -1, dtype=np.int64)
    splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(groups.shape[0]), groups=groups)):
        folds[test] = k
    return folds


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    from genomod.eval.metrics import auroc

    return auroc(y, p)


def cross_validate(X: np.ndarray, y: np.ndarray, groups: np.ndarray, make_head: HeadFactory, n_splits: int = 5,
                   seed: int = 0, folds: np.ndarray | None = None) -> dict[str, Any]:
    """Out-of-fold probabilities of heads fit by grouped K-fold; returns {'oof', 'folds', 'fold_auroc'}."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    folds = grouped_folds(groups, n_splits, seed) if folds is None else np.asarray(folds)
    oof = np.full(y.shape[0], np.nan)
    fold_auroc = []
    for k in np.unique(folds[folds >= 0]):
        test, train = folds == k, (folds >= 0) & (folds != k)
        head = make_head().fit(X[train], y[train])
        oof[test] = head.predict_proba(X[test])
        fold_auroc.append(_auroc(y[test], oof[test]))
    return {"oof": oof, "folds": folds, "fold_auroc": fold_auroc}


def nested_layer_sweep(features: Mapping[str, np.ndarray], y: np.ndarray, groups: np.ndarray,
                       make_head: HeadFactory, n_splits: int = 5, inner_splits: int = 3, seed: int = 0
                       ) -> dict[str, Any]:
    """Nested grouped CV: per outer fold pick the layer with the best INNER-CV AUROC, then predict the fold.

    Returns {'oof', 'folds', 'chosen_layers' (one per outer fold), 'inner_auroc' (fold -> layer -> AUROC),
    'fold_auroc'}; the outer test fold is never used to choose the layer.
    """
    if not features:
        raise ConfigError("layer sweep needs at least one layer")
    y = np.asarray(y, dtype=np.float64)
    groups = np.asarray(groups)
    folds = grouped_folds(groups, n_splits, seed)
    oof = np.full(y.shape[0], np.nan)
    chosen: list[str] = []
    inner_scores: list[dict[str, float]] = []
    fold_auroc = []
    for k in range(n_splits):
        test, train = folds == k, folds != k
        scores = {}
        for layer, X in features.items():
            inner = cross_validate(X[train], y[train], groups[train], make_head, inner_splits, seed + 1 + k)
            scores[layer] = _auroc(y[train], inner["oof"])
        best = max(scores, key=lambda name: (np.nan_to_num(scores[name], nan=-1.0), -list(features).index(name)))
        head = make_head().fit(features[best][train], y[train])
        oof[test] = head.predict_proba(features[best][test])
        chosen.append(best)
        inner_scores.append(scores)
        fold_auroc.append(_auroc(y[test], oof[test]))
    return {"oof": oof, "folds": folds, "chosen_layers": chosen, "inner_auroc": inner_scores,
            "fold_auroc": fold_auroc}


@dataclass(frozen=True)
class HeadCV:
    """How heads are fitted and judged: head kind and parameters, outer / inner folds, seed, genomic block size
    of the grouping, and the feature parts (ref, alt, diff of the pooled embeddings)."""

    kind: str = "logistic"
    n_splits: int = 5
    inner_splits: int = 3
    seed: int = 0
    block_size: int = 100
    parts: tuple[str, ...] = ("ref", "alt", "diff")
    params: Mapping[str, Any] = field(default_factory=dict)


def fit_heads_on_embeddings(emb: Mapping[str, np.ndarray], layers: Sequence[str], y: np.ndarray,
                            pos: np.ndarray, cv: HeadCV | None = None, zero_shot: np.ndarray | None = None,
                            exon_ids: Sequence[Any] | None = None) -> dict[str, Any]:
    """Layer sweep with nested grouped CV, final head on all rows, Brier score (no files: the report writes them).

    ``y`` has NaN for rows outside the task; rows with NaN label, embedding or zero-shot score are excluded
    (oof NaN, fold -1) and counted. Returns {'oof', 'folds', 'blocks'} (arrays over all rows), 'summary' and
    the final 'head'.
    """
    from sklearn.metrics import brier_score_loss

    cv = cv or HeadCV()
    layers = list(layers)
    if not layers:
        raise ConfigError("no layer given for the heads")
    y = np.asarray(y, dtype=np.float64)
    spec = FeatureSpec(tuple(cv.parts), zero_shot=zero_shot is not None)
    feats = {layer: build_features(emb, spec, layer if f"ref/{layer}" in emb else None, zero_shot)
             for layer in layers}
    ok = np.isfinite(y)
    for X in feats.values():
        ok &= np.isfinite(X).all(axis=1)
    if ok.sum() < 2 * cv.n_splits:
        raise InputError(f"only {int(ok.sum())} labelled, embedded variants: too few for {cv.n_splits}-fold CV")
    blocks_all = genomic_blocks(pos, cv.block_size, exon_ids)

    def make() -> Head:
        return new_head(cv.kind, params=dict(cv.params))

    sub = {layer: X[ok] for layer, X in feats.items()}
    if len(layers) > 1:
        res = nested_layer_sweep(sub, y[ok], blocks_all[ok], make, cv.n_splits, cv.inner_splits, cv.seed)
    else:
        res = cross_validate(sub[layers[0]], y[ok], blocks_all[ok], make, cv.n_splits, cv.seed)
        res["chosen_layers"] = [layers[0]] * cv.n_splits
    # Final head: layer chosen by (non-nested) grouped CV on all rows; the nested OOF above is the estimate.
    full_cv = {layer: _auroc(y[ok], cross_validate(X, y[ok], blocks_all[ok], make, cv.n_splits, cv.seed)["oof"])
               for layer, X in sub.items()} if len(layers) > 1 else {layers[0]: _auroc(y[ok], res["oof"])}
    best = max(full_cv, key=lambda name: (np.nan_to_num(full_cv[name], nan=-1.0), -layers.index(name)))
    final = make().fit(sub[best], y[ok])
    final.layer = best
    final.feature_spec = spec
    oof = np.full(y.shape[0], np.nan)
    oof[ok] = res["oof"]
    folds = np.full(y.shape[0], -1, dtype=np.int64)
    folds[ok] = res["folds"]
    brier = float(brier_score_loss(y[ok], res["oof"]))
    summary = {
        "kind": cv.kind, "layers": layers, "feature_spec": spec.to_dict(), "n_used": int(ok.sum()),
        "n_excluded": int((~ok).sum()), "n_splits": cv.n_splits, "inner_splits": cv.inner_splits,
        "seed": cv.seed, "grouping": "exon_ids" if exon_ids is not None else f"pos // {cv.block_size}",
        "oof_auroc": _auroc(y[ok], res["oof"]), "oof_brier": brier,
        "fold_auroc": res["fold_auroc"], "chosen_layers_per_fold": res["chosen_layers"],
        "final_layer": best, "final_layer_cv_auroc": full_cv,
    }
    final.meta.update(training={k: v for k, v in summary.items() if k != "fold_auroc"})
    return {"oof": oof, "folds": folds, "blocks": blocks_all, "summary": summary, "head": final}
