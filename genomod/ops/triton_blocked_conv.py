"""Hyena-MR as a blocked (two-stage, overlap-add) Toeplitz convolution with fused gating, fwd + bwd.

Ku et al. 2025 (arXiv 2503.01868, "Systems and algorithms for convolutional multi-hybrid language
models"): split time into blocks of ``bt`` samples; with the filter ``h`` (time orientation, length K)
the output block ``i`` is ``y_i = sum_j T_j @ u_{i-j}`` where ``T_j[r, s] = h[j*bt + r - s]`` (zero
outside [0, K)) are the ``NB = 1 + ceil((K-1)/bt)`` Toeplitz bands (diagonal block ``T_0``, first
sub-diagonal ``T_1``, ...; two bands when ``bt >= K-1``). Filters are shared by groups of ``C // G``
channels, so the bands are built once per group (``toeplitz_blocks``, a differentiable torch gather) and
applied to a (bt x channels-of-the-group) tile with ``tl.dot`` (tensor cores in bf16 on GPU).

Whole operator: ``y = x2 * (conv(x1 * v, h) + D * x1 * v)``.
- forward kernel: per (batch, group, channel tile) and chunk of time blocks: ``u = x1 * v`` on the fly,
  ``acc = sum_j T_j @ u_{i-j}``, epilogue ``x2 * (acc + D u)``; only ``y`` is written.
- backward kernel 1: recompute the conv for ``dx2``; ``gc = dy * x2``; transposed conv
  ``gu_i = sum_j T_j^T @ gc_{i+j} + D gc_i``; ``dx1 = gu v``, ``dv = gu x1``; per-program ``dD`` partials.
- backward kernel 2: per band ``j``: ``dT_j = sum_i gc_i @ u_{i-j}^T`` partials (reduced in torch);
  autograd maps ``dT`` back to ``h`` through the gather.
``blocked_conv_torch`` is the same blocked algorithm in plain PyTorch (matmuls; useful on CPU too).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from genomod.ops.triton_short_conv import _common_strides


def num_bands(k: int, bt: int) -> int:
    """Toeplitz bands needed for a length-``k`` filter with time blocks of ``bt``."""
    return 1 + math.ceil((k - 1) / bt)


def toeplitz_blocks(h: torch.Tensor, bt: int, nb: int | None = None) -> torch.Tensor:
    """(G, K) time-orientation filter -> (G, NB, bt, bt) bands ``T_j[r, s] = h[j*bt + r - s]``."""
    g, k = h.shape
    nb = nb or num_bands(k, bt)
    ar = torch.arange(bt, device=h.device)
    lag = torch.arange(nb, device=h.device)[:, None, None] * bt + ar[None, :, None] - ar[None, None, :]
    valid = (lag >= 0) & (lag < k)
    return h[:, lag.clamp(0, k - 1)] * valid.to(h.dtype)


def blocked_conv_torch(x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor, h: torch.Tensor, D: torch.Tensor,
                     block: int = 64) -> torch.Tensor:
    """Plain-PyTorch blocked Hyena-MR ``x2 * (conv(x1 v, h) + D x1 v)``, h (G, K) per group, x2's dtype."""
    bsz, c, length = x2.shape
    g, k = h.shape
    gs = c // g
    nblk = math.ceil(length / block)
    nb = min(num_bands(k, block), nblk)
    t = toeplitz_blocks(h.float(), block, nb)  # (G, NB, bt, bt)
    u = (x1 * v).float()
    u5 = F.pad(u, (0, nblk * block - length)).reshape(bsz, g, gs, nblk, block)
    y5 = torch.einsum("grs,bgcns->bgcnr", t[:, 0], u5)
    for j in range(1, nb):
        uj = F.pad(u5, (0, 0, j, 0))[..., :nblk, :]  # block i sees u block i - j
        y5 = y5 + torch.einsum("grs,bgcns->bgcnr", t[:, j], uj)
    y = y5.reshape(bsz, c, nblk * block)[..., :length] + u * D.float()[None, :, None]
    return y.to(x2.dtype) * x2


@triton.jit
def _mr_tile(pid, NCT, G, GS, BT: tl.constexpr, BC: tl.constexpr):
    """Program id -> batch, group, time offsets, channel mask and channel ids of its (group, channel tile)."""
    ct = pid % NCT
    g = (pid // NCT) % G
    b = (pid // (NCT * G)).to(tl.int64)
    offs_c = ct * BC + tl.arange(0, BC)
    return b, g, tl.arange(0, BT), offs_c < GS, (g * GS + offs_c).to(tl.int64)


@triton.jit
def _mr_fwd_kernel(x2_ptr, x1_ptr, v_ptr, t_ptr, d_ptr, y_ptr, L, G, GS, NCT, BPC, NBLK, sb, sc, ysb, ysc,
                   NB: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr):
    pid = tl.program_id(0)
    b, g, offs_t, cmask, ch = _mr_tile(pid, NCT, G, GS, BT, BC)
    base = b * sb + ch[None, :] * sc
    ybase = b * ysb + ch[None, :] * ysc
    d = tl.load(d_ptr + ch, mask=cmask, other=0.0).to(tl.float32)
    tptr = t_ptr + g.to(tl.int64) * (NB * BT * BT) + offs_t[:, None] * BT + offs_t[None, :]
    t0 = tl.load(tptr)
    i0 = tl.program_id(1) * BPC
    i1 = tl.minimum(i0 + BPC, NBLK)
    for i in range(i0, i1):
        s = i * BT + offs_t
        m = (s < L)[:, None] & cmask[None, :]
        u0 = tl.load(x1_ptr + base + s[:, None], mask=m, other=0.0).to(tl.float32) * \
            tl.load(v_ptr + base + s[:, None], mask=m, other=0.0).to(tl.float32)
        acc = tl.dot(t0, u0.to(t0.dtype), input_precision=PREC)
        for j in tl.static_range(1, NB):
            sp = (i - j) * BT + offs_t
            mp = ((sp >= 0) & (sp < L))[:, None] & cmask[None, :]
            up = tl.load(x1_ptr + base + sp[:, None], mask=mp, other=0.0).to(tl.float32) * \
                tl.load(v_ptr + base + sp[:, None], mask=mp, other=0.0).to(tl.float32)
            tj = tl.load(tptr + j * BT * BT)
            acc += tl.dot(tj, up.to(tj.dtype), input_precision=PREC)
        x2 = tl.load(x2_ptr + base + s[:, None], mask=m, other=0.0).to(tl.float32)
        y = x2 * (acc + d[None, :] * u0)
        tl.store(y_ptr + ybase + s[:, None], y.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _mr_bwd_x_kernel(x2_ptr, x1_ptr, v_ptr, t_ptr, d_ptr, gy_ptr, gx2_ptr, gx1_ptr, gv_ptr, gd_ptr,
                     L, G, GS, NCT, BPC, NBLK, NTC, sb, sc, gsb, gsc,
                     NB: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr):
    pid = tl.program_id(0)
    pid_t = tl.program_id(1)
    b, g, offs_t, cmask, ch = _mr_tile(pid, NCT, G, GS, BT, BC)
    base = b * sb + ch[None, :] * sc
    gbase = b * gsb + ch[None, :] * gsc
    d = tl.load(d_ptr + ch, mask=cmask, other=0.0).to(tl.float32)
    tptr = t_ptr + g.to(tl.int64) * (NB * BT * BT) + offs_t[:, None] * BT + offs_t[None, :]
    t0 = tl.load(tptr)
    gd = tl.zeros([BC], dtype=tl.float32)
    i0 = pid_t * BPC
    i1 = tl.minimum(i0 + BPC, NBLK)
    for i in range(i0, i1):
        s = i * BT + offs_t
        m = (s < L)[:, None] & cmask[None, :]
        x1 = tl.load(x1_ptr + base + s[:, None], mask=m, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + base + s[:, None], mask=m, other=0.0).to(tl.float32)
        x2 = tl.load(x2_ptr + base + s[:, None], mask=m, other=0.0).to(tl.float32)
        gy = tl.load(gy_ptr + gbase + s[:, None], mask=m, other=0.0).to(tl.float32)
        u0 = x1 * v
        gc = gy * x2
        acc = tl.dot(t0, u0.to(t0.dtype), input_precision=PREC)
        gu = tl.dot(tl.trans(t0), gc.to(t0.dtype), input_precision=PREC)
        for j in tl.static_range(1, NB):
            tj = tl.load(tptr + j * BT * BT)
            sp = (i - j) * BT + offs_t
            mp = ((sp >= 0) & (sp < L))[:, None] & cmask[None, :]
            up = tl.load(x1_ptr + base + sp[:, None], mask=mp, other=0.0).to(tl.float32) * \
                tl.load(v_ptr + base + sp[:, None], mask=mp, other=0.0).to(tl.float32)
            acc += tl.dot(tj, up.to(tj.dtype), input_precision=PREC)
            sn = (i + j) * BT + offs_t
            mn = (sn < L)[:, None] & cmask[None, :]
            gn = tl.load(gy_ptr + gbase + sn[:, None], mask=mn, other=0.0).to(tl.float32) * \
                tl.load(x2_ptr + base + sn[:, None], mask=mn, other=0.0).to(tl.float32)
            gu += tl.dot(tl.trans(tj), gn.to(tj.dtype), input_precision=PREC)
        gu += d[None, :] * gc
        gd += tl.sum(gc * u0, axis=0)
        gx2 = gy * (acc + d[None, :] * u0)
        tl.store(gx2_ptr + gbase + s[:, None], gx2.to(gx2_ptr.dtype.element_ty), mask=m)
        tl.store(gx1_ptr + gbase + s[:, None], (gu * v).to(gx1_ptr.dtype.element_ty), mask=m)
        tl.store(gv_ptr + gbase + s[:, None], (gu * x1).to(gv_ptr.dtype.element_ty), mask=m)
    tl.store(gd_ptr + (pid.to(tl.int64) * NTC + pid_t) * BC + tl.arange(0, BC), gd)


@triton.jit
def _mr_bwd_t_kernel(x2_ptr, x1_ptr, v_ptr, gy_ptr, gt_ptr, L, G, GS, NCT, BPC, NBLK, NTC, sb, sc, gsb, gsc,
                     NB: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr,
                     DT: tl.constexpr):
    pid = tl.program_id(0)
    j = tl.program_id(1)
    pid_t = tl.program_id(2)
    b, g, offs_t, cmask, ch = _mr_tile(pid, NCT, G, GS, BT, BC)
    base = b * sb + ch[None, :] * sc
    gbase = b * gsb + ch[None, :] * gsc
    acc = tl.zeros([BT, BT], dtype=tl.float32)
    i0 = pid_t * BPC
    i1 = tl.minimum(i0 + BPC, NBLK)
    for i in range(i0, i1):
        s = i * BT + offs_t
        m = (s < L)[:, None] & cmask[None, :]
        gc = tl.load(gy_ptr + gbase + s[:, None], mask=m, other=0.0).to(tl.float32) * \
            tl.load(x2_ptr + base + s[:, None], mask=m, other=0.0).to(tl.float32)
        sp = (i - j) * BT + offs_t
        mp = ((sp >= 0) & (sp < L))[:, None] & cmask[None, :]
        up = tl.load(x1_ptr + base + sp[:, None], mask=mp, other=0.0).to(tl.float32) * \
            tl.load(v_ptr + base + sp[:, None], mask=mp, other=0.0).to(tl.float32)
        acc += tl.dot(gc.to(DT), tl.trans(up.to(DT)), input_precision=PREC)
    out = gt_ptr + ((pid.to(tl.int64) * NB + j) * NTC + pid_t) * (BT * BT)
    tl.store(out + offs_t[:, None] * BT + offs_t[None, :], acc)


_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _plan(bsz: int, g: int, gs: int, length: int, bt: int, device: torch.device) -> tuple[int, int, int, int]:
    """Channel tile, channel tiles per group, blocks per program and time chunks for the launch grid."""
    bc = max(16, min(64, triton.next_power_of_2(gs)))
    nct = triton.cdiv(gs, bc)
    nblk = triton.cdiv(length, bt)
    if device.type == "cuda":
        target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 2  # interpreter: few, long programs
    ntc = max(1, min(nblk, triton.cdiv(target, bsz * g * nct)))
    bpc = triton.cdiv(nblk, ntc)
    return bc, nct, bpc, triton.cdiv(nblk, bpc)


class BlockedConvGate(torch.autograd.Function):
    """Autograd wrapper over the Triton kernels; inputs are the bands ``T`` (G, NB, bt, bt) and ``D`` (C,)."""

    @staticmethod
    def forward(ctx, x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor, t: torch.Tensor,
                D: torch.Tensor) -> torch.Tensor:
        bsz, c, length = x2.shape
        g, nb, bt, _ = t.shape
        gs = c // g
        (x2, x1, v), sb, sc = _common_strides(x2, x1, v)
        cdt = x2.dtype if x2.dtype in (torch.bfloat16, torch.float16) else torch.float32
        tc = t.detach().to(cdt).contiguous()
        dc = D.detach().float().contiguous()
        prec = "ieee" if cdt == torch.float32 else "tf32"
        bc, nct, bpc, ntc = _plan(bsz, g, gs, length, bt, x2.device)
        nblk = triton.cdiv(length, bt)
        y = torch.empty(bsz, c, length, device=x2.device, dtype=x2.dtype)
        _mr_fwd_kernel[(bsz * g * nct, ntc)](x2, x1, v, tc, dc, y, length, g, gs, nct, bpc, nblk, sb, sc,
                                             y.stride(0), y.stride(1), NB=nb, BT=bt, BC=bc, PREC=prec)
        ctx.save_for_backward(x2, x1, v, tc, dc)
        ctx.meta = (sb, sc, bc, nct, bpc, ntc, nblk, prec, t.dtype, D.dtype)
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x2, x1, v, tc, dc = ctx.saved_tensors
        sb, sc, bc, nct, bpc, ntc, nblk, prec, tdtype, ddtype = ctx.meta
        bsz, c, length = x2.shape
        g, nb, bt, _ = tc.shape
        gs = c // g
        gy = gy.contiguous()
        gx2, gx1, gv = (torch.empty_like(gy, dtype=x2.dtype) for _ in range(3))
        npid = bsz * g * nct
        gd_part = torch.empty(npid, ntc, bc, device=gy.device, dtype=torch.float32)
        _mr_bwd_x_kernel[(npid, ntc)](x2, x1, v, tc, dc, gy, gx2, gx1, gv, gd_part, length, g, gs, nct, bpc,
                                      nblk, ntc, sb, sc, gy.stride(0), gy.stride(1),
                                      NB=nb, BT=bt, BC=bc, PREC=prec)
        gt_part = torch.empty(npid, nb, ntc, bt, bt, device=gy.device, dtype=torch.float32)
        _mr_bwd_t_kernel[(npid, nb, ntc)](x2, x1, v, gy, gt_part, length, g, gs, nct, bpc, nblk, ntc,
                                          sb, sc, gy.stride(0), gy.stride(1), NB=nb, BT=bt, BC=bc, PREC=prec,
                                          DT=_TL_DTYPES[tc.dtype])
        gt = gt_part.reshape(bsz, g, nct, nb, ntc, bt, bt).sum(dim=(0, 2, 4)).to(tdtype)
        gd = gd_part.reshape(bsz, g, nct, ntc, bc).sum(dim=(0, 3)).reshape(g, nct * bc)[:, :gs]
        return gx2, gx1, gv, gt, gd.reshape(c).to(ddtype)


def default_block(k: int, length: int) -> int:
    """Time block: 64 (three bands for K=128), smaller for short filters or inputs, >= 16 for tl.dot."""
    return max(16, min(64, triton.next_power_of_2(max(k - 1, 1)), triton.next_power_of_2(length)))


def blocked_conv_gate(x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor, h: torch.Tensor, D: torch.Tensor,
                      block: int | None = None) -> torch.Tensor:
    """Fused Hyena-MR ``x2 * (conv(x1 v, h) + D x1 v)``: the twin of ``reference.hyena_mr_ref``.

    x2, x1, v: (B, C, L); h: (G, K) or (G, 1, K), time orientation, per group of C // G channels; D: (C,).
    ``block`` (a power of two >= 16) is the time tile; default ``default_block``. Returns (B, C, L) in x2's dtype.
    """
    if h.dim() == 3:
        h = h.reshape(h.shape[0], -1)
    length = x2.shape[-1]
    if x2.shape[1] % h.shape[0]:
        raise ValueError(f"{h.shape[0]} filter groups do not divide {x2.shape[1]} channels")
    bt = block or default_block(h.shape[1], length)
    if bt < 16 or bt & (bt - 1):
        raise ValueError(f"block must be a power of two >= 16, got {bt}")
    nb = min(num_bands(h.shape[1], bt), triton.cdiv(length, bt))  # bands past the input never contribute
    return BlockedConvGate.apply(x2, x1, v, toeplitz_blocks(h, bt, nb), D)
