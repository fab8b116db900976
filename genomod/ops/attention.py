"""Attention dispatch: flash-attn when installed and usable, else PyTorch SDPA (flash/mem-efficient/math).

One interface, ``causal_attention(q, k, v)``; the active backend is reported by ``attention_backend()``
and shown in ``genomod info``. ``GENOMOD_ATTENTION=sdpa|flash`` forces a choice.
"""

from __future__ import annotations

import importlib.util
import logging
import os

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

_FLASH = None


def flash_attn_available() -> bool:
    """True when the optional flash-attn package is importable (it is never required)."""
    return importlib.util.find_spec("flash_attn") is not None


def _flash_fn():
    global _FLASH
    if _FLASH is None:
        from flash_attn import flash_attn_func  # optional extra, imported only when present

        _FLASH = flash_attn_func
    return _FLASH


def attention_backend(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> str:
    """Which backend ``causal_attention`` will use for tensors on ``device`` with ``dtype``."""
    want = os.environ.get("GENOMOD_ATTENTION", "auto").lower()
    dev = torch.device(device)
    flash_ok = (
        flash_attn_available() and dev.type == "cuda" and dtype in (torch.float16, torch.bfloat16)
    )
    if want == "flash" and not flash_ok:
        log.warning("GENOMOD_ATTENTION=flash but flash-attn cannot run here (not installed, not CUDA, or fp32); "
                    "using PyTorch SDPA")
    if want in ("auto", "flash") and flash_ok:
        return "flash-attn"
    return "sdpa"


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention for q (B, Lq, H, D) against k, v (B, Lk, H, D), Lk >= Lq, queries at the end.

    Returns (B, Lq, H, D). When Lk > Lq (a KV cache) the causal mask is aligned to the bottom right.
    """
    lq, lk = q.shape[1], k.shape[1]
    if attention_backend(q.device, q.dtype) == "flash-attn":
        return _flash_fn()(q, k, v, causal=True)  # bottom-right aligned causal mask for lq != lk
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    if lq == lk:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
    else:
        from torch.nn.attention.bias import causal_lower_right

        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=causal_lower_right(lq, lk))
    return out.transpose(1, 2)
