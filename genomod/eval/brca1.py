"""The BRCA1 saturation-genome-editing benchmark (Findlay et al. 2018): load, score, evaluate, fit heads."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomod import data_paths
from genomod.errors import ConfigError, InputError

KEYS = ("chrom", "pos", "ref", "alt")
COLUMNS = (
    "chrom", "pos", "ref", "alt", "consequence", "region", "func_class", "function_score", "p_nonfunctional",
    "cadd", "phylop", "polyphen2", "sift", "agvgd_class", "transcript_variant", "protein_variant",
)
CODING = ("Missense", "Synonymous", "Nonsense")
XLSX_COLUMNS = {
    "position (hg19)": "pos", "reference": "ref", "alt": "alt", "consequence": "consequence",
    "func.class": "func_class", "function.score.mean": "function_score", "p.nonfunctional": "p_nonfunctional",
    "CADD.score": "cadd", "phyloP (mammalian)": "phylop", "polyphen2": "polyphen2", "sift": "sift",
    "aGVGD.class": "agvgd_class", "transcript_variant": "transcript_variant",
    "protein_variant": "protein_variant",
}


def brca1_table_path() -> Path:
    """Path of the shipped table ``genomod/data/brca1/findlay2018_brca1_snvs.tsv`` (may not exist)."""
    return data_paths.brca1_table()


def brca1_reference_path() -> Path:
    """Path of the shipped hg19 chr17 BRCA1 reference ``genomod/data/reference/hg19_chr17_brca1.fa.gz``."""
    return data_paths.brca1_reference("hg19")


def load_brca1(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read the BRCA1 SNV table (shipped TSV by default) and check its columns."""
    path = Path(path) if path is not None else brca1_table_path()
    if not path.is_file():
        raise InputError(f"{path}: BRCA1 table not found")
    df = pd.read_csv(path, sep="\t", dtype={"chrom": str, "ref": str, "alt": str})
    missing = [c for c in ("chrom", "pos", "ref", "alt", "consequence", "func_class") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def brca1_from_xlsx(path: str | os.PathLike) -> pd.DataFrame:
    """Build the shipped-table schema from Findlay et al. Supplementary Table 1 (for development and tests)."""
    raw = pd.read_excel(path, header=2)
    missing = [c for c in XLSX_COLUMNS if c not in raw.columns and c not in ("transcript_variant",
                                                                               "protein_variant")]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    df = raw[[c for c in XLSX_COLUMNS if c in raw.columns]].rename(columns=XLSX_COLUMNS)
    df.insert(0, "chrom", "chr17")
    df.insert(5, "region", np.where(df["consequence"].isin(CODING), "coding", "noncoding"))
    return df.sort_values(["pos", "alt"], kind="mergesort").reset_index(drop=True)


def read_scores_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a TSV of scores (e.g. from ``genomod score``); '#CHROM'/'CHROM' headers become chrom/pos/ref/alt."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable TSV ({str(exc).splitlines()[0]})") from None
    df.columns = [c.lstrip("#").lower() if c.lstrip("#").lower() in KEYS else c for c in df.columns]
    for col in df.columns:
        if col not in ("chrom", "ref", "alt"):
            conv = pd.to_numeric(df[col], errors="coerce")
            if conv.notna().sum() == df[col].notna().sum():
                df[col] = conv
    return df


def merge_scores(df: pd.DataFrame, scores: pd.DataFrame, columns: Sequence[str] | None = None,
                 source: str = "scores") -> pd.DataFrame:
    """Left-join score columns onto ``df`` by chrom/pos/ref/alt; unmatched variants keep NaN (counted later)."""
    missing = [k for k in KEYS if k not in scores.columns]
    if missing:
        raise InputError(f"{source}: missing key column(s) {', '.join(missing)} (need chrom, pos, ref, alt)")
    if columns is None:
        columns = [c for c in scores.columns if c.startswith("delta_")]
        if not columns:
            raise InputError(f"{source}: no score column given and none named delta_*")
    absent = [c for c in columns if c not in scores.columns]
    if absent:
        raise InputError(f"{source}: missing score column(s) {', '.join(absent)}")
    clash = [c for c in columns if c in df.columns]
    if clash:
        raise InputError(f"{source}: score column(s) {', '.join(clash)} already in the variant table")
    right = scores[list(KEYS) + list(columns)].copy()
    right["chrom"] = right["chrom"].astype(str)
    right["pos"] = pd.to_numeric(right["pos"], errors="coerce").astype("Int64")
    right = right.drop_duplicates(list(KEYS), keep="first")
    left = df.copy()
    left["chrom"] = left["chrom"].astype(str)
    left["pos"] = pd.to_numeric(left["pos"], errors="coerce").astype("Int64")
    out = left.merge(right, on=list(KEYS), how="left", validate="many_to_one")
    out.index = df.index
    return out


def default_layers(model: Any) -> list[str]:
    """Three evenly spaced block outputs (quarter, half, three quarters of the depth) of a genomod model."""
    n = int(model.config.num_layers)
    return sorted({f"blocks.{max(0, min(n - 1, round(n * f)))}" for f in (0.25, 0.5, 0.75)},
                  key=lambda s: int(s.split(".")[1]))


def score_brca1(df: pd.DataFrame, model: str = "default", mode: str = "exact", window: int | None = None,
                rc: bool = False, device: str = "auto", batch_size: int = 8,
                reference: str | os.PathLike | None = None, calibrate: bool = False) -> tuple[pd.DataFrame, Any]:
    """Score the table with VariantScorer against the shipped reference; returns (scores, scorer).

    ``calibrate``: also the background-calibrated columns (``*_cal``) from the model's calibration.tsv.
    """
    from genomod.scoring import VariantScorer

    ref = Path(reference) if reference is not None else brca1_reference_path()
    if not ref.is_file():
        raise InputError(f"{ref}: reference FASTA not found")
    scorer = VariantScorer(model=model, reference=ref, device=device, window=window, batch_size=batch_size, rc=rc,
                           calibrate=calibrate)
    scorer.check_calibration(mode)
    scores = scorer.score(df[list(KEYS)], mode=mode)
    return scores, scorer


def run_brca1(out_dir: str | os.PathLike, model: str = "default", mode: str = "exact", window: int | None = None,
              rc: bool = False, heads: bool = False, layers: Sequence[str] | None = None,
              scores_tsv: str | os.PathLike | None = None, task: str = "lof_vs_rest", n_boot: int = 1000,
              seed: int = 0, device: str = "auto", batch_size: int = 8, table: str | os.PathLike | None = None,
              head_kind: str = "logistic", n_splits: int = 5, block_size: int = 100,
              calibrate: bool = False) -> dict[str, Any]:
    """Score (or read precomputed scores), evaluate against the baselines, optionally fit heads; write a report.

    ``calibrate``: also evaluate the background-calibrated scores (``-delta_*_cal``, raw minus the model's
    mean score in the same 5-base context and ALT; genomod.scoring.calibration) beside the raw ones.
    """
    from genomod.eval.baselines import with_baselines
    from genomod.eval.metrics import TASKS, ScoreSpec, task_labels
    from genomod.eval.report import run_report

    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if mode not in ("exact", "fast"):
        raise ConfigError(f"unknown scoring mode {mode!r}; use exact or fast")
    if calibrate and scores_tsv is not None:
        raise ConfigError("--calibrate needs the model's own scores: it cannot be combined with --scores-tsv "
                          "(write calibrated columns with `genomod score --calibrate --tsv` instead)")
    df = load_brca1(table)
    scorer = None
    if scores_tsv is not None:
        pre = read_scores_tsv(scores_tsv)
        df = merge_scores(df, pre, source=str(scores_tsv))
    else:
        scores, scorer = score_brca1(df, model, mode, window, rc, device, batch_size, calibrate=calibrate)
        cols = [c for c in scorer.score_columns(mode) if c in scores.columns]  # raw, each followed by *_cal
        keep = scores[list(KEYS) + cols + [c for c in ("status", "reason") if c in scores.columns]]
        df = merge_scores(df, keep.rename(columns={"status": "score_status", "reason": "score_reason"}),
                          cols, source="VariantScorer")
    model_cols = [c for c in df.columns if c.startswith("delta_")]
    specs = [ScoreSpec(c, -1, "model") for c in model_cols]
    df, base = with_baselines(df)
    labels = task_labels(df, task)
    head_result = None
    if heads:
        if scorer is None:  # precomputed scores: the model is still needed for embeddings
            from genomod.scoring import VariantScorer

            ref = brca1_reference_path()
            scorer = VariantScorer(model=model, reference=ref, device=device, window=window,
                                   batch_size=batch_size, rc=rc)
        from genomod.eval.report import write_head_outputs
        from genomod.heads.cv import HeadCV, fit_heads_on_embeddings

        layers = list(layers) if layers else default_layers(scorer.model)
        emb = scorer.embed(df[list(KEYS)], layers=layers)
        zs = model_cols[0] if model_cols else None
        y, pos = labels.to_numpy(dtype=float), df["pos"].to_numpy()
        head_result = fit_heads_on_embeddings(
            emb, layers, y, pos, HeadCV(kind=head_kind, n_splits=n_splits, seed=seed, block_size=block_size),
            zero_shot=None if zs is None else -df[zs].to_numpy(dtype=float),
        )
        write_head_outputs(head_result, y, pos, out_dir)
        df["head_oof"] = head_result["oof"]
        df["head_fold"] = head_result["folds"]
        specs.append(ScoreSpec("head_oof", 1, "head"))
    result = run_report(
        df, specs + base, "func_class", TASKS[task][0], out_dir, negative=TASKS[task][1],
        continuous_column="function_score", group_columns=("region", "consequence"), n_boot=n_boot, seed=seed,
        title=f"BRCA1 SGE benchmark (Findlay et al. 2018), task {task}",
        extra={"task": task, "model": str(model), "mode": mode, "rc": rc,
               "window": scorer.window if scorer is not None else window,
               "scores_tsv": None if scores_tsv is None else str(scores_tsv),
               "heads": None if head_result is None else head_result["summary"],
               "calibration": None if scorer is None or scorer.calibration is None
               else scorer.calibration.summary()},
    )
    return result
