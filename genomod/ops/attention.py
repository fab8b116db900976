"""Attention dispatch: flash-attn when installed and usable, else PyTorch SDPA (flash/mem-efficient/math).

One operator, ``causal_attention(q, k, v, backend)``, where ``backend`` ("flash-attn" or "sdpa") was
chosen beforehand by ``attention_backend(device, dtype, requested)``; ``GENOMOD_ATTENTION=sdpa|flash``
forces a choice and is read by ``requested_backend()`` when a model is built, never per call. The active
backend is shown in ``genomod info``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

QUERY_BLOCK = 1024
# CPU: cap (bytes) on the boolean mask of one query block against a K/V cache; the block shrinks with the key
# length so that attention over a 131 kb cache holds ~16 MiB of mask rather than heads x 1,024 x L scores
MASK_BYTES = 16 << 20
_warned: set[str] = set()


@functools.cache
def flash_attn_available() -> bool:
    """True when the optional flash-attn package is importable (it is never required); checked once."""
    return importlib.util.find_spec("flash_attn") is not None


@functools.cache
def _flash_fn():
    from flash_attn import flash_attn_func  # optional extra, imported only when present

    return flash_attn_func


def requested_backend() -> str:
    """``GENOMOD_ATTENTION`` (``auto``, ``sdpa`` or ``flash``; default ``auto``), read when a model is built."""
    return os.environ.get("GENOMOD_ATTENTION", "auto").lower()


def attention_backend(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                      requested: str | None = None) -> str:
    """Which backend ``causal_attention`` should use on ``device`` with ``dtype`` ("flash-attn" or "sdpa").

    ``requested`` defaults to ``requested_backend()``; an unmet ``flash`` request is logged once.
    """
    want = requested or requested_backend()
    dev = torch.device(device)
    flash_ok = dev.type == "cuda" and dtype in (torch.float16, torch.bfloat16) and flash_attn_available()
    if want == "flash" and not flash_ok and want not in _warned:
        _warned.add(want)
        log.warning("GENOMOD_ATTENTION=flash but flash-attn cannot run here (not installed, not CUDA, or fp32); "
                    "using PyTorch SDPA")
    if want in ("auto", "flash") and flash_ok:
        return "flash-attn"
    return "sdpa"


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """Causal attention for q (B, Lq, H, D) against k, v (B, Lk, H, D), Lk >= Lq, queries at the end.

    ``backend`` is "sdpa" or "flash-attn" (from ``attention_backend``). Returns (B, Lq, H, D). When
    Lk > Lq (a KV cache) the causal mask is aligned to the bottom right.
    """
    lq, lk = q.shape[1], k.shape[1]
    if backend == "flash-attn":
        return _flash_fn()(q, k, v, causal=True)  # bottom-right aligned causal mask for lq != lk
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    if lq == lk:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
    else:
        # queries at the end of a longer key sequence (K/V cache): bottom-right causal mask, in query blocks.
        # On the CPU the mask is a dense boolean block, which SDPA runs with its flash kernel (scores never
        # materialised); torch's CausalBias (causal_lower_right) has no CPU kernel and falls back to the math
        # path, which holds heads x block x Lk float scores and measured several times slower. Elsewhere CausalBias takes
        # the fused kernels. Imported here, not at the top: torch.nn.attention.bias imports triton, which must
        # not happen before a caller sets TRITON_INTERPRET (CPU kernel tests)
        cpu = qt.device.type == "cpu"
        block = max(1, min(QUERY_BLOCK, MASK_BYTES // lk)) if cpu else QUERY_BLOCK
        if not cpu:
            from torch.nn.attention.bias import causal_lower_right
        parts = []
        for q0 in range(0, lq, block):
            q1 = min(lq, q0 + block)
            kv_end = lk - lq + q1
            if cpu:  # query i of the block sits at key position kv_end - (q1 - q0) + i
                mask = torch.ones(q1 - q0, kv_end, dtype=torch.bool, device=qt.device).tril(kv_end - (q1 - q0))
            else:
                mask = causal_lower_right(q1 - q0, kv_end)
            parts.append(F.scaled_dot_product_attention(
                qt[:, :, q0:q1], kt[:, :, :kv_end], vt[:, :, :kv_end], attn_mask=mask))
        out = torch.cat(parts, dim=2)
    return out.transpose(1, 2)
