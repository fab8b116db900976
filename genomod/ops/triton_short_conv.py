"""Fused Hyena-SE inner operator in Triton: ``y = x2 * causal_conv(x1 * v, h)`` in one pass, fwd + bwd.

``x2, x1, v`` are (B, C, L) (any batch/channel strides, unit time stride, e.g. views of the split
featurizer output); ``h`` is (G, K) in ``nn.Conv1d`` orientation, shared by groups of ``C // G``
consecutive channels: ``conv[t] = sum_k h[g, k] u[t - K + 1 + k]``. Accumulation is float32.

Forward kernel: one program per (row = b*C + c, time block); the gate product ``u = x1 * v`` is formed
on the fly, the K taps are a static loop over shifted (L1/L2-resident) loads; nothing but ``y`` is written.
Backward kernel (same grid): recomputes the conv for ``dx2``, forms ``gc = dy * x2``, the transposed conv
``gu[s] = sum_k h[k] gc[s + K - 1 - k]`` for ``dx1 = gu * v`` and ``dv = gu * x1``, and writes per-program
partial sums ``sum_t gc[t] u[t - K + 1 + k]`` (deterministic); torch sums those partials into ``dh``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_K = 16


@triton.jit
def _se_row(C, GS, sb, sc):
    """Program id -> its (batch, channel) row, batch, channel, filter group and base offset."""
    row = tl.program_id(0).to(tl.int64)
    b = row // C
    c = row % C
    return row, b, c, c // GS, b * sb + c * sc


@triton.jit
def _se_fwd_kernel(x2_ptr, x1_ptr, v_ptr, h_ptr, y_ptr, C, L, GS, sb, sc, ysb, ysc,
                   K: tl.constexpr, BLOCK: tl.constexpr):
    _, b, c, g, base = _se_row(C, GS, sb, sc)
    pid_t = tl.program_id(1)
    offs = pid_t * BLOCK + tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(K):
        src = offs - (K - 1) + k
        m = (src >= 0) & (src < L)
        a = tl.load(x1_ptr + base + src, mask=m, other=0.0).to(tl.float32)
        w = tl.load(v_ptr + base + src, mask=m, other=0.0).to(tl.float32)
        acc += tl.load(h_ptr + g * K + k).to(tl.float32) * (a * w)
    mo = offs < L
    x2 = tl.load(x2_ptr + base + offs, mask=mo, other=0.0).to(tl.float32)
    tl.store(y_ptr + b * ysb + c * ysc + offs, (x2 * acc).to(y_ptr.dtype.element_ty), mask=mo)


@triton.jit
def _se_bwd_kernel(x2_ptr, x1_ptr, v_ptr, h_ptr, gy_ptr, gx2_ptr, gx1_ptr, gv_ptr, gh_ptr,
                   C, L, GS, NBLK, sb, sc, gsb, gsc,
                   K: tl.constexpr, BLOCK: tl.constexpr):
    row, b, c, g, base = _se_row(C, GS, sb, sc)
    pid_t = tl.program_id(1)
    gbase = b * gsb + c * gsc
    offs = pid_t * BLOCK + tl.arange(0, BLOCK)
    mo = offs < L
    x1 = tl.load(x1_ptr + base + offs, mask=mo, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + base + offs, mask=mo, other=0.0).to(tl.float32)
    x2 = tl.load(x2_ptr + base + offs, mask=mo, other=0.0).to(tl.float32)
    gy = tl.load(gy_ptr + gbase + offs, mask=mo, other=0.0).to(tl.float32)
    gc = gy * x2
    conv = tl.zeros([BLOCK], dtype=tl.float32)
    gu = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(K):
        w = tl.load(h_ptr + g * K + k).to(tl.float32)
        # forward taps (recompute the conv for dx2, and dh partials)
        src = offs - (K - 1) + k
        m = (src >= 0) & (src < L)
        us = tl.load(x1_ptr + base + src, mask=m, other=0.0).to(tl.float32) * \
            tl.load(v_ptr + base + src, mask=m, other=0.0).to(tl.float32)
        conv += w * us
        tl.store(gh_ptr + (row * NBLK + pid_t) * K + k, tl.sum(gc * us, axis=0))
        # transposed taps: gu[s] = sum_k h[k] gc[s + K - 1 - k]
        dst = offs + (K - 1) - k
        md = dst < L
        gcs = tl.load(gy_ptr + gbase + dst, mask=md, other=0.0).to(tl.float32) * \
            tl.load(x2_ptr + base + dst, mask=md, other=0.0).to(tl.float32)
        gu += w * gcs
    tl.store(gx2_ptr + gbase + offs, (gy * conv).to(gx2_ptr.dtype.element_ty), mask=mo)
    tl.store(gx1_ptr + gbase + offs, (gu * v).to(gx1_ptr.dtype.element_ty), mask=mo)
    tl.store(gv_ptr + gbase + offs, (gu * x1).to(gv_ptr.dtype.element_ty), mask=mo)


def _block(length: int) -> int:
    """Time block: 1024 on long inputs, the next power of two >= 16 on short ones."""
    return max(16, min(1024, triton.next_power_of_2(length)))


def _common_strides(*xs: torch.Tensor) -> tuple[list[torch.Tensor], int, int]:
    """Tensors sharing (batch, channel) strides with unit time stride, copying only when needed."""
    st = xs[0].stride()
    if all(x.stride() == st for x in xs) and st[2] == 1:
        return list(xs), st[0], st[1]
    xs = [x.contiguous() for x in xs]
    return xs, xs[0].stride(0), xs[0].stride(1)


class ShortConvGate(torch.autograd.Function):
    """Autograd wrapper: Triton forward and Triton backward (+ one torch reduction of the dh partials)."""

    @staticmethod
    def forward(ctx, x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        bsz, c, length = x2.shape
        g, k = h.shape
        (x2, x1, v), sb, sc = _common_strides(x2, x1, v)
        hc = h.detach().float().contiguous()
        y = torch.empty(bsz, c, length, device=x2.device, dtype=x2.dtype)
        block = _block(length)
        grid = (bsz * c, triton.cdiv(length, block))
        _se_fwd_kernel[grid](x2, x1, v, hc, y, c, length, c // g, sb, sc, y.stride(0), y.stride(1),
                             K=k, BLOCK=block)
        ctx.save_for_backward(x2, x1, v, hc)
        ctx.meta = (sb, sc, block, h.dtype)
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x2, x1, v, hc = ctx.saved_tensors
        sb, sc, block, hdtype = ctx.meta
        bsz, c, length = x2.shape
        g, k = hc.shape
        gy = gy.contiguous()
        gx2, gx1, gv = (torch.empty_like(gy, dtype=x2.dtype) for _ in range(3))
        nblk = triton.cdiv(length, block)
        gh_part = torch.empty(bsz * c, nblk, k, device=gy.device, dtype=torch.float32)
        _se_bwd_kernel[(bsz * c, nblk)](x2, x1, v, hc, gy, gx2, gx1, gv, gh_part, c, length, c // g, nblk,
                                        sb, sc, gy.stride(0), gy.stride(1), K=k, BLOCK=block)
        gh = gh_part.reshape(bsz, g, c // g, nblk, k).sum(dim=(0, 2, 3)).to(hdtype)
        return gx2, gx1, gv, gh


def short_conv_gate(x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Fused Hyena-SE ``x2 * conv(x1 * v, h)``: the twin of ``reference.hyena_se_ref`` (same arguments, shapes).

    x2, x1, v: (B, C, L); h: (G, K<=16) or (G, 1, K), conv1d orientation, per group of C // G channels.
    Returns (B, C, L) in x2's dtype (float32 accumulation).
    """
    if h.dim() == 3:
        h = h.reshape(h.shape[0], -1)
    if h.shape[1] > MAX_K:
        raise ValueError(f"short conv kernel supports K <= {MAX_K}, got {h.shape[1]}")
    if x2.shape[1] % h.shape[0]:
        raise ValueError(f"{h.shape[0]} filter groups do not divide {x2.shape[1]} channels")
    return ShortConvGate.apply(x2, x1, v, h)


def is_interpreted() -> bool:
    """True when these kernels were built by the Triton interpreter (``TRITON_INTERPRET=1`` at import)."""
    return type(_se_fwd_kernel).__name__ == "InterpretedFunction"
