"""Metrics: equality with scikit-learn, deterministic stratified bootstrap, labels and orientation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from genomod.errors import ConfigError
from genomod.eval.metrics import (
    ScoreSpec,
    auprc,
    auroc,
    binary_labels,
    bootstrap_ci,
    evaluate,
    score_metrics,
    spearman,
    task_labels,
)


@pytest.mark.parametrize("n,decimals,seed", [(12, 0, 0), (60, 1, 1), (500, 2, 2), (500, 6, 3)])
def test_auroc_auprc_match_sklearn(n: int, decimals: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(rng.normal(size=n) + y, decimals)  # coarse rounding -> many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_single_class_is_nan() -> None:
    assert np.isnan(auroc(np.ones(5), np.arange(5.0)))
    assert np.isnan(auprc(np.zeros(5), np.arange(5.0)))


def test_bootstrap_ci_deterministic_and_contains_point() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(float)
    s = rng.normal(size=300) + y
    for metric, fn in (("auroc", auroc), ("auprc", auprc)):
        a = bootstrap_ci(y, s, metric, n_boot=300, seed=5)
        b = bootstrap_ci(y, s, metric, n_boot=300, seed=5)
        assert a == b
        assert a[0] <= fn(y, s) <= a[1]
        assert a != bootstrap_ci(y, s, metric, n_boot=300, seed=6)
    assert all(np.isnan(bootstrap_ci(y, s, n_boot=0)))
    with pytest.raises(ConfigError):
        bootstrap_ci(y, s, "f1")


def test_bootstrap_is_stratified_with_rare_positives() -> None:
    y = np.zeros(100)
    y[:2] = 1  # a plain bootstrap would often draw no positive
    s = np.linspace(0, 1, 100)[::-1]
    lo, hi = bootstrap_ci(y, s, "auroc", n_boot=200, seed=0)
    assert np.isfinite(lo) and np.isfinite(hi)


def test_labels_and_tasks() -> None:
    df = pd.DataFrame({"func_class": ["LOF", "FUNC", "INT", "LOF", None]})
    assert task_labels(df, "lof_vs_rest").tolist()[:4] == [1.0, 0.0, 0.0, 1.0]
    lf = task_labels(df, "lof_vs_func")
    assert lf.tolist()[:2] == [1.0, 0.0] and np.isnan(lf[2]) and np.isnan(lf[4])
    rest = binary_labels(df["func_class"], ["LOF"])
    assert rest.tolist()[:4] == [1.0, 0.0, 0.0, 1.0] and np.isnan(rest[4])
    with pytest.raises(ConfigError):
        task_labels(df, "nope")
    with pytest.raises(ConfigError):
        binary_labels(df["func_class"], ["LOF"], ["LOF"])


def test_orientation_and_missing_counts() -> None:
    df = pd.DataFrame({
        "label": ["LOF", "FUNC", "LOF", "FUNC", "LOF", "FUNC"],
        "delta": [-3.0, 0.1, -2.0, 0.0, np.nan, -0.1],
        "region": ["coding", "coding", "noncoding", "noncoding", "coding", "noncoding"],
    })
    labels = binary_labels(df["label"], ["LOF"])
    table = evaluate(df, [ScoreSpec("delta", -1, "model")], labels, None, ("region",), n_boot=50)
    overall = table[table.group == "overall"].iloc[0]
    assert overall.score == "-delta" and overall.auroc == 1.0
    assert (overall.n, overall.n_used, overall.n_missing) == (6, 5, 1)
    assert set(table.group) == {"overall", "region=coding", "region=noncoding"}


def test_score_metrics_spearman() -> None:
    s = np.arange(10.0)
    target = -np.arange(10.0)
    y = (s > 5).astype(float)
    row = score_metrics(y, s, target, n_boot=20)
    assert row["spearman"] == pytest.approx(-1.0)
    assert row["auroc"] == 1.0 and row["auroc_lo"] <= 1.0
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))
