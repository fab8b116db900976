"""Training throughput benchmark: tokens/s and MFU of one optimizer step loop for a preset on this device.

    python scripts/bench_train.py --preset tiny --seqlen 1024 --batch 8 [--steps 10] [--set hidden_size=64]
        [--activation-checkpointing] [--peak-tflops 989] [--json OUT.json]

Same loss, AdamW parameter groups and activation checkpointing as genomod.train (without Lightning, so the
number is the model's own cost). MFU = tokens/s * flops_per_token(cfg, seqlen) / peak FLOP/s. Peak: a table
of dense bf16 tensor-core numbers for known GPUs, ``--peak-tflops`` to state your own; on CPU the peak is a
rough estimate (threads x 2.5 GHz x 32 fp32 FLOP/cycle, AVX2 FMA), so CPU MFU is approximate.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from genomod import __version__
from genomod.model import HybridModel, ModelConfig, flops_per_token
from genomod.train.config import _parse_value
from genomod.train.module import next_token_loss, param_groups

GPU_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0,
                   "V100": 125.0, "RTX 4090": 165.0, "B200": 2250.0}


def peak_flops(device: torch.device, override_tflops: float | None) -> tuple[float, str]:
    """Peak FLOP/s for MFU and where the number comes from."""
    if override_tflops:
        return override_tflops * 1e12, "given by --peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tf in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tf * 1e12, f"dense bf16 tensor-core peak of {key} (datasheet)"
        return 100e12, f"unknown GPU {name!r}: assumed 100 TFLOP/s (pass --peak-tflops)"
    threads = torch.get_num_threads()
    return threads * 2.5e9 * 32, f"CPU estimate: {threads} threads x 2.5 GHz x 32 FLOP/cycle (approximate)"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a summary line and optionally write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="ModelConfig field override (repeatable)")
    ap.add_argument("--seqlen", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=["auto", "32", "bf16-mixed"])
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", default=None, help="write results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    fields = {}
    for item in args.overrides:
        k, v = item.split("=", 1)
        fields[k] = _parse_value(v)
    cfg = ModelConfig.preset(args.preset, **fields)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    precision = args.precision if args.precision != "auto" else ("bf16-mixed" if device.type == "cuda" else "32")
    torch.manual_seed(0)
    model = HybridModel(cfg).to(device).train()
    if args.activation_checkpointing:
        model.set_activation_checkpointing(True)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95))
    tokens = torch.randint(0, 4, (args.batch, args.seqlen), device=device)
    tokens = torch.tensor([65, 67, 71, 84], device=device)[tokens]

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = next_token_loss(model(tokens).logits, tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    dt = time.perf_counter() - t0
    tps = args.steps * args.batch * args.seqlen / dt
    fpt = flops_per_token(cfg, args.seqlen)
    peak, peak_src = peak_flops(device, args.peak_tflops)
    result = {
        "preset": args.preset, "overrides": fields, "parameters": model.num_parameters(),
        "seqlen": args.seqlen, "batch": args.batch, "steps": args.steps, "precision": precision,
        "activation_checkpointing": args.activation_checkpointing,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
        "torch_threads": torch.get_num_threads(), "tokens_per_s": tps, "step_time_s": dt / args.steps,
        "flops_per_token": fpt, "peak_flops": peak, "peak_source": peak_src, "mfu": tps * fpt / peak,
        "gpu_max_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "versions": {"genomod": __version__, "torch": torch.__version__, "python": platform.python_version(),
                     "cuda": torch.version.cuda},
    }
    print(f"{args.preset} on {result['device']}: {tps:,.0f} tokens/s, step {dt / args.steps * 1e3:.1f} ms, "
          f"MFU {result['mfu'] * 100:.2f}% ({peak_src})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
