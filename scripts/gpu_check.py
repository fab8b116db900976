"""One-call GPU check (issue 17, item 5): tests, kernel parity, kernel benchmark, Evo 2 7B-shape forward, scoring.

    python3 scripts/gpu_check.py --out gpu_check.json          # on a CUDA machine, about 8 minutes
    python scripts/gpu_check.py --dry-run --out /tmp/dry.json  # same steps, tiny shapes, on the CPU (CI)

Steps, each guarded (one failure is recorded and the next step runs) and timed; the JSON is rewritten
atomically after every step, so a run stopped from outside still leaves the steps done so far:

1. ``environment``: device name, memory, versions (torch, CUDA, triton, torchao, pysam), kernel choices.
2. ``cuda_tests``: ``pytest -m cuda`` on the test files that hold cuda-marked tests (skipped on CPU).
3. ``kernel_parity``: Hyena-SE/MR/LI fused operators in bf16 against the float32 reference: relative
   error (norm) of the output and every gradient, pass below 2e-2 (as tests/test_kernels_fused.py).
4. ``bench_kernels``: ``scripts/bench_kernels.py`` (SE/MR/LI fused vs reference; one Evo 2 period vs an
   SDPA Transformer) at 8k and 32k; its JSON is included.
5. ``evo2_7b_forward``: the Evo 2 7B shape (``ModelConfig.preset('evo2-7b')``, random weights, bf16,
   initialised on the GPU): one no-cache forward at 8,192 tokens, then chunked per-position
   log-likelihoods (``log_likelihoods(chunk_size=8192)``) at 32k and 131k, and 512k and 1M when the time
   (a * L + b * L^2 fitted to the measured lengths) and memory (linear fit) predicted for them fit what is
   left; out-of-memory is caught and ends the sweep.
6. ``scoring``: the shipped ``default`` model on the shipped BRCA1 SNVs (hg19 reference): exact mode on
   the first 200, fast mode on all 3,893, in bfloat16 and float32 (and int8 weights when torchao is
   installed): variants/s.

``--dry-run`` runs the same code at tiny shapes on the CPU: Triton kernels under ``TRITON_INTERPRET=1``
(set here before triton is imported; skipped with the reason when triton is absent), the 7B layer pattern
at width 64, 8 exact and 48 fast SNVs. The interpreter cannot multiply bf16 matrices (triton-lang/triton
#11584: ``tl.dot`` on bf16 multiplies bit patterns), so the dry run checks the MR kernel in float16.

On this project's H200 device machine (``python3`` has torch and triton but neither pysam nor torchao;
the device tool's README says how to carry wheels): here, once,
``echo /.whl/ >> .git/info/exclude; python3 -m pip download --no-deps --only-binary=:all:
--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
--platform manylinux2014_x86_64 -d .whl pysam torchao==0.18.0``; then one run carrying ``.whl``:
``python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
.whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py
--out $OUT/gpu_check.json 2>&1 | tee $OUT/gpu_check.log`` with ``timeout_s`` 600.
"""

from __future__ import annotations

import os
import sys

if "--dry-run" in sys.argv:  # the interpreter must be chosen before triton is first imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's genomod (nothing needs to be installed on the GPU machine)

import torch  # noqa: E402

PARITY_TOL = 2e-2  # relative (norm) error of bf16 fused vs float32 reference, as the cuda tests use

# Shapes per mode. Real: Evo 2 7B widths and filter groups; dry: tiny, same code paths.
SHAPES: dict[str, dict[str, Any]] = {
    "real": {
        "parity": {"batch": 1, "width": 4096, "length": 8192, "groups": 256, "mr_len": 128, "state": 16},
        "bench_kernels": [["--widths", "4096", "--lengths", "8192", "32768", "--repeats", "5", "--period-width",
                           "4096", "--period-length", "8192"],
                          ["--mode", "period", "--period-width", "4096", "--period-length", "32768", "--repeats",
                           "3"]],
        "model": {"preset_overrides": {}, "short": 8192, "fit": [32768, 131072], "long": [524288, 1048576],
                  "chunk": 8192},
        "scoring": {"exact": 200, "fast": None},
        "pytest_timeout": 150, "bench_timeout": [120, 60], "later_reserve": 200,
    },
    "dry": {
        "parity": {"batch": 1, "width": 16, "length": 64, "groups": 4, "mr_len": 32, "state": 4},
        "bench_kernels": [["--widths", "32", "--lengths", "128", "--repeats", "1", "--period-width", "32",
                           "--period-length", "64", "--threads", "1"]],
        "model": {"preset_overrides": {"hidden_size": 64, "num_attention_heads": 4, "inner_mlp_size": 128,
                                       "se_filter_groups": 4, "mr_filter_groups": 4, "li_filter_groups": 64},
                  "short": 128, "fit": [256, 512], "long": [1024, 2048], "chunk": 256},
        "scoring": {"exact": 8, "fast": 48},
        "pytest_timeout": 120, "bench_timeout": [120], "later_reserve": 0,
    },
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _module_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


class Runner:
    """Runs named steps within a time budget, records status/seconds/details, rewrites the JSON after each."""

    def __init__(self, out: Path, budget_s: float, report: dict[str, Any]) -> None:
        self.out, self.budget_s, self.report = out, budget_s, report
        self.t0 = time.perf_counter()
        report["steps"] = {}

    def remaining(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def step(self, name: str, fn: Callable[[], dict[str, Any]], min_s: float = 0.0) -> None:
        if self.remaining() < min_s:
            rec = {"status": "skipped", "reason": f"time budget: {self.remaining():.0f} s left, needs ~{min_s:.0f} s"}
        else:
            t = time.perf_counter()
            try:
                details = fn()
                rec = {"status": details.pop("status", "ok"), **details}
            except Exception as exc:  # noqa: BLE001 - a failed step is recorded, the next one runs
                rec = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                       "traceback": traceback.format_exc(limit=6).splitlines()[-12:]}
            rec["seconds"] = round(time.perf_counter() - t, 3)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self.report["steps"][name] = rec
        print(f"[{time.perf_counter() - self.t0:7.1f} s] {name}: {rec['status']}"
              + (f" ({rec.get('reason') or rec.get('error')})" if rec["status"] != "ok" else ""), flush=True)
        self.write()

    def write(self) -> None:
        from genomod.utils import write_json

        self.report["total_s"] = round(time.perf_counter() - self.t0, 3)
        self.report["summary"] = {s: sum(1 for r in self.report["steps"].values() if r["status"] == s)
                                  for s in ("ok", "failed", "skipped")}
        write_json(self.out, self.report)


# ---- steps ------------------------------------------------------------------------------------------------
def step_environment(device: torch.device) -> dict[str, Any]:
    from genomod import __version__
    from genomod.ops.dispatch import kernel_report, triton_version
    from genomod.utils import cpu_name

    env: dict[str, Any] = {
        "genomod": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda, "triton": triton_version(), "torchao": _module_version("torchao"),
        "pysam": _module_version("pysam"), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
        "kernels_bf16": kernel_report(device, torch.bfloat16),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}", gpu_memory_bytes=props.total_memory,
                   multiprocessors=props.multi_processor_count)
    return env


def step_cuda_tests(timeout: float) -> dict[str, Any]:
    if importlib.util.find_spec("pysam") is None:
        return {"status": "skipped", "reason": "pysam not installed (tests/conftest.py imports it); carry a wheel"}
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                   if "mark.cuda" in p.read_text())
    if not files:
        return {"status": "skipped", "reason": "no test file holds cuda-marked tests"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-rs", *files]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return {"status": "failed", "error": f"pytest timed out after {timeout:.0f} s", "files": files,
                "output_tail": tail.splitlines()[-20:]}
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    summary = next((ln for ln in reversed(lines) if re.search(r"\b(passed|failed|skipped|deselected|error)", ln)), "")
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", summary)}
    ok = proc.returncode in (0, 5)  # 5: nothing selected
    return {"status": "ok" if ok else "failed", "returncode": proc.returncode, "files": files, "counts": counts,
            "summary": summary.strip("= "), **({} if ok else {"output_tail": lines[-30:]})}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def step_kernel_parity(device: torch.device, shape: dict[str, Any], dry: bool) -> dict[str, Any]:
    """bf16 fused SE/MR/LI (forward and gradients) against the float32 reference on the same inputs."""
    import math

    from genomod.ops import dispatch

    b, c, n, g = shape["batch"], shape["width"], shape["length"], shape["groups"]
    gen = torch.Generator().manual_seed(0)

    def randn(*size: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*size, generator=gen) * scale).to(device)

    rates = torch.logspace(math.log10(0.5), -4, shape["state"])
    params = {
        "SE": [randn(g, 7)],
        "MR": [randn(g, shape["mr_len"], scale=shape["mr_len"] ** -0.5), randn(c)],
        "LI": [(-rates)[None].repeat(c, 1).to(device), randn(c, shape["state"], scale=0.5), randn(c)],
    }
    results: dict[str, Any] = {}
    failed = []
    for kind in ("SE", "MR", "LI"):
        dtype = torch.float16 if dry and kind == "MR" else torch.bfloat16  # interpreter: no bf16 tl.dot
        which, why = dispatch.backend(kind, "fused", device, dtype, 7 if kind == "SE" else None)
        if which != "fused":
            results[kind] = {"status": "skipped", "reason": why}
            continue
        fused = dispatch.hyena_op(kind, "fused", device, dtype)
        z32 = randn(b, 3 * c, n)
        gy = randn(b, c, n)
        outs = []
        for fn, dt in ((fused, dtype), (dispatch.REFERENCE_OPS[kind], torch.float32)):
            z = z32.to(dt).requires_grad_(True)
            # LI poles/residues stay float32 (as in the model); other parameters in the run's dtype
            ps = [p.to(torch.float32 if (kind == "LI" and i < 2) else dt).requires_grad_(True)
                  for i, p in enumerate(params[kind])]
            y = fn(z[:, :c], z[:, c : 2 * c], z[:, 2 * c :], *ps)
            grads = torch.autograd.grad(y, [z, *ps], gy.to(y.dtype))
            outs.append([y.detach(), *grads])
        names = ["y", "dz"] + [f"d{p}" for p in {"SE": ["h"], "MR": ["h", "D"], "LI": ["log_poles", "residues",
                                                                                       "D"]}[kind]]
        errs = {nm: _rel(a, r) for nm, a, r in zip(names, outs[0], outs[1])}
        ok = all(e < PARITY_TOL for e in errs.values())
        results[kind] = {"status": "ok" if ok else "failed", "dtype": str(dtype).replace("torch.", ""),
                         "fused": dispatch.FUSED_NAMES[kind], "rel_err": errs}
        if not ok:
            failed.append(kind)
    status = "failed" if failed else ("ok" if any(r["status"] == "ok" for r in results.values()) else "skipped")
    out: dict[str, Any] = {"status": status, "tolerance": PARITY_TOL, "shape": shape, "ops": results}
    if status == "skipped":
        out["reason"] = "; ".join(r["reason"] for r in results.values() if r.get("reason"))
    if dry:
        out["note"] = "MR in float16: the Triton interpreter cannot multiply bf16 (triton-lang/triton#11584)"
    return out


def step_bench_kernels(arg_sets: list[list[str]], timeouts: list[float], remaining: Callable[[], float],
                       reserve_s: float) -> dict[str, Any]:
    """Run scripts/bench_kernels.py once per argument set, each only if its timeout fits before ``reserve_s``."""
    script = ROOT / "scripts" / "bench_kernels.py"
    if not script.is_file():
        return {"status": "skipped", "reason": "scripts/bench_kernels.py not present"}
    runs = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_bk_") as tmp:
        for i, (args, timeout) in enumerate(zip(arg_sets, timeouts)):
            if remaining() - reserve_s < timeout:
                runs.append({"args": args, "status": "skipped",
                             "reason": f"time budget: {remaining():.0f} s left, {reserve_s:.0f} s kept for later steps"})
                continue
            out = Path(tmp) / f"bk{i}.json"
            cmd = [sys.executable, str(script), *args, "--out", str(out)]
            try:
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                      timeout=min(timeout, max(remaining(), 1)))
            except subprocess.TimeoutExpired:
                runs.append({"args": args, "status": "failed", "error": f"timed out after {timeout:.0f} s"})
                continue
            run: dict[str, Any] = {"args": args, "returncode": proc.returncode,
                                   "status": "ok" if proc.returncode == 0 and out.is_file() else "failed"}
            if out.is_file():
                run["report"] = json.loads(out.read_text())
            if run["status"] != "ok":
                run["output_tail"] = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            runs.append(run)
    failed = [r for r in runs if r["status"] == "failed"]
    out: dict[str, Any] = {"status": "failed" if failed else "ok", "runs": runs}
    if failed:
        out["error"] = failed[0].get("error") or f"bench_kernels.py exit code {failed[0].get('returncode')}"
    return out


def _fit_time(points: list[tuple[int, float]]) -> Callable[[int], float]:
    """t(L) = a L + b L^2 (a, b >= 0) through the two longest measured points: attention grows as L^2."""
    (l1, t1), (l2, t2) = sorted(points)[-2:]
    det = l1 * l2 * l2 - l2 * l1 * l1
    a = (t1 * l2 * l2 - t2 * l1 * l1) / det
    b = (t2 * l1 - t1 * l2) / det
    if b < 0:  # the linear term dominates (Hyena layers): scale linearly from the longest point
        return lambda n: t2 * n / l2
    if a < 0:  # the quadratic term dominates (attention)
        return lambda n: t2 * (n / l2) ** 2
    return lambda n: a * n + b * n * n


def _timed_forward(model: Any, bases: torch.Tensor, length: int, chunked: bool, chunk: int,
                   device: torch.device) -> dict[str, Any]:
    """One random-sequence forward (or chunked log-likelihood pass) of ``length`` tokens: seconds, peak memory."""
    cuda = device.type == "cuda"
    tokens = bases[torch.randint(0, 4, (1, length), device=device)]
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    rec: dict[str, Any] = {"length": length, "path": "chunked log_likelihoods" if chunked else "forward"}
    try:
        with torch.inference_mode():
            if not chunked:
                model(tokens[:, : min(length, 1024)])  # warm-up: kernel compilation, allocator
                _sync(device)
            t0 = time.perf_counter()
            if chunked:
                model.log_likelihoods(tokens, chunk_size=chunk)
            else:
                model(tokens)
            _sync(device)
            sec = time.perf_counter() - t0
        rec.update(status="ok", seconds=sec, tokens_per_s=length / sec)
    except torch.OutOfMemoryError as exc:
        rec.update(status="oom", error=str(exc).splitlines()[0])
    if cuda:
        rec["peak_bytes"] = int(torch.cuda.max_memory_allocated(device))
        torch.cuda.empty_cache()
    return rec


def step_evo2_forward(device: torch.device, shape: dict[str, Any], remaining: Callable[[], float],
                      reserve_s: float) -> dict[str, Any]:
    """Random-weight Evo 2 7B shape in bf16: no-cache forward at ``short``, chunked at ``fit`` then ``long``."""
    from genomod.model import HybridModel, ModelConfig
    from genomod.ops.dispatch import kernel_report
    from genomod.precision import weight_bytes

    cfg = ModelConfig.preset("evo2-7b", **shape["preset_overrides"])
    torch.manual_seed(0)
    t = time.perf_counter()
    with torch.device(device):
        model = HybridModel(cfg)
    model.to_dtype("bfloat16").resolve_backends().eval()
    _sync(device)
    out: dict[str, Any] = {"model": cfg.name, "layers": cfg.num_layers, "hidden_size": cfg.hidden_size,
                           "parameters": model.num_parameters(), "weights_bytes": weight_bytes(model),
                           "build_s": time.perf_counter() - t, "dtype": "bfloat16", "chunk": shape["chunk"],
                           "kernels": kernel_report(device, torch.bfloat16), "lengths": []}
    cuda = device.type == "cuda"
    total_mem = torch.cuda.get_device_properties(device).total_memory if cuda else None
    bases = torch.tensor([65, 67, 71, 84], device=device)

    def run(length: int, chunked: bool) -> dict[str, Any]:
        return _timed_forward(model, bases, length, chunked, shape["chunk"], device)

    out["lengths"].append(run(shape["short"], chunked=False))
    points: list[tuple[int, float]] = []
    mem_points: list[tuple[int, int]] = []
    for length in shape["fit"] + shape["long"]:
        if length in shape["long"] and len(points) >= 2:
            pred_t = _fit_time(points)(length)
            rec_pred: dict[str, Any] = {"predicted_s": pred_t}
            if cuda and len(mem_points) >= 2:
                (m1, p1), (m2, p2) = mem_points[-2:]
                rec_pred["predicted_peak_bytes"] = int(p2 + (p2 - p1) / (m2 - m1) * (length - m2))
            if pred_t > remaining() - reserve_s:
                out["lengths"].append({"length": length, "status": "skipped", **rec_pred,
                                       "reason": f"predicted {pred_t:.0f} s > {remaining() - reserve_s:.0f} s left"})
                continue
            if total_mem and rec_pred.get("predicted_peak_bytes", 0) > 0.97 * total_mem:
                out["lengths"].append({"length": length, "status": "skipped", **rec_pred,
                                       "reason": "predicted peak memory exceeds the GPU's"})
                continue
        rec = run(length, chunked=True)
        out["lengths"].append(rec)
        if rec["status"] == "oom":
            break
        points.append((length, rec["seconds"]))
        if "peak_bytes" in rec:
            mem_points.append((length, rec["peak_bytes"]))
    fitted = [r["length"] for r in out["lengths"] if r.get("status") == "ok" and r["path"] != "forward"]
    out["longest_chunked_length"] = max(fitted) if fitted else None
    return out  # the model is freed with this frame (the runner empties the CUDA cache after each step)


def step_scoring(device: torch.device, shape: dict[str, Any]) -> dict[str, Any]:
    """Exact and fast variants/s of the shipped default model on the shipped BRCA1 SNVs, per precision."""
    if importlib.util.find_spec("pysam") is None:
        return {"status": "skipped", "reason": "pysam not installed (reference FASTA access); carry a wheel"}
    from genomod.eval.brca1 import KEYS, brca1_reference_path, load_brca1
    from genomod.precision import torchao_version
    from genomod.scoring import VariantScorer

    keys = load_brca1()[list(KEYS)]
    n_fast = len(keys) if shape["fast"] is None else min(shape["fast"], len(keys))
    n_exact = min(shape["exact"], len(keys))
    configs = [("bfloat16", None), ("float32", None)]
    if torchao_version() != "not installed":
        configs.append(("float32", "int8"))
    rows = []
    for dtype, quantize in configs:
        row: dict[str, Any] = {"dtype": dtype, "quantize": quantize or "none"}
        try:
            sc = VariantScorer("default", brca1_reference_path(), device=str(device), dtype=dtype, quantize=quantize)
            row["window"] = sc.window
            for mode, n in (("exact", n_exact), ("fast", n_fast)):
                part = keys.head(n)
                sc.score(part.head(8), mode=mode)  # warm-up
                _sync(device)
                t0 = time.perf_counter()
                df = sc.score(part, mode=mode)
                _sync(device)
                sec = time.perf_counter() - t0
                row[mode] = {"variants": n, "scored": int((df["status"] == "ok").sum()), "seconds": sec,
                             "variants_per_s": n / sec}
            row["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - one precision failing does not hide the others
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    failed = [r for r in rows if r["status"] == "failed"]
    return {"status": "failed" if failed else "ok", "model": "default", "table": "BRCA1 SNVs (Findlay 2018), hg19",
            "results": rows, **({"error": failed[0]["error"]} if failed else {})}


# ---- main ---------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run every step (or ``--steps``) and write the JSON; exit code 1 when a step failed."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (Triton interpreter)")
    ap.add_argument("--out", default=None, help="JSON (default benchmarks/results/gpu_check[_dry_run].json)")
    ap.add_argument("--budget-s", type=float, default=None, help="time budget (default 480; dry run 900)")
    ap.add_argument("--timeout-scale", type=float, default=1.0,
                    help="multiply the subprocess timeouts (pytest, bench_kernels) on a slow or busy machine")
    ap.add_argument("--steps", nargs="+", default=None,
                    choices=["environment", "cuda_tests", "kernel_parity", "bench_kernels", "evo2_7b_forward",
                             "scoring"], help="run only these steps")
    args = ap.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        ap.error("no CUDA device: run on a GPU machine, or use --dry-run for the CPU rehearsal")
    device = torch.device("cpu" if dry else "cuda")
    if dry:
        torch.set_num_threads(1)
    shape = dict(SHAPES["dry" if dry else "real"])
    shape["pytest_timeout"] *= args.timeout_scale
    shape["bench_timeout"] = [t * args.timeout_scale for t in shape["bench_timeout"]]
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"gpu_check{'_dry_run' if dry else ''}.json")
    report: dict[str, Any] = {
        "script": "gpu_check", "dry_run": dry,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": args.budget_s or (900 if dry else 480),
    }
    runner = Runner(out, report["budget_s"], report)
    wanted = set(args.steps or ["environment", "cuda_tests", "kernel_parity", "bench_kernels", "evo2_7b_forward",
                                "scoring"])
    scoring_reserve = 20 if dry else 60  # keep time for the scoring step after the long forwards
    plan: list[tuple[str, Callable[[], dict[str, Any]], float]] = [
        ("environment", lambda: step_environment(device), 0),
        ("cuda_tests", lambda: step_cuda_tests(min(shape["pytest_timeout"], max(runner.remaining(), 1))), 10),
        ("kernel_parity", lambda: step_kernel_parity(device, shape["parity"], dry), 5),
        ("bench_kernels", lambda: step_bench_kernels(shape["bench_kernels"], shape["bench_timeout"],
                                                     runner.remaining, shape["later_reserve"]), 20),
        ("evo2_7b_forward", lambda: step_evo2_forward(device, shape["model"], runner.remaining, scoring_reserve),
         30),
        ("scoring", lambda: step_scoring(device, shape["scoring"]), 10),
    ]
    for name, fn, min_s in plan:
        if name in wanted:
            runner.step(name, fn, min_s)
    runner.write()
    print(f"wrote {out}: {report['summary']}")
    return 1 if report["summary"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
