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
QUERY_BLOCK = 1024


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
        # queries at the end of a longer key sequence (K/V cache): bottom-right causal mask, processed in
        # query blocks so that backends which materialise scores (CPU math path) hold at most
        # heads x QUERY_BLOCK x Lk of them
        from torch.nn.attention.bias import causal_lower_right

        parts = []
        for q0 in range(0, lq, QUERY_BLOCK):
            q1 = min(lq, q0 + QUERY_BLOCK)
            kv_end = lk - lq + q1
            parts.append(F.scaled_dot_product_attention(
                qt[:, :, q0:q1], kt[:, :, :kv_end], vt[:, :, :kv_end], attn_mask=causal_lower_right(q1 - q0, kv_end)))
        out = torch.cat(parts, dim=2)
    return out.transpose(1, 2)
