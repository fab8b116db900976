"""Variant-scoring throughput against the FLOP bound, side by side with an earlier implementation.

    python scripts/bench_scoring.py [--model default | --preset tiny] [--window 1024] [--threads 2]
        [--positions 30000] [--exact-variants 120] [--sparse BASES] [--legacy-rev REV] [--no-legacy-model]
        [--out benchmarks/results/...json]

In one process and one run it measures, per mode:

- exact: delta LL with prefix reuse on the first ``--exact-variants`` SNVs of the shipped BRCA1 table
  (Findlay 2018, hg19; consecutive positions, ~3 alleles per site as in SGE data);
- fast: a dense saturation scan, all 3 SNVs at each of ``--positions`` consecutive positions of BRCA1;
- with ``--sparse BASES`` both modes score ``--exact-variants`` SNVs instead, one every BASES bases (one ALT each:
  a genome-wide VCF's shape; fast mode's bound then counts the tile forwards those SNVs touch);

both through ``VariantScorer.score`` (input parsing included), with the current code and with the code of
``genomod/scoring``, ``genomod/model`` and ``genomod/ops`` at ``--legacy-rev`` (read with ``git show``; the old
model code holds the same weights; ``--no-legacy-model``: the old scoring layer on today's model), interleaved repeat by
repeat so that a busy machine slows both alike. It prints variants/s, the FLOPs per variant from the
model's own count (``genomod.scoring.flops``, meta device), the matrix-product throughput of this device
measured in the same run, dtype and threads (small GEMM benchmark), and achieved / bound, where
bound = GEMM FLOP/s / minimal FLOPs per variant. JSON (device, versions, settings, load) goes to ``--out``.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from genomod import __version__
from genomod.io import ReferenceGenome
from genomod.scoring import VariantScorer
from genomod.scoring.exact import build_site, naive_deltas
from genomod.scoring.flops import exact_flops, fast_flops, matmul_params
from genomod.utils import cpu_name, write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "genomod" / "data"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SCAN_START = 41_200_000  # 0-based start of the dense scan (BRCA1 exons, hg19 chr17)
LEGACY_REV = "e7b4ff3"  # last commit before the issue-17 scoring changes (tile cache, slot batching, vectorised fast)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_throughput(device: torch.device, dtype: torch.dtype, shapes: dict[str, tuple[int, int, int]],
                    seconds: float = 1.0) -> dict[str, float]:
    """Best GFLOP/s of ``a @ b`` per named (M, K, N) shape, each timed for about ``seconds``."""
    out = {}
    for name, (m, k, n) in shapes.items():
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        a @ b
        _sync(device)
        best, t_end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        out[name] = 2.0 * m * k * n / best / 1e9
    return out


LEGACY_SCORING = ("scoring/fast", "scoring/exact", "scoring/scorer")
LEGACY_MODEL = ("ops/reference", "ops/attention", "ops/long_conv", "ops/triton_short_conv", "ops/triton_blocked_conv",
                "ops/dispatch", "model/config", "model/hyena", "model/blocks", "model/hybrid")


def load_legacy(rev: str, with_model: bool = False) -> types.ModuleType:
    """``genomod/scoring/{fast,exact,scorer}.py`` at git ``rev`` as the package ``_genomod_legacy`` (``.scoring``);
    with ``with_model`` also ``genomod/ops`` and ``genomod/model`` at ``rev`` (``.model.hybrid``: the old model
    code, to be given the same weights), so that a change of the model code is measured side by side too.
    The files are written to a temporary folder (Triton compiles only functions defined in files)."""
    root = "_genomod_legacy"
    subs = ("scoring", "ops", "model") if with_model else ("scoring",)
    tmp = Path(tempfile.mkdtemp(prefix="genomod_legacy_"))
    atexit.register(shutil.rmtree, tmp, True)
    for sub in ("", *subs):
        (tmp / root / sub).mkdir(parents=True, exist_ok=True)
        (tmp / root / sub / "__init__.py").write_text("")
    for name in (LEGACY_MODEL if with_model else ()) + LEGACY_SCORING:
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:genomod/{name}.py"], capture_output=True,
                               text=True)
        if shown.returncode != 0:
            continue  # not in that revision
        src = shown.stdout
        for sub in subs:
            src = src.replace(f"genomod.{sub}.", f"{root}.{sub}.").replace(f"from genomod.{sub} import",
                                                                             f"from {root}.{sub} import")
        (tmp / root / f"{name}.py").write_text(src)
    sys.path.insert(0, str(tmp))
    pkg = importlib.import_module(root)
    importlib.import_module(f"{root}.scoring.scorer")
    if with_model:
        importlib.import_module(f"{root}.model.hybrid")
    return pkg


def legacy_model(legacy: types.ModuleType, model: torch.nn.Module) -> torch.nn.Module:
    """The old model code (``load_legacy(..., with_model=True)``) holding ``model``'s weights, dtype and device."""
    cfg = legacy.model.config.ModelConfig.from_dict(model.config.to_dict())
    with torch.device("meta"):
        twin = legacy.model.hybrid.HybridModel(cfg)
    twin.load_state_dict(model.state_dict(), assign=True)
    twin.eval()
    # revisions before the per-layer operator choice (e7b4ff3, the baseline) choose per call instead
    return twin.resolve_backends() if hasattr(twin, "resolve_backends") else twin


def git_rev(rev: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:  # noqa: C901, PLR0912, PLR0915 - a benchmark script's linear run: arguments, timings, report
    """Parse arguments, time exact and fast scoring (new and legacy, interleaved), print and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="checkpoint name or folder (default: the shipped model)")
    ap.add_argument("--preset", default=None, help="score with a random model of this preset instead")
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--fast-batch-size", type=int, default=None, help="forward rows in fast mode (default: auto)")
    ap.add_argument("--exact-variants", type=int, default=120, help="BRCA1 SNVs scored in exact mode")
    ap.add_argument("--positions", type=int, default=30000, help="positions of the dense fast-mode scan (x3 SNVs)")
    ap.add_argument("--sparse", type=int, default=0, metavar="BASES",
                    help="both modes score --exact-variants SNVs, one every BASES bases (one ALT each, as in a "
                    "genome-wide VCF) instead of the BRCA1 table and the dense scan; 0: off")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per mode and implementation")
    ap.add_argument("--naive-check", type=int, default=3, help="exact SNVs also checked against naive_deltas")
    ap.add_argument("--dtype", default=None, help="float32/bfloat16 (default: float32 on CPU, bfloat16 on CUDA)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--legacy-rev", default=LEGACY_REV,
                    help=f"git revision of the old code (default {LEGACY_REV}; 'none': skip)")
    ap.add_argument("--legacy-model", action=argparse.BooleanOptionalAction, default=True,
                    help="the legacy side also runs genomod/model and genomod/ops of --legacy-rev, holding the same "
                    "weights (default: the whole path of that revision, the issue's 'current implementation'; "
                    "--no-legacy-model: its scoring layer on today's model code)")
    ap.add_argument("--modes", default="exact,fast")
    ap.add_argument("--rc", action="store_true", help="score both strands (VariantScorer(rc=True)) in both "
                    "implementations; the bound counts both strands' minimal work")
    ap.add_argument("--note", default=None, help="free text stored in the JSON (e.g. machine busy)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_scoring_cpu.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import pandas as pd

    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    dtype = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    load_start = os.getloadavg()
    ref = ReferenceGenome(DATA / "reference" / "hg19_chr17_brca1.fa.gz")
    if args.preset:
        from genomod.model import ModelConfig, build_model

        torch.manual_seed(0)
        model = build_model(ModelConfig.preset(args.preset), device=device, dtype=dtype).eval()
        model_label = f"preset {args.preset} (random weights)"
    else:
        from genomod.checkpoint import load_model

        model = load_model(args.model, device=device, dtype=dtype)
        model_label = args.model
    cfg = model.config
    legacy = None if args.legacy_rev.lower() == "none" else load_legacy(args.legacy_rev, args.legacy_model)
    scorers = {"new": VariantScorer(model, ref, window=args.window, batch_size=args.batch_size,
                                    fast_batch_size=args.fast_batch_size, rc=args.rc)}
    if legacy is not None:
        old_model = legacy_model(legacy, model) if args.legacy_model else model
        scorers["legacy"] = legacy.scoring.scorer.VariantScorer(old_model, ref, window=args.window,
                                                                batch_size=args.batch_size, rc=args.rc)

    if args.sparse:  # one SNV (REF -> the next base) every --sparse bases: a genome-wide VCF's shape
        seq = ref.fetch("chr17", SCAN_START, SCAN_START + args.sparse * args.exact_variants).upper()
        sparse_in = [("chr17", SCAN_START + i + 1, b, "ACGT"[("ACGT".index(b) + 1) % 4])
                     for i, b in enumerate(seq) if i % args.sparse == 0 and b in "ACGT"]
        inputs = {"exact": sparse_in, "fast": sparse_in}
    else:
        table = pd.read_csv(DATA / "brca1" / "findlay2018_brca1_snvs.tsv", sep="\t").head(args.exact_variants)
        seq = ref.fetch("chr17", SCAN_START, SCAN_START + args.positions).upper()
        inputs = {"exact": list(zip(table.chrom, table.pos, table.ref, table.alt)),
                  "fast": [("chr17", SCAN_START + i + 1, b, a) for i, b in enumerate(seq) if b in "ACGT"
                           for a in "ACGT" if a != b]}
    col = {"exact": "delta_ll_sum", "fast": "delta_fast"}

    # the device's matrix-product throughput, same dtype and threads: a square GEMM and the model's shapes
    tdtype = DTYPES[dtype]
    d, f = cfg.hidden_size, cfg.inner_mlp_size
    gemm = gemm_throughput(device, tdtype, {"square_2048": (2048, 2048, 2048), f"mlp_8192x{d}x{f}": (8192, d, f),
                                            f"proj_8192x{d}x{3 * d}": (8192, d, 3 * d)})
    peak = max(gemm.values())

    results: dict = {}
    for mode in modes:
        items = inputs[mode]
        for sc in scorers.values():  # warm-up (allocator, kernels, FASTA handle)
            sc.score(items[:3], mode=mode)
        times: dict[str, list[float]] = {k: [] for k in scorers}
        scores: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for name, sc in scorers.items():
                _sync(device)
                t0 = time.perf_counter()
                df = sc.score(items, mode=mode)
                _sync(device)
                times[name].append(time.perf_counter() - t0)
                scores[name] = df[col[mode]].to_numpy(dtype=np.float64)
                print(f"  [{mode} {name}] {len(items)} variants in {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
        n = len(items)
        window = args.window
        if mode == "exact":
            alts = n / max(1, len({(c, p) for c, p, _, _ in items}))
            fl = exact_flops(cfg, window, alts_per_site=alts, batch=args.batch_size)
            strands = 2 if args.rc else 1  # with rc, SNV sites reuse the RC prefix as well (rc_deltas)
            minimal, executed = fl["minimal"].scale(strands), fl["executed"].scale(strands)
        else:
            # sparse input: each tile forward serves the SNVs that fall in its window // 2 sites (fixed grid)
            tiles = len({(p - 1) // (window // 2) for _, p, _, _ in items}) if args.sparse else None
            minimal = executed = fast_flops(cfg, window, rc=args.rc, batch=scorers["new"].fast_batch_size,
                                            variants_per_tile=n / tiles if tiles else None)
        bound_vps = peak * 1e9 / minimal.total
        entry: dict = {"variants": n, "flops_per_variant": {"minimal": minimal.as_dict(),
                                                            "executed": executed.as_dict()},
                       "bound_variants_per_s": bound_vps}
        for name, ts in times.items():
            med = statistics.median(ts)
            entry[name] = {
                "seconds": ts,
                "variants_per_s": n / med,
                "variants_per_s_best": n / min(ts),
                "achieved_over_bound": n / med / bound_vps,
                "achieved_gflops_executed": n / med * executed.total / 1e9,
            }
        if "legacy" in scores:
            ok = np.isfinite(scores["new"]) | np.isfinite(scores["legacy"])
            entry["max_abs_diff_new_vs_legacy"] = float(np.nanmax(np.abs(scores["new"][ok] - scores["legacy"][ok])))
            entry["speedup_over_legacy"] = statistics.median(
                lt / nt for lt, nt in zip(times["legacy"], times["new"]))
        if mode == "exact" and args.naive_check > 0 and not args.rc:  # naive_deltas is the forward strand
            k = min(args.naive_check, n)
            sites = []
            for c, p, r, a in items[:k]:
                contig = ref.resolve(str(c))
                sites.append(build_site(ref.fetch, contig, int(p) - 1, [(r, a)], window, ref.lengths[contig]))
            naive = np.concatenate(naive_deltas(model, sites, args.batch_size))
            entry["max_abs_diff_new_vs_naive"] = float(np.abs(scores["new"][:k] - naive).max())
        results[mode] = entry

    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "versions": {"genomod": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version(), "git_head": git_rev("HEAD"),
                     "legacy_rev": None if legacy is None else git_rev(args.legacy_rev),
                     "legacy_scope": None if legacy is None else ("model and scoring" if args.legacy_model
                                                                   else "scoring")},
        "settings": {
            "model": model_label, "dtype": dtype, "window": args.window, "rc": args.rc, "batch_size": args.batch_size,
            "fast_batch_size": scorers["new"].fast_batch_size, "threads": torch.get_num_threads(),
            "exact_variants": len(inputs["exact"]), "fast_positions": None if args.sparse else args.positions,
            "fast_variants": len(inputs["fast"]), "sparse_spacing": args.sparse or None,
            "repeats": args.repeats, "matmul_params": matmul_params(cfg), "model_max_seqlen": cfg.max_seqlen,
            "reduced": args.positions < 30000 or args.exact_variants < 120,
        },
        "gemm_gflops": gemm,
        "gemm_peak_gflops": peak,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "note": args.note,
        "modes": results,
    }
    out = write_json(args.out, result)

    print(f"{model_label} ({matmul_params(cfg) / 1e6:.2f} M matmul weights), window {args.window}, {dtype}, "
          f"{torch.get_num_threads()} threads on {result['device']}; load average {load_start[0]:.2f}")
    if args.window > cfg.max_seqlen:
        print(f"note: window {args.window} exceeds the model's training context ({cfg.max_seqlen}); throughput is "
              "unaffected, but scores there may be numerically unstable (see max |new - naive|)")
    print("GEMM GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in gemm.items()) + f" -> bound uses {peak:.1f}")
    for mode, e in results.items():
        fl = e["flops_per_variant"]
        print(f"{mode}: {e['variants']} variants; FLOPs/variant minimal {fl['minimal']['total'] / 1e9:.3f} G, "
              f"executed {fl['executed']['total'] / 1e9:.3f} G; bound {e['bound_variants_per_s']:.1f} variants/s")
        for name in scorers:
            r = e[name]
            print(f"  {name:6s} {r['variants_per_s']:10.1f} variants/s (best {r['variants_per_s_best']:.1f}), "
                  f"{r['achieved_over_bound']:.1%} of bound, {r['achieved_gflops_executed']:.1f} GFLOP/s executed")
        if "speedup_over_legacy" in e:
            print(f"  new / legacy: {e['speedup_over_legacy']:.2f}x, max |new - legacy| = "
                  f"{e['max_abs_diff_new_vs_legacy']:.2e}")
        if "max_abs_diff_new_vs_naive" in e:
            print(f"  max |new - naive| = {e['max_abs_diff_new_vs_naive']:.2e}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
