"""Long inputs on CPU: `genomod embed` and `genomod score` (exact, fast) on one long window, chunked.

Each case (embed, score_exact, score_fast) x chunk size runs the real command in a fresh Python process, whose
own peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, so peaks of different cases never mix) and the RSS
before the command starts (Python, torch, genomod imported) are reported with the wall time of the command
(model load included) and tokens/s. The baseline is taken after importing what the commands import. The window is ``--length`` bases of the shipped hg19 BRCA1 slice
(``genomod/data/reference``), centred on BRCA1's first base; it must hold real bases only.

- embed: per-position hidden states of the last block, written to .h5 (``--length`` tokens);
- score_exact: one SNV at the centre with ``--window length`` (prefix reuse: length/2 prefix tokens, then the REF
  and ALT suffixes, length/2 each: 1.5 x length tokens);
- score_fast: the same SNV in fast mode (one forward over its tile's window: length tokens).

Each row also records the score (None when not finite) or the embedding's count of non-finite values: a model
whose Hyena-LI log-poles are positive (the shipped ``default`` before its retraining with clamped poles) grows
without bound along the sequence and gives NaN at such lengths, chunked or not; time and memory are still valid.

``--chunk-sizes 0`` runs the one-pass baseline (score: ``--chunk-size 0``; embed: one chunk of the whole window).

    python scripts/bench_long_inputs.py                       # shipped default model, 131,072 bp, chunk 8192
    python scripts/bench_long_inputs.py --chunk-sizes 2048 8192 32768 --out benchmarks/results/bench_long_inputs_cpu.json
    python scripts/bench_long_inputs.py --tiny --length 2048 --chunk-sizes 500 --out /tmp/b.json   # seconds (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("embed", "score_exact", "score_fast")
CENTRE = 41_196_312  # hg19 chr17, BRCA1's first base (1-based); the shipped slice is real bases within +-400 kb
SLICE = (40_577_018, 41_677_368)  # 1-based inclusive bounds of real bases in the shipped hg19 file (PROVENANCE.md)


def _child(spec: dict) -> None:
    """Run one case in this (fresh) process and print its measurements as one JSON line."""
    import resource

    import torch

    torch.set_num_threads(spec["threads"])
    # what the commands import, imported before the baseline so that it counts libraries, not the work
    import h5py  # noqa: F401
    import pandas  # noqa: F401
    import rich.progress  # noqa: F401

    import genomod.checkpoint  # noqa: F401
    import genomod.cli.embed  # noqa: F401
    import genomod.cli.score  # noqa: F401
    import genomod.scoring.vcf_out  # noqa: F401
    from genomod.cli.main import main

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    code = main(spec["argv"])
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"rc": code, "wall_s": wall, "peak_rss_mib": peak / 1024, "baseline_rss_mib": baseline / 1024}))


def _window(length: int) -> tuple[int, int]:
    """0-based half-open window of ``length`` bases with base length // 2 at CENTRE (as the scorers centre it)."""
    lo = CENTRE - 1 - length // 2
    return lo, lo + length


def _cases(args: argparse.Namespace, model: str, tmp: Path, reference: Path) -> list[dict]:
    """Argument vectors of every case x chunk size (the VCF for the scoring cases is written here)."""
    import pysam

    lo, hi = _window(args.length)
    with pysam.FastaFile(str(reference)) as fa:
        ref_base = fa.fetch("chr17", CENTRE - 1, CENTRE).upper()
    alt = "A" if ref_base != "A" else "G"
    vcf = tmp / "one_snv.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=81195210>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"chr17\t{CENTRE}\tbrca1_first_base\t{ref_base}\t{alt}\t.\tPASS\t.\n")
    common = ["--model", model, "--device", args.device]
    specs = []
    for chunk in args.chunk_sizes:
        for case in args.cases:
            tag = f"{case}_{chunk}"
            if case == "embed":
                argv = ["embed", "-i", str(reference), "--region", f"chr17:{lo + 1}-{hi}", "-o", str(tmp / f"{tag}.h5"),
                        "--chunk-size", str(chunk or args.length), *common]
                tokens = args.length
            else:
                mode = case.split("_")[1]
                argv = ["score", "-i", str(vcf), "-r", str(reference), "-o", str(tmp / f"{tag}.vcf"), "--mode", mode,
                        "--window", str(args.length), "--chunk-size", str(chunk), "--tsv", str(tmp / f"{tag}.tsv"),
                        *common]
                half = args.length // 2
                tokens = half + 2 * (args.length - half) if mode == "exact" else 2 * half
            specs.append({"case": case, "chunk_size": chunk, "tokens": tokens, "argv": argv, "threads": args.threads,
                          "tsv": str(tmp / f"{tag}.tsv"), "h5": str(tmp / f"{tag}.h5")})
    return specs


def _check_output(spec: dict) -> dict:
    """What the case wrote, to compare chunk sizes and spot a model that is unstable at this length: the score
    (delta_ll_sum or delta_fast; None when not finite) or the embedding's count of non-finite values."""
    import math

    if spec["case"] == "embed":
        import h5py
        import numpy as np

        bad = 0
        with h5py.File(spec["h5"], "r") as f:
            for name in f:
                ds = f[name]
                for lo in range(0, ds.shape[0], 8192):
                    bad += int((~np.isfinite(ds[lo : lo + 8192])).sum())
        return {"nonfinite_values": bad}
    header, row = Path(spec["tsv"]).read_text().splitlines()[:2]
    rec = dict(zip(header.split("\t"), row.split("\t")))
    text = rec.get("delta_ll_sum") or rec.get("delta_fast") or "nan"
    val = float(text)
    return {"score": val if math.isfinite(val) else None, "score_finite": math.isfinite(val)}


def _run_case(spec: dict, length: int, timeout: int) -> dict:
    """One case in a fresh process (so that its peak RSS is its own); the result row, printed as it lands."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        res = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {"rc": proc.returncode}
        err = proc.stderr
    except subprocess.TimeoutExpired:
        res, err = {"rc": None}, f"timed out after {timeout} s"
    row = {"case": spec["case"], "chunk_size": spec["chunk_size"], "length": length,
           "tokens": spec["tokens"], "ok": res.get("rc") == 0, **{k: v for k, v in res.items() if k != "rc"}}
    if row["ok"]:
        row["tokens_per_s"] = spec["tokens"] / max(row["wall_s"], 1e-9)
        row.update(_check_output(spec))
        print(f"{row['case']:<12} chunk {row['chunk_size']:>6}: {row['wall_s']:8.1f} s, "
              f"{row['tokens_per_s']:9.1f} tokens/s, peak RSS {row['peak_rss_mib']:7.0f} MiB "
              f"(before the command {row['baseline_rss_mib']:.0f} MiB)", flush=True)
    else:
        row["error"] = err.strip()[-500:]
        print(f"{row['case']:<12} chunk {row['chunk_size']:>6}: FAILED: {row['error'][-200:]}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=int, default=131_072, help="window length in bases (default 131,072)")
    ap.add_argument("--chunk-sizes", nargs="+", type=int, default=[8192], help="tokens per forward; 0 = one pass")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--tiny", action="store_true", help="a randomly initialised `tiny` preset instead of `default`")
    ap.add_argument("--model", default="default", help="shipped model name or checkpoint folder (without --tiny)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per case")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per case")
    ap.add_argument("--out", default="benchmarks/results/bench_long_inputs_cpu.json")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        _child(json.loads(args.child))
        return
    if args.length < 16 or any(c < 0 for c in args.chunk_sizes):
        ap.error("--length must be >= 16 and chunk sizes >= 0")
    lo, hi = _window(args.length)
    if lo + 1 < SLICE[0] or hi > SLICE[1]:
        ap.error(f"--length {args.length}: the window chr17:{lo + 1}-{hi} leaves the shipped slice of real bases "
                 f"chr17:{SLICE[0]:,}-{SLICE[1]:,} (at most {2 * (min(CENTRE - SLICE[0], SLICE[1] - CENTRE)):,} bp)")

    from genomod.cli.info import collect_info
    from genomod.data_paths import brca1_reference
    from genomod.utils import write_json

    reference = brca1_reference("hg19")
    import pysam

    with pysam.FastaFile(str(reference)) as fa:
        n_count = fa.fetch("chr17", lo, hi).upper().count("N")
    if n_count:
        sys.exit(f"window chr17:{lo + 1}-{hi} holds {n_count} N bases; choose a shorter --length")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model, label = args.model, args.model
        if args.tiny:
            import torch

            from genomod.checkpoint import save_model
            from genomod.model import ModelConfig, build_model

            torch.manual_seed(0)
            model, label = str(save_model(build_model(ModelConfig.preset("tiny")).eval(), tmp / "tiny")), "tiny"
        from genomod.checkpoint import load_model

        net = load_model(model)
        n_params, max_seqlen = net.num_parameters(), net.config.max_seqlen
        del net
        for spec in _cases(args, model, tmp, reference):
            rows.append(_run_case(spec, args.length, args.timeout))
    doc = {
        "benchmark": "bench_long_inputs",
        "model": label, "model_parameters": n_params, "model_max_seqlen": max_seqlen,
        "window": f"hg19 chr17:{lo + 1}-{hi}", "length": args.length, "device": args.device, "threads": args.threads,
        "peak_rss": "ru_maxrss of a fresh process per case (Python + torch + model + the command)",
        "versions": collect_info(), "settings": {k: v for k, v in vars(args).items() if k != "child"},
        "results": rows,
    }
    out = write_json(args.out, doc)
    print(f"wrote {out}")
    if not all(r["ok"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
