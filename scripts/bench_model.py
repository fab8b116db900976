"""Benchmark model forward: tokens/s and peak memory per preset and length; largest length within a budget.

Each (preset, length) runs in a fresh subprocess so that peak memory is that run's own
(peak RSS on CPU, torch.cuda.max_memory_allocated on GPU). Long inputs use the chunked forward.

    python scripts/bench_model.py                       # CPU: tiny + small at 1k, 8k, 64k
    python scripts/bench_model.py --presets evo2-7b --lengths 8192 32768 131072 --dtype bfloat16  # GPU
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def run_one(preset: str, length: int, dtype: str, device: str, chunk: int, repeats: int) -> dict:
    """Time the forward of one random-weight model on one random sequence (called in a subprocess)."""
    import torch

    from genomod.model import build_model

    torch.manual_seed(0)
    model = build_model(preset, device=device, dtype=dtype).eval()
    tokens = torch.tensor([65, 67, 71, 84], device=device)[torch.randint(0, 4, (1, length), device=device)]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            if length > chunk:
                model.log_likelihoods(tokens, chunk_size=chunk)
            else:
                model.log_likelihoods(tokens)
            sync()
            times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    best = min(times)
    return {"preset": preset, "length": length, "dtype": dtype, "device": device, "chunk": chunk,
            "seconds": best, "tokens_per_s": length / best, "peak_bytes": int(peak),
            "params": model.num_parameters()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--lengths", nargs="+", type=int, default=[1024, 8192, 65536])
    ap.add_argument("--dtype", default=None, help="float32 on CPU, bfloat16 on GPU by default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--chunk", type=int, default=8192, help="chunk size of the long (chunked) forward")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--budget-gib", type=float, default=16.0, help="memory budget for the largest-length estimate")
    ap.add_argument("--out", default="benchmarks/results/bench_model.json")
    ap.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    if args._one:
        print(json.dumps(run_one(args._one[0], int(args._one[1]), dtype, device, args.chunk, args.repeats)))
        return
    from genomod.cli.info import collect_info
    from genomod.utils import write_json

    results = []
    for preset in args.presets:
        for length in args.lengths:
            cmd = [sys.executable, __file__, "--_one", preset, str(length), "--device", device, "--dtype", dtype,
                   "--chunk", str(args.chunk), "--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                row = {"preset": preset, "length": length, "error": err}
            else:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(row)
            if "error" in row:
                print(f"{preset:>10} L={length:>8}: {row['error']}")
            else:
                print(f"{preset:>10} L={length:>8}: {row['tokens_per_s']:>10.0f} tok/s  "
                      f"peak {row['peak_bytes'] / 2**30:6.2f} GiB  ({row['seconds']:.2f} s)")
    # Largest length within the budget: peak memory is affine in L for the chunked forward (K/V cache and
    # per-position outputs grow linearly); fit on the two longest measured lengths per preset.
    estimates = {}
    for preset in args.presets:
        rows = sorted((r for r in results if r["preset"] == preset and "error" not in r), key=lambda r: r["length"])
        if len(rows) >= 2:
            a, b = rows[-2], rows[-1]
            slope = (b["peak_bytes"] - a["peak_bytes"]) / (b["length"] - a["length"])
            if slope > 0:
                est = int(b["length"] + (args.budget_gib * 2**30 - b["peak_bytes"]) / slope)
                estimates[preset] = {"bytes_per_token": slope, "max_length_estimate": est}
                print(f"{preset}: ~{slope:.0f} bytes/token beyond the fixed cost; "
                      f"largest length in {args.budget_gib:g} GiB ~ {est:,} tokens (linear extrapolation)")
    doc = {"benchmark": "bench_model", "device": device, "dtype": dtype, "settings": vars(args),
           "environment": collect_info(), "results": results, "memory_model": estimates}
    out = write_json(args.out, doc)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
