"""Baselines on the Findlay et al. BRCA1 table: published AUROCs reproduced, missing values counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genomod.eval.baselines import CONSEQUENCE_RANK, baseline_table, consequence_rule_score
from genomod.eval.brca1 import COLUMNS, brca1_table_path, load_brca1


@pytest.fixture(scope="module")
def brca1(request: pytest.FixtureRequest) -> pd.DataFrame:
    """The shipped TSV when present, else the xlsx from the shared folder (skips when neither exists)."""
    if brca1_table_path().is_file():
        return load_brca1()
    shared = request.getfixturevalue("shared_dir")
    xlsx = shared / "data" / "brca1" / "findlay2018_sge_brca1.xlsx"
    if not xlsx.is_file():
        pytest.skip(f"{xlsx} not present")
    from genomod.eval.brca1 import brca1_from_xlsx

    return brca1_from_xlsx(xlsx)


def test_consequence_rule_is_a_priori() -> None:
    s = consequence_rule_score(pd.Series(["Nonsense", "Synonymous", "Missense", "weird"]))
    assert s.iloc[0] > s.iloc[2] > s.iloc[1] and np.isnan(s.iloc[3])
    assert sorted(CONSEQUENCE_RANK, key=CONSEQUENCE_RANK.get, reverse=True)[:2] == ["Nonsense", "Canonical splice"]


def test_brca1_baselines_reproduce_published(brca1: pd.DataFrame) -> None:
    assert len(brca1) == 3893
    assert set(COLUMNS[:8]) <= set(brca1.columns)
    table = baseline_table(brca1, "lof_vs_rest", n_boot=0)
    overall = table[table.group == "overall"].set_index("score")
    assert round(overall.loc["cadd", "auroc"], 3) == 0.804
    assert round(overall.loc["phylop", "auroc"], 3) == 0.781
    assert overall.loc["cadd", "n_used"] == 3893 and overall.loc["cadd", "n_pos"] == 823
    # PolyPhen-2/SIFT exist for missense only: reported with their n, never silently dropped
    assert overall.loc["polyphen2", "n_used"] == 2086 and overall.loc["polyphen2", "n_missing"] == 1807
    assert "-sift" in overall.index and overall.loc["-sift", "auroc"] > 0.5  # lower SIFT = damaging
    assert overall.loc["consequence_rule", "auroc"] > 0.7
    func = baseline_table(brca1, "lof_vs_func", n_boot=0)
    cadd = func[(func.group == "overall") & (func.score == "cadd")].iloc[0]
    assert (cadd.n, cadd.n_pos, cadd.n_neg) == (823 + 2821, 823, 2821)  # INT dropped


@pytest.mark.shared
def test_xlsx_builder_matches_shipped_table(shared_dir) -> None:
    xlsx = shared_dir / "data" / "brca1" / "findlay2018_sge_brca1.xlsx"
    if not xlsx.is_file() or not brca1_table_path().is_file():
        pytest.skip("needs both the xlsx and the shipped TSV")
    from genomod.eval.brca1 import brca1_from_xlsx

    a, b = brca1_from_xlsx(xlsx), load_brca1()
    for col in ("chrom", "pos", "ref", "alt", "consequence", "region", "func_class"):
        assert a[col].astype(str).tolist() == b[col].astype(str).tolist(), col
    for col in ("function_score", "cadd", "phylop", "polyphen2", "sift"):
        np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), equal_nan=True)
