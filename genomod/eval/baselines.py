"""Baseline predictors on the BRCA1 table (CADD, phyloP, PolyPhen-2, SIFT, Align-GVGD, consequence rule).

Orientation, fixed per baseline so that HIGHER = MORE DAMAGING (the convention of genomod.eval.metrics):

============  ===========  ======================================================================
baseline      sign         why
============  ===========  ======================================================================
cadd          +1           CADD PHRED: higher = more deleterious
phylop        +1           phyloP (mammalian): higher = more conserved = more likely damaging
polyphen2     +1           PolyPhen-2 probability of damaging (0..1); present for missense only
sift          -1           SIFT score: LOW (< 0.05) = deleterious, so it is negated
agvgd_class   +1           Align-GVGD class C0..C65 stored as 0..65; C65 = most likely deleterious
consequence   +1           a priori rank (below), NOT fit on any label
============  ===========  ======================================================================

In the Findlay et al. table ``polyphen2``, ``sift`` and ``agvgd_class`` are floats with NaN for every
non-missense variant (1,807 of 3,893 rows). Those rows are never dropped silently: the metrics table
reports ``n_used`` and ``n_missing`` per row, so their AUROC is over missense variants only.
"""

from __future__ import annotations

import pandas as pd

from genomod.errors import InputError
from genomod.eval.metrics import ScoreSpec

#: A priori severity rank of a consequence (higher = more damaging); unknown consequences get NaN.
CONSEQUENCE_RANK: dict[str, int] = {
    "Nonsense": 6,
    "Canonical splice": 5,
    "Missense": 4,
    "Splice region": 3,
    "5' UTR": 2,
    "Intronic": 1,
    "Synonymous": 0,
}

#: Baseline column -> sign (+1 higher = damaging, -1 lower = damaging).
BASELINE_SIGNS: dict[str, int] = {"cadd": 1, "phylop": 1, "polyphen2": 1, "sift": -1, "agvgd_class": 1}

#: Column name of the consequence-rule score added by :func:`add_consequence_rule`.
CONSEQUENCE_RULE_COLUMN = "consequence_rule"


def consequence_rule_score(consequence: pd.Series) -> pd.Series:
    """Severity rank of each consequence from :data:`CONSEQUENCE_RANK` (float; NaN for unknown values)."""
    return consequence.astype("string").map(CONSEQUENCE_RANK).astype(float)


def add_consequence_rule(df: pd.DataFrame, column: str = "consequence") -> pd.DataFrame:
    """Return a copy of ``df`` with a ``consequence_rule`` score column."""
    if column not in df.columns:
        raise InputError(f"consequence column {column!r} not in table")
    out = df.copy()
    out[CONSEQUENCE_RULE_COLUMN] = consequence_rule_score(df[column])
    return out


def baseline_specs(df: pd.DataFrame) -> list[ScoreSpec]:
    """ScoreSpecs of the baselines present in ``df`` (consequence rule last, if its column is present)."""
    specs = [ScoreSpec(col, sign, "baseline") for col, sign in BASELINE_SIGNS.items() if col in df.columns]
    if CONSEQUENCE_RULE_COLUMN in df.columns:
        specs.append(ScoreSpec(CONSEQUENCE_RULE_COLUMN, 1, "baseline"))
    return specs


def with_baselines(df: pd.DataFrame) -> tuple[pd.DataFrame, list[ScoreSpec]]:
    """Add the consequence rule (when a ``consequence`` column exists) and return (table, baseline specs)."""
    if "consequence" in df.columns:
        df = add_consequence_rule(df)
    return df, baseline_specs(df)


def baseline_table(df: pd.DataFrame, task: str = "lof_vs_rest", label_column: str = "func_class",
                   group_columns: tuple[str, ...] = (), n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """Metrics of every baseline on the same rows of a BRCA1-style table (see genomod.eval.metrics.evaluate)."""
    from genomod.eval.metrics import evaluate, task_labels

    df, specs = with_baselines(df)
    target = "function_score" if "function_score" in df.columns else None
    return evaluate(df, specs, task_labels(df, task, label_column), target, group_columns, n_boot, seed)
