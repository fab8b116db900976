"""Scores pinned to the values of commit 585479a (before the issue-16 scoring restructure) on a tiny model.

``tests/data/scoring_golden.json`` holds exact and fast scores (both strands or forward only), pads and
statuses of SNVs, indels, multi-allelic sites and contig edges, written by ``python -m
tests.test_scoring_golden --write`` on that commit. A restructure must reproduce them (bitwise on the
machine that wrote them; the tolerance only absorbs other CPUs' float rounding).
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "data" / "scoring_golden.json"
WINDOW = 64
SCORE_COLUMNS = ("delta_ll_sum", "delta_ll_mean", "delta_fast")


def _genome() -> dict[str, str]:
    rng = random.Random(7)
    return {"chr1": "".join(rng.choice("ACGT") for _ in range(300)),
            "chr2": "N" * 10 + "".join(rng.choice("ACGT") for _ in range(80))}


def _variants(genome: dict[str, str]) -> list[tuple[str, int, str, str]]:
    s = genome["chr1"]

    def alt(b: str) -> str:
        return "A" if b != "A" else "C"

    rows = [("chr1", 1, s[0], alt(s[0])), ("chr1", 2, s[1], "".join(b for b in "ACGT" if b != s[1])),
            ("chr1", 50, s[49:53], s[49]), ("chr1", 80, s[79], s[79] + "TG"), ("chr1", 90, s[89:91], "TTT"),
            ("chr1", 100, alt(s[99]), s[99]), ("chr2", 12, genome["chr2"][11], alt(genome["chr2"][11])),
            ("chr1", 298, s[297:300], s[297]), ("chr1", 300, s[299], alt(s[299]))]
    rows += [("chr1", p, s[p - 1], ",".join(b for b in "ACGT" if b != s[p - 1])) for p in range(120, 280, 23)]
    return rows


def compute(tmp: Path) -> dict[str, list[list]]:
    """Rows (id, allele, status, pad, scores...) per (mode, rc) for the pinned variants."""
    import torch

    from genomod.scoring import VariantScorer
    from tests.model_helpers import tiny_test_model

    torch.set_num_threads(1)
    genome = _genome()
    fasta = tmp / "golden.fa"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in genome.items()))
    model = tiny_test_model(0)
    out: dict[str, list[list]] = {}
    for rc in (False, True):
        scorer = VariantScorer(model, fasta, window=WINDOW, batch_size=3, rc=rc)
        for mode in ("exact", "fast"):
            df = scorer.score(_variants(genome), mode=mode)
            cols = [c for c in SCORE_COLUMNS if c in df.columns]
            out[f"{mode}/rc={int(rc)}"] = [
                [int(r.record_index), int(r.allele_index), r.status, int(r.pad)]
                + [None if math.isnan(getattr(r, c)) else float(getattr(r, c)) for c in cols]
                for r in df.itertuples(index=False)
            ]
    return out


def _dumps(data: dict[str, list[list]]) -> str:
    """JSON with one row per line (floats in round-trip repr)."""
    blocks = [f"{json.dumps(k)}: [\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]" for k, rows in data.items()]
    return "{\n" + ",\n".join(blocks) + "\n}\n"


@pytest.mark.usefixtures("one_thread")
def test_scores_match_pinned_values(tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())
    got = compute(tmp_path)
    assert sorted(got) == sorted(expected)
    for key, rows in expected.items():
        assert len(got[key]) == len(rows), key
        for g, e in zip(got[key], rows):
            assert g[:4] == e[:4], (key, g, e)
            gv = np.array([np.nan if v is None else v for v in g[4:]], dtype=float)
            ev = np.array([np.nan if v is None else v for v in e[4:]], dtype=float)
            np.testing.assert_allclose(gv, ev, rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=f"{key} {e[:2]}")


if __name__ == "__main__":  # python -m tests.test_scoring_golden --write (on the commit whose scores are pinned)
    import tempfile

    if "--write" in sys.argv:
        with tempfile.TemporaryDirectory() as d:
            GOLDEN.write_text(_dumps(compute(Path(d))))
        print(f"wrote {GOLDEN}")
