"""Whole ``genomod score`` commands side by side with the code of an earlier revision, as a user meets them
(process start, model load, VCF input, scoring, VCF output).

    python scripts/bench_cli.py [--legacy-rev e7b4ff3] [--mode exact] [--variants 120] [--window 1024]
        [--repeats 3] [--model default] [--new-args "--dtype bfloat16"] [--out benchmarks/results/bench_cli_cpu.json]

The legacy side is ``genomod/`` at ``--legacy-rev`` (``git archive`` into a temporary folder, run with PYTHONPATH
at it) holding the same weights: a shipped model's folder is copied over that revision's. The runs alternate
(new, legacy) repeat by repeat, so that a busy machine slows both alike; each is one child process timed from start
to exit, with its peak RSS. The input is a dense SNV scan (the three ALTs of each position, as in saturation
genome editing) of ``--variants`` records on the shipped hg19 chr17 reference. Both outputs are read back and
compared allele by allele (``max_abs_diff``). ``--new-args`` go to the new side only (options the old code lacks).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pysam

from genomod.data_paths import models_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import make_vcf, run_one  # noqa: E402 - sibling scripts
from bench_scoring import git_rev  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEGACY_REV = "e7b4ff3"  # the last commit before issue 17's changes: the "now" its bars are measured against
SCAN_START = 41_200_001  # 1-based first position of the scan (BRCA1 exons, hg19 chr17)
SCORE_FIELD = {"exact": "GENOMOD_DLL_SUM", "fast": "GENOMOD_FAST"}


def legacy_tree(rev: str, dest: Path, model: str) -> Path:
    """``genomod/`` of git ``rev`` under ``dest``; a shipped ``model`` (a bare name, not a folder) gets today's
    folder there too (same weights). A checkpoint folder is read by both sides where it is."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "genomod"], check=True, capture_output=True)
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    if Path(model).name == model and not Path(model).is_dir() and (models_dir() / model).is_dir():  # a bare name
        old = dest / "genomod" / "data" / "models" / model
        shutil.rmtree(old, ignore_errors=True)
        shutil.copytree(models_dir() / model, old)
    return dest


def imported_from(env: dict[str, str], cwd: Path) -> str:
    """Where a child process with ``env`` started in ``cwd`` imports genomod from."""
    return subprocess.run([sys.executable, "-c", "import genomod; print(genomod.__file__)"], env=env, cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


def scores(path: Path, field: str) -> list[float]:
    """The per-ALT values of INFO ``field`` of a scored VCF, in record order."""
    with pysam.VariantFile(str(path)) as vf:
        return [float(v) for rec in vf for v in rec.info.get(field, ())]


def main() -> None:
    """Parse arguments, run the two trees' commands alternately, print and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--legacy-rev", default=LEGACY_REV)
    ap.add_argument("--mode", default="exact", choices=["exact", "fast"])
    ap.add_argument("--variants", type=int, default=120, help="SNV records of the dense scan")
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="default", help="shipped model name or checkpoint folder (both sides)")
    ap.add_argument("--new-args", default="", help="extra `genomod score` options for the new side only")
    ap.add_argument("--note", default=None, help="free text stored in the JSON (e.g. machine busy)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_cli_cpu.json"))
    args = ap.parse_args()
    from genomod.cli.info import collect_info
    from genomod.utils import cpu_name, write_json

    model = str(Path(args.model).resolve()) if Path(args.model).is_dir() else args.model  # children run elsewhere
    with tempfile.TemporaryDirectory(prefix="genomod_bench_cli_") as tmp_name:
        tmp = Path(tmp_name)
        vcf = tmp / "in.vcf"
        make_vcf(vcf, args.variants, start=SCAN_START)
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        sides = {"new": {**base, "PYTHONPATH": str(ROOT)},
                 "legacy": {**base, "PYTHONPATH": str(legacy_tree(args.legacy_rev, tmp / "legacy", model))}}
        for name, env in sides.items():  # each side imports its own tree, not the installed package
            where = imported_from(env, tmp)
            if not where.startswith(env["PYTHONPATH"]):
                raise SystemExit(f"{name} side imports genomod from {where}, not {env['PYTHONPATH']}")
        extra = {"new": shlex.split(args.new_args), "legacy": []}
        runs: dict[str, list[dict]] = {"new": [], "legacy": []}
        for rep in range(args.repeats):
            for name, env in sides.items():
                out = tmp / f"out_{name}.vcf"
                res = run_one(vcf, out, args.mode, model, args.window, env=env, cwd=tmp, extra=extra[name])
                if res["rc"] != 0:
                    raise SystemExit(f"{name} side failed (rc {res['rc']}): {res['err']}")
                runs[name].append({"seconds": res["seconds"], "peak_rss_mib": res["peak_kib"] / 1024})
                print(f"  [{name} {rep + 1}/{args.repeats}] {res['seconds']:.2f} s, peak RSS "
                      f"{res['peak_kib'] / 1024:.0f} MiB", flush=True)
        new, old = (scores(tmp / f"out_{n}.vcf", SCORE_FIELD[args.mode]) for n in ("new", "legacy"))
    if len(new) != len(old) or len(new) != args.variants:
        raise SystemExit(f"scored alleles differ: new {len(new)}, legacy {len(old)}, input {args.variants}")
    median = {n: statistics.median(r["seconds"] for r in rs) for n, rs in runs.items()}
    result = {
        "benchmark": "bench_cli", "device": cpu_name(), "environment": collect_info(), "note": args.note,
        "git_head": git_rev("HEAD"), "legacy_commit": git_rev(args.legacy_rev),
        "settings": {**vars(args), "command": f"genomod score --mode {args.mode} --window {args.window} "
                     f"--model {args.model} (+ {args.new_args or 'nothing'} on the new side)"},
        "runs": runs,
        "median_seconds": median,
        "variants_per_s": {n: args.variants / s for n, s in median.items()},
        "speedup_over_legacy": median["legacy"] / median["new"],
        "max_abs_diff": max(abs(a - b) for a, b in zip(new, old)),
    }
    print(f"{args.variants} SNVs, {args.mode}, window {args.window}, whole command (median of {args.repeats}): "
          f"new {median['new']:.2f} s ({result['variants_per_s']['new']:.1f} variants/s), legacy "
          f"{args.legacy_rev} {median['legacy']:.2f} s ({result['variants_per_s']['legacy']:.1f}/s): "
          f"{result['speedup_over_legacy']:.2f}x; max |new - legacy| = {result['max_abs_diff']:.2e}")
    print(f"wrote {write_json(args.out, result)}")


if __name__ == "__main__":
    main()
