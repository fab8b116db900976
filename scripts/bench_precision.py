"""Accuracy, speed and memory of float32, bfloat16 and weight-only int8 scoring on the BRCA1 SNVs, side by side.

    python scripts/bench_precision.py                        # shipped default model, all 3,893 SNVs, fast mode
    python scripts/bench_precision.py --exact-limit 300      # + exact mode on the first 300 SNVs
    python scripts/bench_precision.py --limit 200 --configs fp32 bf16 int8 int8-bf16 --out /tmp/p.json

Configs: ``fp32`` (float32), ``bf16`` (bfloat16; Hyena-LI poles/residues stay float32), ``int8`` (torchao
weight-only int8 Linear layers, float32 activations), ``int8-bf16`` (int8 weights, bfloat16 activations).
``fp32`` always runs: it is the reference. Each config runs in its own subprocess, one after the other, so
that peak RSS is that config's own: load the model (``load_model(dtype=, quantize=)``), warm up, score the
SNVs of the shipped BRCA1 table (Findlay et al. 2018; the table and hg19 reference that
``genomod eval brca1`` uses) in fast mode and, with ``--exact-limit N``, the first N in exact mode.

Per config and mode it reports max and 99th-percentile |score - score_fp32| and Spearman vs fp32 (over
variants scored by both), AUROC for LOF vs rest (oriented: lower score = damaging), variants/s (scoring
call, input parsing included, after a warm-up), weight bytes (``genomod.precision.weight_bytes``) and peak
RSS of the process (``resource.getrusage``; on CUDA also ``torch.cuda.max_memory_allocated``). JSON (device,
versions, threads, settings, machine load before and after) goes to ``--out``, written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's genomod, not another installed copy

CONFIGS: dict[str, tuple[str, str | None]] = {
    "fp32": ("float32", None),
    "bf16": ("bfloat16", None),
    "int8": ("float32", "int8"),
    "int8-bf16": ("bfloat16", "int8"),
}
SCORE_COLUMN = {"fast": "delta_fast", "exact": "delta_ll_mean"}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def load_table(table: str | None, limit: int | None):
    """The BRCA1 SNV table ``genomod eval brca1`` reads (or ``table``), its first ``limit`` rows."""
    from genomod.eval.brca1 import load_brca1

    df = load_brca1(table)
    return df.head(limit).reset_index(drop=True) if limit else df


# ---- one config (subprocess) -----------------------------------------------------------------------
def run_config(settings: dict[str, Any], name: str, scores_path: str) -> dict[str, Any]:
    """Load the model in config ``name``, score fast (and exact), save the scores, return timings and memory."""
    import torch

    from genomod.checkpoint import load_model
    from genomod.eval.brca1 import KEYS, brca1_reference_path
    from genomod.precision import weight_bytes
    from genomod.scoring import VariantScorer

    torch.set_num_threads(settings["threads"])
    dtype, quantize = CONFIGS[name]
    keys = load_table(settings["table"], settings["limit"])[list(KEYS)]
    ref = settings["reference"] or str(brca1_reference_path())
    rss_before = peak_rss_bytes()
    t0 = time.perf_counter()
    model = load_model(settings["model"], device=settings["device"], dtype=dtype, quantize=quantize)
    load_s = time.perf_counter() - t0
    scorer = VariantScorer(model, ref, window=settings["window"], batch_size=settings["batch_size"],
                           rc=settings["rc"])
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    out: dict[str, Any] = {"config": name, "dtype": dtype, "quantize": quantize or "none", "load_s": load_s,
                           "weights_bytes": weight_bytes(model), "window": scorer.window,
                           "rss_before_load_bytes": rss_before}
    arrays = {}
    modes = [("fast", len(keys))] + ([("exact", min(settings["exact_limit"], len(keys)))]
                                     if settings["exact_limit"] else [])
    for mode, n in modes:
        part = keys.head(n)
        scorer.score(part.head(min(16, n)), mode=mode)  # warm-up: first-call allocations, kernel choice
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        df = scorer.score(part, mode=mode)
        if cuda:
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        ok = (df["status"] == "ok").to_numpy()
        arrays[mode] = np.where(ok, df[SCORE_COLUMN[mode]].to_numpy(float), np.nan)
        out[mode] = {"variants": int(n), "scored": int(ok.sum()), "seconds": sec,
                     "variants_per_s": float(n / sec) if sec > 0 else None}
    out["peak_rss_bytes"] = peak_rss_bytes()
    if cuda:
        out["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    np.savez(scores_path, **arrays)
    return out


# ---- comparison ---------------------------------------------------------------------------------------
def compare(scores: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """max and p99 |scores - reference| and Spearman rho over rows finite in both."""
    import pandas as pd

    ok = np.isfinite(scores) & np.isfinite(reference)
    if not ok.any():
        return {"compared": 0}
    diff = np.abs(scores[ok] - reference[ok])
    rho = pd.Series(scores[ok]).corr(pd.Series(reference[ok]), method="spearman") if ok.sum() >= 3 else None
    return {"compared": int(ok.sum()), "max_abs_diff": float(diff.max()),
            "p99_abs_diff": float(np.percentile(diff, 99)), "mean_abs_diff": float(diff.mean()),
            "spearman_vs_fp32": None if rho is None or not np.isfinite(rho) else float(rho)}


def lof_auroc(df, scores: np.ndarray) -> float | None:
    """AUROC of -score for LOF vs rest over labelled, scored rows (None without both classes)."""
    from genomod.eval.metrics import auroc, task_labels

    y = task_labels(df).to_numpy(float)[: len(scores)]
    ok = np.isfinite(y) & np.isfinite(scores)
    if not ok.any() or len(set(y[ok])) < 2:
        return None
    return auroc(y[ok], -scores[ok])


def _child(settings: dict[str, Any], name: str, scores_path: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(settings), name, scores_path]
    env = {**os.environ, "OMP_NUM_THREADS": str(settings["threads"])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {"config": name, "error": lines[-1] if lines else f"exit code {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def add_comparisons(results: list[dict[str, Any]], scores: dict[str, dict[str, np.ndarray]], df: Any) -> None:
    """Per config and mode: AUROC, and against fp32 the score differences, Spearman and speed ratio (in place)."""
    for row in results:
        name = row["config"]
        for mode in ("fast", "exact"):
            if name not in scores or mode not in scores[name]:
                continue
            s = scores[name][mode]
            row[mode]["auroc_lof_vs_rest"] = lof_auroc(df, s)
            if "fp32" in scores and name != "fp32":
                row[mode].update(compare(s, scores["fp32"][mode]))
                fp32_rate = next(r for r in results if r["config"] == "fp32")[mode]["variants_per_s"]
                if fp32_rate and row[mode]["variants_per_s"]:
                    row[mode]["speed_vs_fp32"] = row[mode]["variants_per_s"] / fp32_rate


def print_table(results: list[dict[str, Any]]) -> None:
    """One tab-separated line per config and mode."""
    cols = ["config", "mode", "variants_per_s", "speed_vs_fp32", "max_abs_diff", "p99_abs_diff",
            "spearman_vs_fp32", "auroc_lof_vs_rest"]
    print("\t".join(cols + ["weights_MiB", "peak_rss_MiB"]))
    for row in results:
        for mode in ("fast", "exact"):
            if mode in row:
                vals = [row["config"], mode] + [row[mode].get(c) for c in cols[2:]]
                vals += [row["weights_bytes"] / 2**20, row["peak_rss_bytes"] / 2**20]
                print("\t".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in vals))
        if "error" in row:
            print(f"{row['config']}\terror: {row['error']}")


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Parse arguments, run each config in a subprocess, compare with fp32, print and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="shipped model name or checkpoint folder")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["fp32", "bf16", "int8"])
    ap.add_argument("--limit", type=int, default=None, help="only the first N SNVs of the table (default: all)")
    ap.add_argument("--exact-limit", type=int, default=0, help="also exact mode on the first N SNVs (default 0)")
    ap.add_argument("--window", type=int, default=None, help="scoring window (default: the model's)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rc", action="store_true", help="average both strands")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--table", default=None, help="BRCA1 table (default: the shipped one)")
    ap.add_argument("--reference", default=None, help="reference FASTA (default: the shipped hg19 BRCA1 region)")
    ap.add_argument("--out", default=None, help="JSON (default benchmarks/results/bench_precision_<device>.json)")
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        print(json.dumps(run_config(json.loads(args._child[0]), args._child[1], args._child[2])))
        return None

    import torch

    from genomod import __version__
    from genomod.precision import torchao_version
    from genomod.utils import cpu_name, resolve_device, write_json

    if (args.limit is not None and args.limit < 1) or args.exact_limit < 0:
        ap.error("--limit must be >= 1 and --exact-limit >= 0")
    device = resolve_device(args.device)
    configs = ["fp32"] + [c for c in dict.fromkeys(args.configs) if c != "fp32"]
    settings = {"model": args.model, "device": str(device), "window": args.window, "batch_size": args.batch_size,
                "rc": args.rc, "limit": args.limit, "exact_limit": args.exact_limit,
                "threads": args.threads or os.cpu_count() or 1, "table": args.table, "reference": args.reference}
    out_path = Path(args.out or ROOT / "benchmarks" / "results" / f"bench_precision_{device.type}.json")
    df = load_table(args.table, args.limit)
    load_before = os.getloadavg()
    results, scores = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_precision_") as tmp:
        for name in configs:
            path = str(Path(tmp) / f"{name}.npz")
            row = _child(settings, name, path)
            if "error" not in row:
                with np.load(path) as z:
                    scores[name] = {k: z[k] for k in z.files}
            results.append(row)
            print(f"{name}: {row.get('error') or 'done'}", flush=True)
    add_comparisons(results, scores, df)
    gpu = device.type == "cuda"
    report = {
        "benchmark": "bench_precision",
        "device": torch.cuda.get_device_name(device) if gpu else cpu_name(),
        "device_type": device.type,
        "versions": {"genomod": __version__, "torch": torch.__version__, "torchao": torchao_version(),
                     "python": platform.python_version()},
        "threads": settings["threads"],
        "settings": {**settings, "configs": configs, "variants": len(df)},
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "results": results,
    }
    print_table(results)
    write_json(out_path, report)
    print(f"wrote {out_path}")
    return report


if __name__ == "__main__":
    main()
