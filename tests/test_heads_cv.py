"""Heads: grouped folds never split a block, nested layer sweep, save/load reproduces probabilities exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genomod.errors import ConfigError, InputError, ModelError
from genomod.eval.report import write_head_outputs
from genomod.heads import (
    FeatureSpec,
    HeadCV,
    LogisticHead,
    MLPHead,
    build_features,
    cross_validate,
    fit_heads_on_embeddings,
    genomic_blocks,
    grouped_folds,
    load_head,
    nested_layer_sweep,
)


def synthetic_embeddings(n: int = 240, hidden: int = 6, seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray]:
    """Two layers: 'blocks.1' carries the label signal in alt - ref, 'blocks.0' is noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    pos = np.sort(rng.choice(np.arange(10_000, 40_000), size=n, replace=False))
    emb: dict[str, np.ndarray] = {}
    for layer, signal in (("blocks.0", 0.0), ("blocks.1", 1.5)):
        ref = rng.normal(size=(n, hidden))
        alt = ref + rng.normal(scale=0.5, size=(n, hidden))
        alt[:, 0] += signal * y
        emb[f"ref/{layer}"], emb[f"alt/{layer}"] = ref.astype(np.float32), alt.astype(np.float32)
    return emb, y, pos


def test_blocks_and_grouped_split_never_share_a_block() -> None:
    _, y, pos = synthetic_embeddings()
    blocks = genomic_blocks(pos, 100)
    assert (blocks == pos // 100).all()
    folds = grouped_folds(blocks, n_splits=5, seed=3)
    assert set(folds) == set(range(5))
    for b in np.unique(blocks):
        assert len(set(folds[blocks == b])) == 1  # a block is on one side of every split
    np.testing.assert_array_equal(folds, grouped_folds(blocks, n_splits=5, seed=3))
    exons = genomic_blocks(pos, exon_ids=[f"e{i % 7}" for i in range(len(pos))])
    assert len(np.unique(exons)) == 7
    with pytest.raises(InputError):
        grouped_folds(np.array([1, 1, 2]), n_splits=5)
    with pytest.raises(ConfigError):
        genomic_blocks(pos, 0)


def test_features() -> None:
    emb, y, _ = synthetic_embeddings(20, 3)
    X = build_features(emb, FeatureSpec(("ref", "alt", "diff"), zero_shot=True), "blocks.1", zero_shot=y)
    assert X.shape == (20, 10) and X.dtype == np.float64
    np.testing.assert_allclose(X[:, 6:9], X[:, 3:6] - X[:, 0:3])
    with pytest.raises(ConfigError):
        FeatureSpec(("ref", "bogus"))
    with pytest.raises(InputError):
        build_features(emb, FeatureSpec(), "blocks.9")


@pytest.mark.parametrize("cls", [LogisticHead, MLPHead])
def test_save_load_reproduces_probabilities_exactly(tmp_path: Path, cls: type) -> None:
    emb, y, _ = synthetic_embeddings(120, 4)
    X = build_features(emb, FeatureSpec(), "blocks.1")
    params = {"max_iter": 50} if cls is MLPHead else {}
    head = cls(layer="blocks.1", params=params).fit(X, y)
    p = head.predict_proba(X)
    assert p.shape == (120,) and ((p >= 0) & (p <= 1)).all()
    head.save(tmp_path / "h")
    loaded = load_head(tmp_path / "h")
    assert type(loaded) is cls and loaded.layer == "blocks.1"
    assert np.array_equal(loaded.predict_proba(X), p)
    info = json.loads((tmp_path / "h" / "head.json").read_text())
    assert info["kind"] == head.kind and info["feature_spec"]["parts"] == ["ref", "alt", "diff"]
    assert not list(tmp_path.glob("h/*.pkl"))
    if cls is LogisticHead:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        sc = StandardScaler().fit(X)
        ref = LogisticRegression(max_iter=2000).fit(sc.transform(X), y).predict_proba(sc.transform(X))[:, 1]
        np.testing.assert_allclose(p, ref, atol=1e-6)


def test_load_head_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        load_head(tmp_path)
    (tmp_path / "head.json").write_text("{not json")
    (tmp_path / "head.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelError):
        load_head(tmp_path)
    (tmp_path / "head.json").write_text(json.dumps({"format": "genomod-head", "kind": "logistic"}))
    with pytest.raises(ModelError):
        load_head(tmp_path)


def test_cross_validate_and_nested_sweep_picks_informative_layer() -> None:
    emb, y, pos = synthetic_embeddings()
    groups = genomic_blocks(pos)
    feats = {layer: build_features(emb, FeatureSpec(("diff",)), layer) for layer in ("blocks.0", "blocks.1")}
    cv = cross_validate(feats["blocks.1"], y, groups, LogisticHead, n_splits=4, seed=0)
    assert np.isfinite(cv["oof"]).all() and len(cv["fold_auroc"]) == 4
    res = nested_layer_sweep(feats, y, groups, LogisticHead, n_splits=4, inner_splits=3, seed=0)
    assert res["chosen_layers"] == ["blocks.1"] * 4
    assert all(set(s) == {"blocks.0", "blocks.1"} for s in res["inner_auroc"])
    from genomod.eval.metrics import auroc

    assert auroc(y, res["oof"]) > 0.8


def test_fit_heads_on_embeddings_writes_outputs(tmp_path: Path) -> None:
    emb, y, pos = synthetic_embeddings()
    y = y.copy()
    y[:5] = np.nan  # outside the task
    emb["ref/blocks.0"][7] = np.nan  # unscored variant
    zs = np.random.default_rng(1).normal(size=len(y))  # an uninformative zero-shot column
    res = fit_heads_on_embeddings(emb, ["blocks.0", "blocks.1"], y, pos, HeadCV(n_splits=4, inner_splits=2),
                                  zero_shot=zs)
    assert not any(tmp_path.iterdir())  # fitting writes nothing: the report does
    write_head_outputs(res, y, pos, tmp_path)
    s = res["summary"]
    assert s["n_excluded"] == 6 and s["final_layer"] == "blocks.1" and 0 <= s["oof_brier"] <= 1
    assert np.isnan(res["oof"][:5]).all() and (res["folds"][:5] == -1).all()
    for f in s["files"]:
        assert (tmp_path / f).stat().st_size > 0
    head = load_head(tmp_path / "heads" / "head")
    assert head.layer == "blocks.1" and head.feature_spec.zero_shot
    X = build_features(emb, head.feature_spec, "blocks.1", zs)
    ok = np.isfinite(X).all(axis=1)
    np.testing.assert_array_equal(head.predict_proba(X[ok]), res["head"].predict_proba(X[ok]))


def test_brca1_eval_with_heads_writes_the_head_report(tmp_path: Path) -> None:
    """``run_brca1(heads=True)`` (``genomod eval brca1 --heads``): heads fitted in genomod.heads, files written by
    the report (shipped model, every 20th BRCA1 SNV)."""
    import pandas as pd

    from genomod.data_paths import data_dir
    from genomod.eval.brca1 import run_brca1

    table = pd.read_csv(data_dir() / "brca1" / "findlay2018_brca1_snvs.tsv", sep="\t").iloc[::20]
    table.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    res = run_brca1(tmp_path / "out", model="default", mode="fast", heads=True, layers=["blocks.4"],
                    table=tmp_path / "t.tsv", n_boot=20)
    folds = pd.read_csv(tmp_path / "out" / "heads" / "folds.tsv", sep="\t")
    assert len(folds) == len(table) and set(folds["fold"]) <= set(range(-1, 5))
    assert load_head(tmp_path / "out" / "heads" / "head").layer == "blocks.4" == res["heads"]["final_layer"]
