"""Memory plan for Evo 2 shapes (meta device) in fp32, bf16 and int8, and a depth-reduced CPU timing.

    python scripts/memory_plan.py                                   # 1B, 7B, 40B: table + JSON, no allocation
    python scripts/memory_plan.py --configs 1b 7b 7b-1m 40b 40b-1m
    python scripts/memory_plan.py --measure-layers 1 --seqlen 1024  # + 7B shape, 1 layer per kind, timed on CPU

Plan: each shape is the exact genomod config of a published Evo 2 YAML (shipped in
``genomod/data/evo2_configs``, see its PROVENANCE.md), built on the meta device, so nothing is allocated.
Weight bytes come from ``genomod.precision.plan_bytes``: ``float32`` (Hyena-LI poles/residues always
float32), ``bfloat16``, and ``int8`` = torchao weight-only int8 of every nn.Linear (1 byte per weight, a
float32 scale and an int8 zero point per output channel) with the other parameters in bfloat16. Activation
and cache memory are not in the plan (they depend on length and batch; see docs/model.md).

Measurement (``--measure-layers N``): the measured shape (``--measure-config``, default the 7B) cannot run
whole on a small machine, so for each layer kind it has (SE, MR, LI, MHA) a model of N layers of that kind
(random weights, ``--dtype``/``--quantize``) is timed on a ``--batch`` x ``--seqlen`` forward, and the
embedding + final norm + unembedding ("head") is timed alone on the same input. Per-layer time per kind =
(forward - head) / N; the full-depth estimate = head + sum over kinds of (layers of that kind x per-layer
time). That estimate assumes layers cost the same in a deep stack as in a shallow one and ignores whether
the full weights fit in memory (compare the plan with this machine's RAM, reported beside it).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's genomod, not another installed copy

import torch  # noqa: E402

from genomod.errors import ConfigError  # noqa: E402
from genomod.model import ModelConfig, build_model, count_parameters  # noqa: E402
from genomod.precision import plan_bytes  # noqa: E402

GIB = 2**30


def shape_config(name: str) -> ModelConfig:
    """An Evo 2 YAML name (1b, 7b, 7b-1m, 40b, ...; genomod.convert.evo2) or a ModelConfig preset name."""
    from genomod.convert.evo2 import EVO2_CHECKPOINT_NAMES, EVO2_CONFIGS, evo2_model_config

    if name in EVO2_CONFIGS or name in EVO2_CHECKPOINT_NAMES:
        return evo2_model_config(name)
    return ModelConfig.preset(name)


def plan_row(name: str) -> dict[str, Any]:
    """Parameter count and weight bytes of one shape in fp32, bf16 and int8 (meta device: no allocation)."""
    cfg = shape_config(name)
    model = build_model(cfg, meta=True)
    params = model.num_parameters()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    row = {"config": name, "model": cfg.name, "layers": cfg.num_layers, "hidden_size": cfg.hidden_size,
           "layer_kinds": dict(Counter(cfg.layer_types)), "parameters": params,
           "parameters_analytic": count_parameters(cfg), "linear_weight_parameters": linear,
           "bytes": {"float32": plan_bytes(model, "float32"), "bfloat16": plan_bytes(model, "bfloat16"),
                     "int8": plan_bytes(model, "bfloat16", "int8")}}
    row["int8_over_bf16"] = row["bytes"]["int8"] / row["bytes"]["bfloat16"]
    return row


def _time(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, layers: int, seqlen: int, batch: int, dtype: str, quantize: str | None,
            repeats: int) -> dict[str, Any]:
    """Per-kind per-layer forward time of the depth-reduced shape and the extrapolation to full depth."""
    from genomod.precision import apply_precision, weight_bytes

    cfg = shape_config(name)
    kinds = Counter(cfg.layer_types)
    torch.manual_seed(0)
    tokens = torch.tensor([65, 67, 71, 84])[torch.randint(0, 4, (batch, seqlen))]
    per_kind: dict[str, Any] = {}
    head_s = []
    for kind in kinds:
        model = build_model(cfg.replace(layer_types=[kind] * layers)).eval()
        apply_precision(model, dtype, quantize)
        model.resolve_backends()
        with torch.inference_mode():
            total = _time(lambda m=model: m(tokens), repeats)
            head = _time(lambda m=model: m._logits(m.norm(m.embedding_layer(tokens))), repeats)
        per_layer = max(total - head, 0.0) / layers
        head_s.append(head)
        per_kind[kind] = {"layers_timed": layers, "forward_s": total, "head_s": head, "per_layer_s": per_layer,
                          "tokens_per_s_per_layer": batch * seqlen / per_layer if per_layer > 0 else None,
                          "weights_bytes": weight_bytes(model), "full_depth_count": kinds[kind]}
        del model
    head = statistics.median(head_s)
    full = head + sum(v["per_layer_s"] * v["full_depth_count"] for v in per_kind.values())
    return {"config": name, "model": cfg.name, "seqlen": seqlen, "batch": batch, "dtype": dtype,
            "quantize": quantize or "none", "repeats": repeats, "threads": torch.get_num_threads(),
            "per_kind": per_kind, "head_s": head, "full_depth_layers": cfg.num_layers,
            "full_depth_forward_s_estimate": full, "full_depth_tokens_per_s_estimate": batch * seqlen / full,
            "method": "per-kind layer time measured at reduced depth, summed over the full layer pattern; "
                      "assumes depth-independent layer cost and that the full weights fit in memory"}


def machine_ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Build the plan (and optional measurement), print tables, write JSON atomically."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["1b", "7b", "40b"], help="Evo 2 names or presets")
    ap.add_argument("--measure-layers", type=int, default=0, help="time N layers per kind (0: plan only)")
    ap.add_argument("--measure-config", default="7b", help="shape to time at reduced depth")
    ap.add_argument("--seqlen", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="measurement dtype")
    ap.add_argument("--quantize", default="none", choices=["none", "int8"], help="measurement weights")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the measurement")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "memory_plan.json"))
    args = ap.parse_args(argv)
    if args.measure_layers < 0 or args.seqlen < 1 or args.batch < 1 or args.repeats < 1:
        ap.error("--measure-layers >= 0, --seqlen, --batch and --repeats >= 1")
    from genomod import __version__
    from genomod.precision import torchao_version
    from genomod.utils import cpu_name, write_json

    try:
        rows = [plan_row(c) for c in args.configs]
    except ConfigError as exc:
        ap.error(str(exc))
    print(f"{'config':<10} {'params':>15} {'fp32 GiB':>9} {'bf16 GiB':>9} {'int8 GiB':>9} {'int8/bf16':>9}")
    for r in rows:
        b = r["bytes"]
        print(f"{r['config']:<10} {r['parameters']:>15,} {b['float32'] / GIB:>9.2f} {b['bfloat16'] / GIB:>9.2f} "
              f"{b['int8'] / GIB:>9.2f} {r['int8_over_bf16']:>9.3f}")
    report: dict[str, Any] = {
        "benchmark": "memory_plan",
        "versions": {"genomod": __version__, "torch": torch.__version__, "torchao": torchao_version(),
                     "python": platform.python_version()},
        "machine_ram_bytes": machine_ram_bytes(),
        "plan": rows,
        "plan_notes": "weights only (meta device); int8 = torchao weight-only int8 Linear weights (1 B + fp32 "
                      "scale + int8 zero point per output channel), other parameters bf16, LI poles/residues fp32",
    }
    if args.measure_layers:
        if args.threads:
            torch.set_num_threads(args.threads)
        quantize = None if args.quantize == "none" else args.quantize
        m = measure(args.measure_config, args.measure_layers, args.seqlen, args.batch, args.dtype, quantize,
                    args.repeats)
        report["measurement"] = {**m, "device": cpu_name(),
                                 "load_average": list(os.getloadavg())}
        print(f"\n{m['model']} at depth {args.measure_layers} per kind, batch {args.batch} x {args.seqlen} "
              f"tokens, {args.dtype}{'' if quantize is None else ' + int8 weights'}, {m['threads']} threads:")
        for kind, v in m["per_kind"].items():
            tps = v["tokens_per_s_per_layer"]
            print(f"  {kind:<4} {v['per_layer_s'] * 1e3:9.1f} ms/layer  "
                  f"{tps if tps is None else round(tps):>10} tokens/s per layer  x{v['full_depth_count']} layers")
        print(f"  head {m['head_s'] * 1e3:9.1f} ms")
        print(f"  full depth ({m['full_depth_layers']} layers), estimated: {m['full_depth_forward_s_estimate']:.2f} s "
              f"per forward, {m['full_depth_tokens_per_s_estimate']:.0f} tokens/s ({m['method']})")
    out = write_json(args.out, report)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
