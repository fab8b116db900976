"""run_report writes metrics.json, scores.tsv, report.md and non-empty PNGs for a generic table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genomod.errors import InputError
from genomod.eval.report import run_report


def synthetic(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cls = rng.choice(["LOF", "FUNC", "INT"], size=n, p=[0.25, 0.65, 0.1])
    fs = np.where(cls == "LOF", -1.5, 0.0) + rng.normal(scale=0.5, size=n)
    return pd.DataFrame({
        "chrom": "chr1", "pos": np.arange(1000, 1000 + n) * 7, "ref": "A", "alt": "G", "cls": cls,
        "region": rng.choice(["coding", "noncoding"], size=n), "fs": fs,
        "delta_ll_mean": -0.8 * (cls == "LOF") + rng.normal(size=n),
        "cons": -fs + rng.normal(size=n), "sift_like": fs + rng.normal(size=n),
    })


def test_run_report_files(tmp_path: Path) -> None:
    df = synthetic()
    df.loc[3, "cons"] = np.nan
    out = tmp_path / "rep"
    res = run_report(df, ["delta_ll_mean", "cons", "sift_like"], "cls", ["LOF"], out, negative=["FUNC"],
                     negate=["sift_like"], continuous_column="fs", group_columns=["region"], n_boot=50)
    for name in ("metrics.json", "scores.tsv", "report.md", "roc.png", "pr.png", "scatter.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "metrics.json").read_text())
    names = [s["name"] for s in meta["scores"]]
    assert names == ["-delta_ll_mean", "cons", "-sift_like"]
    assert meta["n_in_task"] == int((df.cls != "INT").sum())
    rows = {r["score"]: r for r in meta["overall"]}
    assert rows["-delta_ll_mean"]["auroc"] > 0.6
    assert rows["cons"]["n_missing"] == (1 if df.cls[3] != "INT" else 0)
    tsv = pd.read_csv(out / "scores.tsv", sep="\t")
    assert len(tsv) == len(df) and "label" in tsv.columns and "-delta_ll_mean" in tsv.columns
    md = (out / "report.md").read_text()
    assert "| `-delta_ll_mean` | model |" in md and "region=coding" in md
    assert res["table"].shape[0] == 3 * 3


def test_run_report_errors(tmp_path: Path) -> None:
    df = synthetic(40)
    with pytest.raises(InputError):
        run_report(df, ["cons"], "nope", ["LOF"], tmp_path)
    with pytest.raises(InputError):
        run_report(df, ["missing_col"], "cls", ["LOF"], tmp_path, plots=False)
    with pytest.raises(InputError):
        run_report(df, ["cons"], "cls", ["XYZ"], tmp_path, plots=False)
