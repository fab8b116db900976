"""Benchmark the Hyena operators (reference vs fused, side by side) and one Evo 2 period training step.

Operator mode (``--mode ops``): for Hyena-SE, -MR and -LI, forward and forward+backward time of the
reference composition and of the fused operator, their ratio, and achieved GB/s (minimum HBM traffic:
read x2, x1, v, write y; backward also reads dy and writes three gradients) and, for MR, TFLOP/s of the
useful 2*B*C*L*K multiply-adds, each against the device's peak from ``PEAKS``.
- GPU (bf16 default): widths 1024 and 4096, lengths 8k..1M; fused = the Triton kernels / chunked FFT.
- CPU (fp32, small default, ~1 min): Triton under the interpreter is not meaningful for timing, so on CPU
  MR compares the reference FFT against the *plain-torch blocked algorithm* (``blocked_conv_torch``), LI
  against the chunked ``long_conv`` (plain torch either way) and SE is skipped; peaks are "n/a".
Period mode (``--mode period``): one training step (forward, next-token loss, backward, AdamW) of the
Evo 2 period SE MR LI MHA SE MR LI vs a 7-layer Transformer of the same width (SDPA), tokens/s and MFU
(``genomod.model.flops_per_token``); on GPU the hybrid runs with reference and with fused kernels.

    python scripts/bench_kernels.py                                   # CPU quick run
    python scripts/bench_kernels.py --lengths 8192 65536 1048576      # GPU (results are unmeasured here)

Writes JSON (device, versions, settings, results) to ``--out``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Dense bf16 tensor-core TFLOP/s and HBM GB/s (vendor datasheets, SXM unless named).
PEAKS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bf16_tflops": 756.0, "hbm_gbps": 2000.0},
    "H100 NVL": {"bf16_tflops": 835.0, "hbm_gbps": 3900.0},
    "H100": {"bf16_tflops": 989.0, "hbm_gbps": 3350.0},
    "H200": {"bf16_tflops": 989.0, "hbm_gbps": 4800.0},
    "A100": {"bf16_tflops": 312.0, "hbm_gbps": 2039.0},
}


def device_peaks(device: torch.device) -> dict[str, float] | None:
    """Known peaks for the CUDA device's name, None on CPU or unknown GPUs."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((p for key, p in PEAKS.items() if key in name), None)


def timeit(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` after one warm-up call (synchronising CUDA)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---- operators ------------------------------------------------------------------------------------
def _op_pair(kind: str, device: torch.device, on_gpu: bool) -> tuple[Callable, Callable, str] | None:
    """(reference fn, fused fn, fused name) taking (x2, x1, v, params) for one Hyena kind."""
    from genomod.ops import reference as ref
    from genomod.ops.long_conv import long_conv_gate

    def se_ref(x2, x1, v, p):
        return ref.hyena_se_ref(x2, x1, v, p["h"])

    def mr_ref(x2, x1, v, p):
        return ref.hyena_mr_ref(x2, x1, v, p["h"], p["D"])

    if kind == "SE":
        if not on_gpu:
            return None
        from genomod.ops.triton_short_conv import short_conv_gate

        return se_ref, lambda x2, x1, v, p: short_conv_gate(x2, x1, v, p["h"]), "triton short conv"
    if kind == "MR":
        from genomod.ops.triton_blocked_conv import blocked_conv_gate, blocked_conv_torch

        if on_gpu:
            return mr_ref, lambda x2, x1, v, p: blocked_conv_gate(x2, x1, v, p["h"], p["D"]), "triton blocked"
        return mr_ref, lambda x2, x1, v, p: blocked_conv_torch(x2, x1, v, p["h"], p["D"]), "torch blocked (CPU)"
    return (lambda x2, x1, v, p: ref.hyena_li_ref(x2, x1, v, p["lp"], p["res"], p["D"]),
            lambda x2, x1, v, p: long_conv_gate(x2, x1, v, p["lp"], p["res"], p["D"]),
            "chunked FFT long conv")


def _params(kind: str, c: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Evo 2-like operator parameters: groups of 16 channels for SE/MR, per-channel LI poles (state 16)."""
    g = max(1, c // 16)
    p: dict[str, torch.Tensor] = {"D": torch.randn(c, device=device).to(dtype)}
    if kind == "SE":
        p["h"] = torch.randn(g, 7, device=device).to(dtype)
    elif kind == "MR":
        p["h"] = (torch.randn(g, 128, device=device) / math.sqrt(128)).to(dtype)
    else:
        rates = torch.logspace(math.log10(0.5), -6, 16, device=device)
        p["lp"] = (-rates)[None].repeat(c, 1)
        p["res"] = torch.randn(c, 16, device=device) * torch.sqrt(2 * rates)
    return {k: t.requires_grad_(True) for k, t in p.items()}


def bench_op(kind: str, bsz: int, c: int, length: int, device: torch.device, dtype: torch.dtype,
             repeats: int) -> dict[str, Any]:
    """Reference vs fused forward and forward+backward of one operator at one shape."""
    on_gpu = device.type == "cuda"
    pair = _op_pair(kind, device, on_gpu)
    row: dict[str, Any] = {"op": kind, "batch": bsz, "width": c, "length": length}
    if pair is None:
        row["skipped"] = "Triton only (interpreter timings are not meaningful on CPU)"
        return row
    ref_fn, fused_fn, fused_name = pair
    row["fused"] = fused_name
    try:
        z = torch.randn(bsz, 3 * c, length, device=device, dtype=dtype, requires_grad=True)
        x2, x1, v = z[:, :c], z[:, c : 2 * c], z[:, 2 * c :]
        p = _params(kind, c, device, dtype)
        gy = torch.randn(bsz, c, length, device=device, dtype=dtype)
        params = [z, *p.values()]
        for name, fn in (("ref", ref_fn), ("fused", fused_fn)):
            with torch.no_grad():
                row[f"{name}_fwd_s"] = timeit(lambda fn=fn: fn(x2, x1, v, p), device, repeats)
            row[f"{name}_fwd_bwd_s"] = timeit(
                lambda fn=fn: torch.autograd.grad(fn(x2, x1, v, p), params, gy), device, repeats)
    except torch.OutOfMemoryError as exc:
        row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
        return row
    finally:
        if on_gpu:
            torch.cuda.empty_cache()
    el = torch.finfo(dtype).bits // 8
    peaks = device_peaks(device)
    for phase, tensors in (("fwd", 4), ("fwd_bwd", 4 + 7)):
        row[f"speedup_{phase}"] = row[f"ref_{phase}_s"] / row[f"fused_{phase}_s"]
        gbps = tensors * bsz * c * length * el / row[f"fused_{phase}_s"] / 1e9
        row[f"fused_{phase}_GBps"] = gbps
        row[f"fused_{phase}_pct_peak_bw"] = 100 * gbps / peaks["hbm_gbps"] if peaks else "n/a"
    if kind == "MR":
        tflops = 2 * bsz * c * length * 128 / row["fused_fwd_s"] / 1e12
        row["fused_fwd_TFLOPs"] = tflops
        row["fused_fwd_pct_peak_flops"] = 100 * tflops / peaks["bf16_tflops"] if peaks else "n/a"
    return row


# ---- Evo 2 period training step -------------------------------------------------------------------
def bench_period(width: int, length: int, bsz: int, device: torch.device, dtype: torch.dtype,
                 repeats: int) -> list[dict[str, Any]]:
    """Training-step tokens/s and MFU: Evo 2 period (reference / fused kernels) vs a 7-layer Transformer."""
    from genomod.model import HybridModel, ModelConfig, flops_per_token
    from genomod.ops.dispatch import use_kernels

    heads = max(1, width // 128)
    common = dict(hidden_size=width, num_attention_heads=heads, inner_mlp_size=int(8 * width / 3) // 64 * 64,
                  se_filter_groups=max(1, width // 16), mr_filter_groups=max(1, width // 16),
                  li_filter_groups=width, max_seqlen=length)
    peaks = device_peaks(device)
    runs = [("evo2_period", ["SE", "MR", "LI", "MHA", "SE", "MR", "LI"], "reference"),
            ("transformer_7", ["MHA"] * 7, "reference")]
    if device.type == "cuda":
        runs.insert(1, ("evo2_period", runs[0][1], "fused"))
    out = []
    for name, kinds, mode in runs:
        cfg = ModelConfig(layer_types=kinds, **common)
        torch.manual_seed(0)
        model = HybridModel(cfg).to(device)
        if dtype != torch.float32:
            model.to_dtype(dtype)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        tokens = torch.randint(0, 256, (bsz, length + 1), device=device)

        def step(model=model, opt=opt, tokens=tokens, mode=mode) -> None:
            with use_kernels(mode):
                logits = model(tokens[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     tokens[:, 1:].reshape(-1))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        row: dict[str, Any] = {"model": name, "kernels": mode, "width": width, "length": length, "batch": bsz}
        try:
            sec = timeit(step, device, repeats)
        except torch.OutOfMemoryError as exc:
            row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
            out.append(row)
            continue
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        tps = bsz * length / sec
        achieved = flops_per_token(cfg, length) * tps / 1e12
        row.update(step_s=sec, tokens_per_s=tps, model_TFLOPs=achieved,
                   mfu_pct=100 * achieved / peaks["bf16_tflops"] if peaks else "n/a")
        out.append(row)
        del model, opt
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main() -> None:
    """Parse arguments, run the requested benchmarks, print tables and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["ops", "period", "all"], default="all")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default=None, help="bfloat16 on GPU, float32 on CPU by default")
    ap.add_argument("--widths", nargs="+", type=int, default=None, help="GPU: 1024 4096; CPU: 256")
    ap.add_argument("--lengths", nargs="+", type=int, default=None, help="GPU: 8k..1M; CPU: 2048 8192")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=None, help="GPU 10, CPU 2")
    ap.add_argument("--period-width", type=int, default=None, help="GPU 4096, CPU 256")
    ap.add_argument("--period-length", type=int, default=None, help="GPU 8192, CPU 512")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default 1: stable on shared hosts)")
    ap.add_argument("--out", default="benchmarks/results/bench_kernels.json")
    args = ap.parse_args()

    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    dtype = getattr(torch, args.dtype or ("bfloat16" if gpu else "float32"))
    widths = args.widths or ([1024, 4096] if gpu else [256])
    lengths = args.lengths or ([8192, 65536, 262144, 1048576] if gpu else [2048, 8192])
    repeats = args.repeats or (10 if gpu else 2)
    if not gpu:
        torch.set_num_threads(args.threads or 1)
    from genomod.ops.dispatch import kernel_report
    from genomod.utils import write_json

    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if gpu else "cpu",
        "peaks": device_peaks(device) or "n/a",
        "versions": {"torch": torch.__version__, "kernels": kernel_report(device, dtype)},
        "settings": {"mode": args.mode, "dtype": str(dtype).replace("torch.", ""), "widths": widths,
                     "lengths": lengths, "batch": args.batch, "repeats": repeats,
                     "cpu_threads": torch.get_num_threads(),
                     "cpu_note": None if gpu else "CPU: MR fused = plain-torch blocked algorithm, LI fused = "
                     "chunked torch FFT, SE skipped (Triton interpreter timings are meaningless)"},
        "results": {"ops": [], "period": []},
    }
    if args.mode in ("ops", "all"):
        cols = ["op", "width", "length", "fused", "ref_fwd_s", "fused_fwd_s", "speedup_fwd", "ref_fwd_bwd_s",
                "fused_fwd_bwd_s", "speedup_fwd_bwd", "fused_fwd_bwd_GBps", "fused_fwd_bwd_pct_peak_bw"]
        print("\t".join(cols))
        for c in widths:
            for length in lengths:
                for kind in ("SE", "MR", "LI"):
                    row = bench_op(kind, args.batch, c, length, device, dtype, repeats)
                    report["results"]["ops"].append(row)
                    extra = row.get("skipped") or row.get("error")
                    print("\t".join(_fmt(row.get(k, "")) for k in cols) + (f"\t{extra}" if extra else ""),
                          flush=True)
    if args.mode in ("period", "all"):
        pw = args.period_width or (4096 if gpu else 256)
        pl = args.period_length or (8192 if gpu else 512)
        rows = bench_period(pw, pl, args.batch, device, dtype, repeats)
        report["results"]["period"] = rows
        print("model\tkernels\twidth\tlength\tstep_s\ttokens_per_s\tmodel_TFLOPs\tmfu_pct")
        for r in rows:
            print("\t".join(_fmt(r.get(k, "")) for k in ("model", "kernels", "width", "length", "step_s",
                                                          "tokens_per_s", "model_TFLOPs", "mfu_pct"))
                  + (f"\t{r['error']}" if "error" in r else ""))
    out = write_json(args.out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
