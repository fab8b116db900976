"""One switch between reference and fused Hyena operators, resolved once, with clean, logged fallbacks.

The mode is ``set_kernels(...)`` / ``use_kernels(...)`` when called, else ``GENOMOD_KERNELS``, else the
model config's ``kernels`` (``reference|fused|auto``, default ``auto``):

- ``reference``: the plain PyTorch operators ``reference.hyena_se_ref`` / ``hyena_mr_ref`` / ``hyena_li_ref``.
- ``fused``: their twins with the same signature: Hyena-SE -> ``triton_short_conv.short_conv_gate``
  (Triton), Hyena-MR -> ``triton_blocked_conv.blocked_conv_gate`` (Triton), Hyena-LI ->
  ``long_conv.long_conv_gate`` (chunked FFT, plain torch). Triton kernels run on CUDA, or on CPU when they
  were built by the interpreter (``TRITON_INTERPRET=1`` set before the first import of triton).
- ``auto``: ``fused`` on CUDA when triton imports, else ``reference``.
When a fused operator cannot run (no triton, CPU without the interpreter, unsupported dtype or shape) the
reference operator is used and the reason is logged once per (operator, reason).

Resolution happens outside the forward pass: a model layer reads the mode once when it is built
(``kernel_mode``), registers itself (``register``), and picks its operator with ``hyena_op`` once per
(device, dtype) it meets (eagerly at ``build_model`` / ``load_model``). ``set_kernels`` / ``use_kernels``
re-resolve every registered layer at once. Nothing here is read inside ``forward``. Only the no-cache
forward (training, scoring whole sequences) is dispatched; the stateful/chunked path stays on the
reference helpers. This module knows nothing of the model: it takes tensors and plain parameters.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch

from genomod.ops import reference as ref

log = logging.getLogger(__name__)

MODES = ("reference", "fused", "auto")
KINDS = ("SE", "MR", "LI")
FUSED_NAMES = {"SE": "triton short conv + gate", "MR": "triton blocked Toeplitz conv + gate",
               "LI": "chunked FFT long conv + gate (torch)"}
REFERENCE_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "SE": ref.hyena_se_ref, "MR": ref.hyena_mr_ref, "LI": ref.hyena_li_ref}
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_override: str | None = None
_logged: set[tuple[str, str]] = set()


class KernelClient(Protocol):
    """A layer that caches its resolved operators and re-resolves them when the mode changes."""

    def refresh_kernels(self) -> None: ...


_clients: weakref.WeakSet[Any] = weakref.WeakSet()


def register(client: KernelClient) -> None:
    """Have ``client.refresh_kernels()`` called whenever ``set_kernels`` / ``use_kernels`` change the mode."""
    _clients.add(client)


def kernel_mode(config_mode: str = "auto") -> str:
    """The requested mode: ``set_kernels`` override, else ``GENOMOD_KERNELS``, else the model config's ``kernels``.

    Read when a layer is built and on ``set_kernels``, never in ``forward``.
    """
    mode = (_override or os.environ.get("GENOMOD_KERNELS") or config_mode).strip().lower()
    if mode not in MODES:
        _log_once("mode", f"GENOMOD_KERNELS={mode!r} is not one of {MODES}; using auto")
        return "auto"
    return mode


def set_kernels(mode: str | None) -> None:
    """Force ``reference``, ``fused`` or ``auto`` for this process (None: back to the environment/config).

    Every live model layer re-resolves its operators now.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"kernel mode must be one of {MODES}, got {mode!r}")
    global _override
    _override = mode
    for client in list(_clients):
        client.refresh_kernels()


@contextlib.contextmanager
def use_kernels(mode: str) -> Iterator[None]:
    """Context manager form of ``set_kernels`` (the previous override is restored on exit)."""
    prev = _override
    set_kernels(mode)
    try:
        yield
    finally:
        set_kernels(prev)


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


def backend(kind: str, mode: str, device: torch.device | str, dtype: torch.dtype,
            filter_len: int | None = None) -> tuple[str, str | None]:
    """Backend for Hyena ``kind`` in an already resolved ``mode`` on (device, dtype).

    Returns ``("fused"|"reference", reason the fused operator cannot run or None)``.
    """
    dev = torch.device(device)
    if mode == "reference" or (mode == "auto" and dev.type != "cuda"):
        return "reference", None
    if kind not in KINDS:
        return "reference", f"unknown Hyena kind {kind}"
    if dtype not in SUPPORTED_DTYPES:
        return "reference", f"{kind}: dtype {dtype} not supported by fused kernels"
    if kind == "LI":
        return "fused", None
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


def choose(kind: str, device: torch.device | str, dtype: torch.dtype, filter_len: int | None = None,
           config_mode: str = "auto") -> tuple[str, str | None]:
    """``backend`` under the mode requested now (``kernel_mode(config_mode)``); for reports and tests."""
    return backend(kind, kernel_mode(config_mode), device, dtype, filter_len)


def _fused_op(kind: str) -> Callable[..., torch.Tensor]:
    if kind == "LI":
        from genomod.ops.long_conv import long_conv_gate

        return long_conv_gate
    if kind == "SE":
        from genomod.ops.triton_short_conv import short_conv_gate

        return short_conv_gate
    from genomod.ops.triton_blocked_conv import blocked_conv_gate

    return blocked_conv_gate


def hyena_op(kind: str, mode: str, device: torch.device | str, dtype: torch.dtype,
             filter_len: int | None = None) -> Callable[..., torch.Tensor]:
    """The inner operator for Hyena ``kind`` (``SE``/``MR``/``LI``) in ``mode`` on (device, dtype).

    Returns the fused twin when it can run, else the reference (``REFERENCE_OPS[kind]``, logging why once).
    Both take ``(x2, x1, v, *params)``: SE ``(h,)``, MR ``(h, D)``, LI ``(log_poles, residues, D)``
    (shapes in ``genomod.ops.reference``). Call it when building or moving a model, not per forward.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown Hyena kind {kind!r}; one of {KINDS}")
    which, reason = backend(kind, mode, device, dtype, filter_len)
    if which == "fused":
        return _fused_op(kind)
    if reason:
        _log_once(kind, reason + "; using reference ops")
    return REFERENCE_OPS[kind]


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
    for kind in KINDS:
        which, reason = choose(kind, dev, dt)
        report[f"hyena_{kind}"] = (FUSED_NAMES[kind] if which == "fused"
                                   else "reference (PyTorch)" + (f": {reason}" if reason else ""))
    return report
