"""One switch between reference and fused Hyena operators, with clean, logged fallbacks.

``GENOMOD_KERNELS=reference|fused|auto`` (default ``auto``) or ``set_kernels(...)`` / ``use_kernels(...)``:

- ``reference``: the plain PyTorch ops of ``genomod.ops.reference`` (the code in ``HyenaFilter.forward``).
- ``fused``: Hyena-SE -> ``triton_short_conv`` (Triton), Hyena-MR -> ``triton_blocked_conv`` (Triton),
  Hyena-LI -> ``long_conv`` (chunked FFT, plain torch). Triton kernels run on CUDA, or on CPU when they
  were built by the interpreter (``TRITON_INTERPRET=1`` set before the first import of triton).
- ``auto``: ``fused`` on CUDA when triton imports, else ``reference``.
When a fused operator cannot run (no triton, CPU without the interpreter, unsupported dtype or shape) the
reference op is used and the reason is logged once per (operator, reason). Only the no-cache forward
(training, scoring whole sequences) is dispatched; the stateful/chunked path stays on the reference ops.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch

log = logging.getLogger(__name__)

MODES = ("reference", "fused", "auto")
FUSED_NAMES = {"SE": "triton short conv + gate", "MR": "triton blocked Toeplitz conv + gate",
               "LI": "chunked FFT long conv + gate (torch)"}
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_override: str | None = None
_logged: set[tuple[str, str]] = set()


def kernel_mode(config_mode: str = "auto") -> str:
    """The requested mode: ``set_kernels`` override, else ``GENOMOD_KERNELS``, else the model config's ``kernels``."""
    mode = (_override or os.environ.get("GENOMOD_KERNELS") or config_mode).strip().lower()
    if mode not in MODES:
        _log_once("mode", f"GENOMOD_KERNELS={mode!r} is not one of {MODES}; using auto")
        return "auto"
    return mode


def set_kernels(mode: str | None) -> None:
    """Force ``reference``, ``fused`` or ``auto`` for this process (None: back to the environment)."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"kernel mode must be one of {MODES}, got {mode!r}")
    global _override
    _override = mode


@contextlib.contextmanager
def use_kernels(mode: str) -> Iterator[None]:
    """Context manager form of ``set_kernels``."""
    global _override
    prev = _override
    set_kernels(mode)
    try:
        yield
    finally:
        _override = prev


def _log_once(op: str, reason: str) -> None:
    if (op, reason) not in _logged:
        _logged.add((op, reason))
        log.warning("genomod kernels: %s", reason)


def triton_version() -> str | None:
    """Installed triton version, or None when it does not import."""
    try:
        import triton
    except Exception:  # noqa: BLE001 - any import failure means "no triton"
        return None
    return str(triton.__version__)


def _triton_module(name: str) -> tuple[Any | None, str | None]:
    """Import one of the Triton kernel modules, returning (module, None) or (None, reason)."""
    try:
        return importlib.import_module(f"genomod.ops.{name}"), None
    except Exception as exc:  # noqa: BLE001
        return None, f"triton kernels unavailable ({type(exc).__name__}: {exc})"


def choose(kind: str, device: torch.device | str, dtype: torch.dtype, filter_len: int | None = None,
           config_mode: str = "auto") -> tuple[str, str | None]:
    """Backend for Hyena ``kind`` on (device, dtype): ``("fused"|"reference", reason for reference)``."""
    mode = kernel_mode(config_mode)
    dev = torch.device(device)
    if mode == "reference":
        return "reference", None
    if mode == "auto" and dev.type != "cuda":
        return "reference", None
    if dtype not in SUPPORTED_DTYPES:
        return "reference", f"{kind}: dtype {dtype} not supported by fused kernels"
    if kind == "LI":
        return "fused", None
    if kind not in ("SE", "MR"):
        return "reference", f"unknown Hyena kind {kind}"
    mod, why = _triton_module("triton_short_conv" if kind == "SE" else "triton_blocked_conv")
    if mod is None:
        return "reference", f"{kind}: {why}"
    if dev.type != "cuda":
        from genomod.ops.triton_short_conv import is_interpreted

        if not is_interpreted():
            return "reference", (f"{kind}: Triton kernels need CUDA, or TRITON_INTERPRET=1 set before triton "
                                 f"was first imported (device {dev.type})")
    if kind == "SE" and filter_len is not None and filter_len > mod.MAX_K:
        return "reference", f"SE: filter length {filter_len} > {mod.MAX_K} (short conv kernel limit)"
    return "fused", None


def fused_hyena(module: Any, x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor) -> torch.Tensor | None:
    """Fused inner Hyena operator of a ``HyenaFilter`` (no cache), or None when reference ops are chosen."""
    kind = module.kind
    backend, reason = choose(kind, x2.device, x2.dtype, getattr(module, "length", None), module.cfg.kernels)
    if backend == "reference":
        if reason:
            _log_once(kind, reason + "; using reference ops")
        return None
    if kind == "LI":
        from genomod.ops.long_conv import long_conv_gate

        lp, res = module.modal_params()
        return long_conv_gate(x2, x1, v, lp, res, module.D)
    rep = module.cfg.hidden_size // module.groups
    h = module.explicit_filter()[::rep]  # (G, K): one row per group; gradients flow back through the repeat
    if kind == "SE":
        from genomod.ops.triton_short_conv import short_conv_gate

        return short_conv_gate(x2, x1, v, h)
    from genomod.ops.triton_blocked_conv import blocked_conv_gate

    return blocked_conv_gate(x2, x1, v, h, module.D)


def _sdpa_backends() -> dict[str, bool]:
    """Which PyTorch SDPA backends are enabled (on CUDA; only ``math`` matters on CPU)."""
    cuda = torch.backends.cuda
    out = {}
    for name, fn in (("flash", "flash_sdp_enabled"), ("mem_efficient", "mem_efficient_sdp_enabled"),
                     ("math", "math_sdp_enabled"), ("cudnn", "cudnn_sdp_enabled")):
        if hasattr(cuda, fn):
            out[name] = bool(getattr(cuda, fn)())
    return out


def kernel_report(device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> dict[str, Any]:
    """What is available and what each operator would use on ``device`` (default: CUDA if present)."""
    from genomod.ops.attention import attention_backend, flash_attn_available

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dt = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    report: dict[str, Any] = {
        "mode": kernel_mode(),
        "device": f"{dev.type} ({dt})".replace("torch.", ""),
        "triton": triton_version() or "not installed",
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0") == "1",
        "flash_attn": "installed" if flash_attn_available() else "not installed",
        "sdpa_backends": ", ".join(k for k, on in _sdpa_backends().items() if on) or "none",
        "attention": attention_backend(dev, dt),
    }
    for kind in ("SE", "MR", "LI"):
        backend, reason = choose(kind, dev, dt)
        report[f"hyena_{kind}"] = (FUSED_NAMES[kind] if backend == "fused"
                                   else "reference (PyTorch)" + (f": {reason}" if reason else ""))
    return report
