"""Inference precision: the activation dtype per device, weight-only int8 quantization, and weight bytes.

``load_model(..., dtype=, quantize=)``, ``VariantScorer(..., dtype=, quantize=)`` and the ``--dtype`` /
``--quantize`` options of ``genomod score`` and ``genomod mutagenesis`` go through ``resolve_dtype`` and
``apply_precision``:

- ``dtype``: ``float32``, ``bfloat16`` or ``float16`` (the weights and activations), or ``auto``/None:
  bfloat16 on CUDA, else the checkpoint's own dtype (float32 for the shipped models, bfloat16 for converted
  Evo 2 checkpoints). Hyena-LI ``log_poles``/``residues`` stay float32 in every case
  (``genomod.model.hybrid.FP32_PARAMS``): their exponentials over long lengths need the mantissa.
- ``quantize="int8"``: weight-only int8 of every ``nn.Linear`` through torchao's ``Int8WeightOnlyConfig``
  (symmetric, one scale per output channel); activations stay in ``dtype``. Embedding (tied unembedding),
  norms, short/medium filters, LI poles/residues and biases are not quantized. torchao is the optional
  extra ``genomod[quant]``; without it, int8 is a one-line error naming the install command.

``weight_bytes`` counts what a model holds (quantized tensors by their int8 data, scales and zero points);
``plan_bytes`` computes the same from a meta-device model, which is how ``scripts/memory_plan.py`` sizes
Evo 2 1B/7B/40B without allocating them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from importlib import metadata

import torch
import torch.nn as nn

from genomod.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZE = ("int8",)
QUANT_INSTALL = 'pip install "genomod[quant]"  (or: pip install torchao)'
# torchao Int8WeightOnlyConfig layout (torchao 0.18, checked by tests/test_precision.py against a real model):
# int8 weight, one float32 scale and one int8 zero point per output channel.
INT8_SCALE_BYTES, INT8_ZERO_POINT_BYTES = 4, 1


def dtype_name(dtype: str | torch.dtype) -> str:
    """Canonical name of a dtype given as a name or torch dtype; ConfigError for anything else."""
    if isinstance(dtype, torch.dtype):
        for name, dt in DTYPES.items():
            if dt == dtype:
                return name
    elif isinstance(dtype, str) and dtype in DTYPES:
        return dtype
    raise ConfigError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)} or auto")


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device, default: str = "float32") -> str:
    """The activation dtype to run in: ``auto``/None -> bfloat16 on CUDA, else ``default`` (the checkpoint's).

    Why not bfloat16 on CPU by default: its accuracy against float32 scores is what
    ``scripts/bench_precision.py`` measures; until a measurement says otherwise CPU keeps the stored dtype.
    """
    if dtype is None or (isinstance(dtype, str) and dtype == "auto"):
        return "bfloat16" if torch.device(device).type == "cuda" else dtype_name(default)
    return dtype_name(dtype)


def check_quantize(quantize: str | None) -> str | None:
    """``None``/``"none"`` -> None; ``"int8"`` -> ``"int8"``; ConfigError for anything else."""
    if quantize is None or quantize == "none":
        return None
    if quantize in QUANTIZE:
        return quantize
    raise ConfigError(f"unknown quantize {quantize!r}: use int8 or none")


def torchao_version() -> str:
    """Installed torchao version (without importing it), or 'not installed'."""
    try:
        return metadata.version("torchao")
    except metadata.PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """torchao logs a warning per CUDA-only extension it cannot load on a CPU build; keep those out of stderr."""
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _torchao_int8():
    """(quantize_, Int8WeightOnlyConfig) from torchao; ConfigError naming the install command when absent."""
    try:
        with _quiet_import():
            from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as exc:
        raise ConfigError(f"quantize='int8' needs torchao ({exc}); install it with: {QUANT_INSTALL}") from None
    return quantize_, Int8WeightOnlyConfig


def _is_linear(module: nn.Module, _fqn: str = "") -> bool:
    return isinstance(module, nn.Linear)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Weight-only int8 (per output channel) of every ``nn.Linear`` in ``model``, in place; returns it.

    Only Linear weights change: Hyena filters, LI poles/residues, embeddings, norms and biases keep their dtype.
    """
    quantize_, config = _torchao_int8()
    if not any(_is_linear(m) for m in model.modules()):
        raise ConfigError("quantize='int8': the model has no nn.Linear layer to quantize")
    quantize_(model, config(), filter_fn=_is_linear)
    model.quantization = "int8"
    return model


def apply_precision(model: nn.Module, dtype: str | torch.dtype | None = None, quantize: str | None = None,
                    default: str = "float32") -> nn.Module:
    """Cast ``model`` (a HybridModel) to the resolved dtype (LI poles/residues stay float32), then quantize.

    ``dtype``/``default`` as in ``resolve_dtype`` (on the model's device); ``quantize``: None or ``"int8"``.
    """
    q = check_quantize(quantize)
    name = resolve_dtype(dtype, model.device, default)
    if getattr(model, "quantization", None):
        raise ConfigError("the model is already quantized; load the float checkpoint again to change precision")
    model.to_dtype(name)
    if q == "int8":
        quantize_int8(model)
    return model


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor holds; for a torchao tensor subclass, the sum over its inner tensors (data, scales, ...)."""
    names = list(getattr(t, "tensor_data_names", [])) + list(getattr(t, "optional_tensor_data_names", []))
    if names:
        inner = [getattr(t, n, None) for n in names]
        return sum(tensor_bytes(x) for x in inner if isinstance(x, torch.Tensor))
    return t.numel() * t.element_size()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers of ``model`` (quantized weights counted by what they store)."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += tensor_bytes(t)
    return total


def plan_bytes(model: nn.Module, dtype: str | torch.dtype = "float32", quantize: str | None = None) -> int:
    """Weight bytes ``model`` would hold after ``apply_precision(dtype, quantize)``, from shapes alone.

    Works on a meta-device model: FP32_PARAMS at 4 bytes, every other parameter at ``dtype``; with
    ``quantize="int8"`` each nn.Linear weight at 1 byte plus a float32 scale and an int8 zero point per
    output channel (torchao's layout). Buffers are counted at their own dtype.
    """
    from genomod.model.hybrid import FP32_PARAMS

    size = torch.empty((), dtype=DTYPES[dtype_name(dtype)]).element_size()
    q = check_quantize(quantize)
    linear_weights = {id(m.weight) for m in model.modules() if _is_linear(m)} if q == "int8" else set()
    total, seen = 0, set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in linear_weights:
            total += p.numel() + p.shape[0] * (INT8_SCALE_BYTES + INT8_ZERO_POINT_BYTES)
        elif name.endswith(FP32_PARAMS):
            total += p.numel() * 4
        else:
            total += p.numel() * size
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return total
