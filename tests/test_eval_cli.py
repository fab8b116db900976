"""`genomod eval table` end-to-end on a small synthetic TSV, and `eval brca1 --scores-tsv`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genomod.cli.main import main


def write_tables(tmp_path: Path, n: int = 120) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    cls = rng.choice(["LOF", "FUNC", "INT"], size=n, p=[0.3, 0.6, 0.1])
    variants = pd.DataFrame({
        "chrom": "chr1", "pos": np.arange(n) * 50 + 1000, "ref": "A", "alt": "C", "cls": cls,
        "region": rng.choice(["coding", "noncoding"], size=n), "cadd_like": (cls == "LOF") + rng.normal(size=n),
    })
    scores = variants[["chrom", "pos", "ref", "alt"]].rename(columns={"chrom": "#CHROM", "pos": "POS",
                                                                       "ref": "REF", "alt": "ALT"})
    scores["delta_ll_mean"] = -1.0 * (cls == "LOF") + rng.normal(size=n)
    tsv, sc = tmp_path / "variants.tsv", tmp_path / "scores.tsv"
    variants.to_csv(tsv, sep="\t", index=False)
    scores.iloc[:-3].to_csv(sc, sep="\t", index=False)  # three variants unscored
    return tsv, sc


def test_eval_table_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tsv, sc = write_tables(tmp_path)
    out = tmp_path / "out"
    rc = main(["eval", "table", "--tsv", str(tsv), "--label-column", "cls", "--positive", "LOF",
               "--negative", "FUNC", "--negative", "INT", "--scores-tsv", str(sc), "--score-column", "delta_ll_mean",
               "--score-column", "cadd_like", "--group-by", "region", "--n-boot", "50", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "overall AUROC -delta_ll_mean:" in text and "`cadd_like`" in text
    meta = json.loads((out / "metrics.json").read_text())
    rows = {r["score"]: r for r in meta["overall"]}
    assert rows["-delta_ll_mean"]["n_missing"] == 3 and rows["cadd_like"]["n_missing"] == 0
    assert rows["-delta_ll_mean"]["auroc"] > 0.6
    for name in ("scores.tsv", "report.md", "roc.png", "pr.png"):
        assert (out / name).stat().st_size > 0


def test_eval_table_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tsv, _ = write_tables(tmp_path)
    base = ["eval", "table", "--tsv", str(tsv), "--positive", "LOF", "--out", str(tmp_path / "o")]
    assert main(base + ["--label-column", "nope", "--score-column", "cadd_like"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(base + ["--label-column", "cls"]) == 2  # no score column
    assert main(["eval", "table", "--tsv", str(tmp_path / "missing.tsv"), "--label-column", "cls",
                 "--positive", "LOF", "--score-column", "x"]) == 2
    assert "missing.tsv" in capsys.readouterr().err


def test_eval_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--help"]) == 0
    out = capsys.readouterr().out
    assert "table" in out and "brca1" in out
    assert main(["eval", "brca1", "--help"]) == 0
    assert "--scores-tsv" in capsys.readouterr().out


def test_eval_brca1_with_precomputed_scores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from genomod.eval.brca1 import brca1_table_path, load_brca1

    if not brca1_table_path().is_file():
        pytest.skip("shipped BRCA1 table not present")
    df = load_brca1()
    rng = np.random.default_rng(0)
    sc = df[["chrom", "pos", "ref", "alt"]].copy()
    sc["delta_ll_mean"] = -0.5 * (df["func_class"] == "LOF") + rng.normal(size=len(df))
    sc.to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    rc = main(["eval", "brca1", "--scores-tsv", str(tmp_path / "s.tsv"), "--n-boot", "0",
               "--out", str(tmp_path / "b")])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "overall AUROC -delta_ll_mean:" in text and "(n=3893, 823 positive)" in text
    meta = json.loads((tmp_path / "b" / "metrics.json").read_text())
    cadd = [r for r in meta["overall"] if r["score"] == "cadd"][0]
    assert round(cadd["auroc"], 3) == 0.804
