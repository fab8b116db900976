"""``genomod info`` (versions, devices, kernels, shipped models, model cards) and ``genomod demo``."""

from __future__ import annotations

import importlib
import platform

import click


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return "not installed"
    return str(getattr(mod, "__version__", "installed"))


def collect_info() -> dict:
    """Versions, devices and kernel availability as a dict (also used by benchmarks' JSON)."""
    import torch

    from genomod import __version__
    from genomod.checkpoint import shipped_models
    from genomod.ops.attention import attention_backend, flash_attn_available
    from genomod.precision import torchao_version

    info = {
        "genomod": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "pysam": _version("pysam"),
        "h5py": _version("h5py"),
        "lightning": _version("lightning"),
        "triton": _version("triton"),
        "torchao": torchao_version(),
        "flash_attn": "installed" if flash_attn_available() else "not installed",
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "attention_backend": attention_backend("cuda" if torch.cuda.is_available() else "cpu",
                                               torch.bfloat16 if torch.cuda.is_available() else torch.float32),
        "shipped_models": shipped_models(),
    }
    try:
        from genomod.ops.dispatch import kernel_report

        info["kernels"] = kernel_report()
    except ImportError:
        info["kernels"] = {"hyena": "reference (PyTorch)"}
    return info


@click.command()
@click.option("--model", "model", default=None, help="Print the model card of a shipped model name or checkpoint folder.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(model: str | None, as_json: bool) -> None:
    """Print versions, devices, available kernels and shipped models (or a model card with --model)."""
    if model is not None:
        from genomod.checkpoint import model_card

        click.echo(model_card(model))
        return
    data = collect_info()
    if as_json:
        import json

        click.echo(json.dumps(data, indent=2, default=str))
        return
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {', '.join(value) if isinstance(value, list) else value}")


@click.command()
@click.option("--position", default=41_245_466, show_default=True, help="1-based hg19 chr17 position to centre on.")
@click.option("--window", default=60, show_default=True, help="Window length in bp.")
def demo(position: int, window: int) -> None:
    """Ingestion + tokenizer demo on the shipped BRCA1 region (no model needed)."""
    from genomod import tokenizer as tk
    from genomod.data_paths import brca1_reference, brca1_table
    from genomod.io import ReferenceGenome

    ref = ReferenceGenome(brca1_reference())
    w = ref.window("17", position - 1, window)
    tokens = tk.encode(w.seq)
    click.echo(f"reference: {brca1_reference().name} contigs={','.join(ref.contigs)}")
    click.echo(f"window chr17:{w.start + 1}-{w.end} (pad {w.pad_left}/{w.pad_right}): {w.seq}")
    click.echo(f"tokens[:12]: {tokens[:12].tolist()}  reverse complement: {tk.decode(tk.reverse_complement(tokens))}")
    import pandas as pd

    table = pd.read_csv(brca1_table(), sep="\t")
    click.echo(f"BRCA1 SNVs shipped: {len(table)}; classes: {table['func_class'].value_counts().to_dict()}")
