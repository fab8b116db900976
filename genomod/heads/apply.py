"""Apply a fitted head while scoring: a ``head`` column (P(damaging)) added to a stream of score rows."""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice
from typing import Any

import numpy as np

from genomod.heads.base import Head, build_features


def head_column(head: Head, scorer: Any, rows: Iterator[dict], mode: str, chunk: int = 256) -> Iterator[dict]:
    """Yield ``rows`` (VariantScorer score rows, in order) with a ``head`` column added, ``chunk`` rows at a time.

    Features follow the head's feature spec (:func:`build_features`) on ref/alt embeddings pooled by
    ``scorer.embed`` over the head's ``meta['radius']`` (default 64); a zero-shot column, when the spec asks
    for one, is the negated score of this run (higher = damaging). Skipped rows and rows whose features
    are not finite get NaN.
    """
    score_col = "delta_ll_mean" if mode == "exact" else "delta_fast"
    radius = int(getattr(head, "meta", {}).get("radius", 64))
    while True:
        block = list(islice(rows, chunk))
        if not block:
            return
        ok = [r for r in block if r["status"] == "ok"]
        for r in block:
            r["head"] = math.nan
        if ok:
            tuples = [(r["chrom"], r["pos"], r["ref"], r["alt"]) for r in ok]
            emb = scorer.embed(tuples, layers=[head.layer], radius=radius)
            zero = -np.array([r[score_col] for r in ok], dtype=float)
            X = build_features(emb, head.feature_spec, head.layer, zero)
            good = np.isfinite(X).all(axis=1)
            pred = np.full(len(ok), np.nan)
            if good.any():
                pred[good] = head.predict_proba(X[good])
            for r, p in zip(ok, pred):
                r["head"] = float(p)
        yield from block
