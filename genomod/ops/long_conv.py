"""Hyena-LI long convolution with fused gating and bounded memory (plain PyTorch FFT, fwd + bwd).

``y = x2 * (fft_conv(x1 * v, h) + D * x1 * v)`` with the implicit modal filter
``h[c, t] = sum_s R[c, s] exp(log_pole[c, s] * t)`` (``reference.modal_filter``: one mode at a time,
never a (C, state, L) tensor). Differences from the reference (``reference.hyena_li_ref``), all exact in float32:

- a custom ``autograd.Function`` that saves only its inputs (x2, x1, v, poles, residues, D) and
  recomputes the FFTs in backward, instead of autograd keeping ``u``, ``rfft(u)``, the filter, its FFT,
  the product and the 2L-long inverse FFT alive between forward and backward;
- channels are processed in chunks, so the fp32 filter, its spectrum and the complex intermediates
  exist for ``chunk`` channels at a time (at 1M tokens x 4096 channels the reference's (C, L) filter and
  (C, L+1) spectrum alone are 48 GB);
- the gate and skip epilogue ``x2 * (conv + D u)`` runs on the chunk while it is hot;
- the gradients of poles and residues are formed directly from ``dh`` (``dR = sum_t dh e^{p t}``,
  ``dp = sum_t dh R t e^{p t}``), one mode at a time, instead of autograd through ``modal_filter``.
Backward uses FFT correlations: ``du = irfft(rfft(gc) conj(rfft(h)))`` and
``dh = irfft(sum_b rfft(gc) conj(rfft(u)))`` with ``gc = dy * x2`` (zero padding to 2L makes them exact).
"""

from __future__ import annotations

import torch

from genomod.ops.reference import modal_filter

DEFAULT_CHUNK_BYTES = 1 << 30


def _chunk_channels(bsz: int, channels: int, length: int, budget: int) -> int:
    """Channels per chunk so that the complex (B, chunk, L+1) spectra stay within ``budget`` bytes."""
    per_channel = (bsz + 2) * (length + 1) * 8 * 3  # spectra of u, h, product (complex64), with slack
    return max(1, min(channels, budget // max(per_channel, 1)))


class LongConvGate(torch.autograd.Function):
    """Chunked FFT long conv with gating; saves inputs only and recomputes in backward."""

    @staticmethod
    def forward(ctx, x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor, log_poles: torch.Tensor,
                residues: torch.Tensor, D: torch.Tensor, chunk: int) -> torch.Tensor:
        bsz, c, length = x2.shape
        n = 2 * length
        y = torch.empty(bsz, c, length, device=x2.device, dtype=x2.dtype)
        for lo in range(0, c, chunk):
            sl = slice(lo, min(c, lo + chunk))
            u = x1[:, sl] * v[:, sl]
            hf = torch.fft.rfft(modal_filter(log_poles[sl], residues[sl], length), n=n)
            conv = torch.fft.irfft(torch.fft.rfft(u.float(), n=n) * hf, n=n)[..., :length]
            conv = torch.addcmul(conv, u.float(), D[sl].float()[None, :, None])
            y[:, sl] = conv.to(x2.dtype) * x2[:, sl]
        ctx.save_for_backward(x2, x1, v, log_poles, residues, D)
        ctx.chunk = chunk
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x2, x1, v, lp, res, D = ctx.saved_tensors
        bsz, c, length = x2.shape
        n = 2 * length
        gx2, gx1, gv = torch.empty_like(x2), torch.empty_like(x1), torch.empty_like(v)
        glp, gres = torch.zeros_like(lp, dtype=torch.float32), torch.zeros_like(res, dtype=torch.float32)
        gd = torch.zeros(c, device=D.device, dtype=torch.float32)
        t = torch.arange(length, device=x2.device, dtype=torch.float32)
        for lo in range(0, c, ctx.chunk):
            sl = slice(lo, min(c, lo + ctx.chunk))
            lpc, rc = lp[sl].float(), res[sl].float()
            dc = D[sl].float()[None, :, None]
            u = x1[:, sl] * v[:, sl]
            uf = u.float()
            hf = torch.fft.rfft(modal_filter(lpc, rc, length), n=n)
            uspec = torch.fft.rfft(uf, n=n)
            conv = torch.addcmul(torch.fft.irfft(uspec * hf, n=n)[..., :length], uf, dc)
            gyc = gy[:, sl]
            gx2[:, sl] = gyc * conv.to(x2.dtype)
            gc = (gyc * x2[:, sl]).float()
            gspec = torch.fft.rfft(gc, n=n)
            gu = torch.addcmul(torch.fft.irfft(gspec * hf.conj(), n=n)[..., :length], gc, dc).to(u.dtype)
            gx1[:, sl] = gu * v[:, sl]
            gv[:, sl] = gu * x1[:, sl]
            gd[sl] = (gc * uf).sum(dim=(0, 2))
            gh = torch.fft.irfft((gspec * uspec.conj()).sum(0), n=n)[..., :length]  # (chunk, L)
            for s in range(lpc.shape[1]):
                e = torch.exp(lpc[:, s, None] * t[None, :])
                ge = gh * e
                gres[sl, s] = ge.sum(-1)
                glp[sl, s] = rc[:, s] * (ge * t).sum(-1)
        return gx2, gx1, gv, glp.to(lp.dtype), gres.to(res.dtype), gd.to(D.dtype), None


def long_conv_gate(x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor, log_poles: torch.Tensor,
                   residues: torch.Tensor, D: torch.Tensor,
                   chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """Hyena-LI ``x2 * (conv(x1 v, modal_filter) + D x1 v)``: the twin of ``reference.hyena_li_ref``.

    x2, x1, v: (B, C, L); log_poles (G, S) or (G, S, 1) and residues (G, S) per group of C // G channels
    (G = C: per channel); D: (C,). ``chunk_bytes`` bounds the spectra held per channel chunk.
    Returns (B, C, L) in x2's dtype.
    """
    lp = log_poles.reshape(log_poles.shape[0], -1)
    res = residues.reshape(residues.shape[0], -1)
    bsz, c, length = x2.shape
    if lp.shape[0] != c:  # per-group parameters: expand (autograd sums the group's gradients back)
        rep = c // lp.shape[0]
        lp, res = lp.repeat_interleave(rep, 0), res.repeat_interleave(rep, 0)
    return LongConvGate.apply(x2, x1, v, lp, res, D, _chunk_channels(bsz, c, length, chunk_bytes))

