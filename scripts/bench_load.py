"""Load benchmark: score generated VCFs of increasing size with `genomod score` and report peak memory.

Peak memory must stay flat as the VCF grows (the scorer streams records). Each size runs in its own
subprocess; peak RSS is that child's (resource.RUSAGE_CHILDREN, measured after each run in a fresh parent).
Variants/s include process start and model load. ``--model preset:tiny`` scores with a randomly initialised
``tiny`` preset (same cost as a trained one), saved to a temporary checkpoint.

    python scripts/bench_load.py --sizes 10000 100000 --modes fast exact --model preset:tiny --window 128 \
        --out benchmarks/results/bench_load_cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pysam

from genomod.data_paths import brca1_reference


def make_vcf(path: Path, n: int, start: int = 41_150_000) -> None:
    """n SNVs (all three ALTs per position) on hg19 chr17 from ``start``, REF from the shipped reference."""
    fa = pysam.FastaFile(str(brca1_reference()))
    npos = (n + 2) // 3
    seq = fa.fetch("chr17", start - 1, start - 1 + npos).upper()
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr17,length=81195210>",
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    written = 0
    for i, ref in enumerate(seq):
        for alt in "ACGT":
            if alt != ref and written < n:
                lines.append(f"chr17\t{start + i}\t.\t{ref}\t{alt}\t.\tPASS\t.")
                written += 1
    path.write_text("\n".join(lines) + "\n")


def run_one(vcf: Path, out: Path, mode: str, model: str, window: int | None, env: dict[str, str] | None = None,
            cwd: Path | None = None, extra: Sequence[str] = ()) -> dict:
    """Run `genomod score` in a child process (``env``, ``cwd``: of that child; ``extra``: more options); wall
    time and the child's peak RSS."""
    cmd = [sys.executable, "-m", "genomod", "score", "-i", str(vcf), "-r", str(brca1_reference()), "-o", str(out),
           "--mode", mode, "--model", model, "--device", "cpu", *extra]
    if window:
        cmd += ["--window", str(window)]
    code = ("import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:], capture_output=True); "
            "print(json.dumps({'rc': r.returncode, 'peak_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
            " 'err': r.stderr.decode()[-300:]}))")
    t0 = time.perf_counter()
    res = json.loads(subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=env,
                                    cwd=cwd).stdout)
    res["seconds"] = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    ap.add_argument("--modes", nargs="+", default=["fast"], choices=["fast", "exact"])
    ap.add_argument("--model", default="default", help="shipped name, checkpoint folder or preset:NAME (random init)")
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/bench_load_cpu.json")
    args = ap.parse_args()
    from genomod.cli.info import collect_info

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model.startswith("preset:"):
            import torch

            from genomod.checkpoint import save_model
            from genomod.model import ModelConfig, build_model

            torch.manual_seed(0)
            model = str(save_model(build_model(ModelConfig.preset(model.split(":", 1)[1])).eval(), Path(tmp) / "m"))
        for mode in args.modes:
            for n in args.sizes:
                vcf = Path(tmp) / f"in_{n}.vcf"
                if not vcf.exists():
                    make_vcf(vcf, n)
                res = run_one(vcf, Path(tmp) / f"out_{n}.vcf", mode, model, args.window)
                row = {"variants": n, "mode": mode, "seconds": res["seconds"], "rc": res["rc"],
                       "variants_per_s": n / res["seconds"], "peak_rss_mib": res["peak_kib"] / 1024}
                if res["rc"] != 0:
                    row["error"] = res["err"]
                rows.append(row)
                print(f"{n:>8} variants ({mode}): {row['variants_per_s']:8.1f} variants/s, "
                      f"peak RSS {row['peak_rss_mib']:.0f} MiB, rc {res['rc']}", flush=True)
            runs = [r for r in rows if r["mode"] == mode]
            if len(runs) > 1:
                growth = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
                print(f"{mode}: peak RSS at {runs[-1]['variants']} / at {runs[0]['variants']} variants = {growth:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "bench_load", "settings": vars(args), "environment": collect_info(),
                               "results": rows}, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
