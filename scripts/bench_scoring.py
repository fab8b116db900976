"""Variant-scoring throughput: exact (prefix reuse) vs naive (two full forwards per variant) vs fast.

    python scripts/bench_scoring.py --n 64 --window 1024 [--preset tiny] [--device auto] [--out bench.json]

Runs on the shipped BRCA1 SNVs (Findlay 2018, hg19) with a randomly initialised model of ``--preset``
(scores are meaningless; throughput is what is measured), all modes side by side at the same batch size.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from genomod import __version__
from genomod.io import ReferenceGenome, split_variants, variants_from_tuples
from genomod.model import ModelConfig, build_model
from genomod.scoring import VariantScorer
from genomod.scoring.exact import build_site, exact_deltas, naive_deltas

DATA = Path(__file__).resolve().parents[1] / "genomod" / "data"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    """Parse arguments, time exact / naive / fast scoring, print the ratio and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48, help="number of variants (subsample of the BRCA1 table)")
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument(
        "--dtype", default=None, help="float32/bfloat16 (default: float32 on CPU, bfloat16 on CUDA)"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", default="bench_scoring.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import pandas as pd

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    dtype = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    table = pd.read_csv(DATA / "brca1" / "findlay2018_brca1_snvs.tsv", sep="\t")
    table = table.head(args.n)  # first rows: consecutive positions, ~3 alleles per site as in SGE data
    ref = ReferenceGenome(DATA / "reference" / "hg19_chr17_brca1.fa.gz")
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset(args.preset), device=device, dtype=dtype).eval()
    scorer = VariantScorer(model, ref, window=args.window, batch_size=args.batch_size)
    variants, _ = split_variants(variants_from_tuples(zip(table.chrom, table.pos, table.ref, table.alt), ref))
    groups: dict = {}
    for v in variants:
        groups.setdefault((v.contig, v.start), []).append((v.ref, v.alt))
    sites = [build_site(ref.fetch, c, s, al, args.window, ref.lengths[c]) for (c, s), al in groups.items()]
    n = len(variants)

    def timed(fn):  # noqa: ANN001, ANN202
        fn(sites[:1])  # warm-up (kernels, caches)
        _sync(device)
        t0 = time.perf_counter()
        out = fn(sites)
        _sync(device)
        return time.perf_counter() - t0, out

    t_exact, exact = timed(lambda s: exact_deltas(model, s, args.batch_size))
    t_naive, naive = timed(lambda s: naive_deltas(model, s, args.batch_size))
    tuples = list(zip(table.chrom, table.pos, table.ref, table.alt))
    scorer.score(tuples[:1], mode="fast")
    _sync(device)
    t0 = time.perf_counter()
    scorer.score(tuples, mode="fast")
    _sync(device)
    t_fast = time.perf_counter() - t0
    diff = float(max(np.abs(a - b).max() for a, b in zip(exact, naive)))
    result = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "versions": {"genomod": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "settings": {
            "preset": args.preset,
            "dtype": dtype,
            "window": args.window,
            "batch_size": args.batch_size,
            "variants": n,
            "sites": len(sites),
            "threads": torch.get_num_threads(),
        },
        "variants_per_s": {"exact_prefix_reuse": n / t_exact, "naive": n / t_naive, "fast": n / t_fast},
        "seconds": {"exact_prefix_reuse": t_exact, "naive": t_naive, "fast": t_fast},
        "exact_over_naive": t_naive / t_exact,
        "max_abs_diff_exact_vs_naive": diff,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    vps = result["variants_per_s"]
    print(
        f"{n} variants at {len(sites)} sites, window {args.window}, batch {args.batch_size}, {args.preset} "
        f"{dtype} on {result['device']}"
    )
    print(
        f"exact (prefix reuse) {vps['exact_prefix_reuse']:.2f} variants/s | naive {vps['naive']:.2f} | "
        f"fast {vps['fast']:.2f}"
    )
    print(f"exact / naive speed-up: {result['exact_over_naive']:.2f}x (max |exact - naive| = {diff:.2e})")


if __name__ == "__main__":
    main()
