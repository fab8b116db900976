"""Plain PyTorch reference operators of the hybrid model (the ground truth every fused kernel matches).

Shapes: ``x`` is (batch, channels, length) for convolutions. All convolutions are causal. Each function
computes in float32 and returns the input dtype, as Evo 2's reference inference code (vortex) does.

The three Hyena inner operators, one reference per kind, each with the signature of its fused twin:

=========  ==========================================  ===============================================
kind       reference                                   fused twin
=========  ==========================================  ===============================================
Hyena-SE   ``hyena_se_ref(x2, x1, v, h)``              ``triton_short_conv.short_conv_gate``
Hyena-MR   ``hyena_mr_ref(x2, x1, v, h, D)``           ``triton_blocked_conv.blocked_conv_gate``
Hyena-LI   ``hyena_li_ref(x2, x1, v, log_poles,        ``long_conv.long_conv_gate``
           residues, D)``
=========  ==========================================  ===============================================

They are what the model's no-cache forward runs when the reference kernels are selected and what the
parity tests compare the fused twins with. The cached (chunked) path composes the lower-level helpers
below (``causal_depthwise_conv`` with state, ``fft_causal_conv``, ``modal_state_*``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """Evo 2's RMSNorm: ``scale * x / (||x||_2 / sqrt(d) + eps)`` (eps outside the root, as in vortex)."""
    d = x.shape[-1]
    return scale * (x / (x.norm(2, dim=-1, keepdim=True) * d ** (-0.5) + eps))


SHIFTED_SUM_MAX_TAPS = 16  # short filters (featurizer, Hyena-SE) as a sum of shifted products; longer: conv1d


def causal_depthwise_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, state: torch.Tensor | None = None
) -> torch.Tensor:
    """Causal depthwise FIR in ``nn.Conv1d`` orientation: ``y[t] = sum_k w[k] x[t - K + 1 + k]``.

    ``weight`` is (C, K) or (C, 1, K). ``state`` (B, C, K-1) holds the inputs before ``x`` (zeros if None),
    so chunked calls with carried state equal one call on the whole sequence. ``x`` may be a strided view.
    """
    w = weight.reshape(weight.shape[0], -1).float()
    k = w.shape[-1]
    if k <= SHIFTED_SUM_MAX_TAPS:  # the sum itself, one multiply-add per tap (CPU: ~3x faster than conv1d)
        y = _shifted_sum(x.float(), w, None if state is None else state.float())
    else:
        xf = x.float()
        pad = state.float() if state is not None else xf.new_zeros(x.shape[0], x.shape[1], k - 1)
        y = F.conv1d(torch.cat([pad, xf], dim=-1), w[:, None, :], groups=x.shape[1])
    if bias is not None:
        y = y + bias.float()[None, :, None]
    return y.to(x.dtype)


def _shifted_sum(x: torch.Tensor, w: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
    """``causal_depthwise_conv`` as one multiply-add per tap on shifted slices of ``x`` and ``state``: no
    padded copy of the input; float32 (B, C, L), contiguous whatever the strides of ``x``."""
    length, k = x.shape[-1], w.shape[-1]
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):  # autograd: no out= products
        y = x.contiguous() * w[:, k - 1, None]
    else:
        y = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        torch.mul(x, w[:, k - 1, None], out=y)
    for j in range(k - 1):
        s = k - 1 - j  # tap j reads the input s steps back: from x after position s, from state before it
        if s < length:
            y[..., s:].addcmul_(x[..., : length - s], w[:, j, None])
        if state is not None:
            n = min(s, length)
            y[..., :n].addcmul_(state[..., j : j + n], w[:, j, None])
    return y


def fast_fft_length(length: int, filter_length: int) -> int:
    """Smallest FFT length >= ``length + filter_length - 1`` (no wrap-around into the first ``length``
    outputs) with no prime factor above 5 (pocketfft's fast sizes)."""
    n = max(1, length + min(filter_length, length) - 1)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def fft_causal_conv(x: torch.Tensor, h: torch.Tensor, fft_size: int | None = None) -> torch.Tensor:
    """Causal convolution ``y[t] = sum_{j<=t} h[j] x[t-j]`` via FFT (filter in time orientation).

    ``x`` (B, C, L), ``h`` (C, Lh) with Lh <= L or longer (truncated). The FFT length is the smallest fast
    size >= L + Lh - 1 (``fast_fft_length``; 2L for a full-length filter as in vortex, about L + Lh for a short one).
    """
    length = x.shape[-1]
    h = h[..., :length].float()
    n = fft_size or fast_fft_length(length, h.shape[-1])
    y = torch.fft.irfft(torch.fft.rfft(x.float(), n=n) * torch.fft.rfft(h, n=n), n=n)[..., :length]
    return y


def direct_causal_conv(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Same as ``fft_causal_conv`` computed directly (reference for tests; O(L * Lh))."""
    return causal_depthwise_conv(x.float(), h.flip(-1)).float()


def modal_filter(
    log_poles: torch.Tensor, residues: torch.Tensor, length: int, offset: int = 0,
    powers: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hyena-LI implicit filter ``h[c, t] = sum_s R[c, s] exp(log_pole[c, s] * t)`` for t in [offset, offset+L).

    Accumulates over the state dimension one mode at a time, so memory is (C, L), never (C, state, L).
    ``powers`` (offset 0): the table ``modal_powers(log_poles, n)``, n >= L, read instead of computing ``exp``.
    """
    lp = log_poles.reshape(log_poles.shape[0], -1).float()
    res = residues.reshape(residues.shape[0], -1).float()
    t = torch.arange(offset, offset + length, device=lp.device, dtype=torch.float32)
    h = torch.zeros(lp.shape[0], length, device=lp.device, dtype=torch.float32)
    for s in range(lp.shape[1]):
        e = powers[:, s, :length] if powers is not None else torch.exp(lp[:, s, None] * t[None, :])
        h += res[:, s, None] * e
    return h


def modal_powers(log_poles: torch.Tensor, length: int) -> torch.Tensor:
    """``exp(log_pole[c, s] * t)`` for t in [0, length], (C, state, length + 1) float32: every power of the
    poles that ``modal_filter`` and the state helpers read for a chunk of ``length`` (the same values they
    compute themselves), so that an inference layer can compute it once per length (``HyenaLI``)."""
    lp = log_poles.reshape(log_poles.shape[0], -1).float()
    t = torch.arange(length + 1, device=lp.device, dtype=torch.float32)
    return torch.exp(lp[:, :, None] * t[None, None, :])


def modal_filter_dense(log_poles: torch.Tensor, residues: torch.Tensor, length: int) -> torch.Tensor:
    """vortex's formula with the (C, state, L) intermediate, kept only as a test reference."""
    t = torch.arange(length, device=log_poles.device)[None, None]
    lp = log_poles.reshape(log_poles.shape[0], -1, 1).float()
    return (residues.float()[..., None] * (lp * t).exp()).sum(1)


MODAL_BLOCK = 1 << 22  # elements of one (C, state, block) table of pole powers in the modal state helpers


def _modal_blocks(lp: torch.Tensor, t: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    """(time slice, ``exp(lp * t[slice])`` (C, state, block)) over ``t`` in blocks of at most ``MODAL_BLOCK``
    elements, so the state helpers run as matrix products with bounded memory (the blocks depend on the
    parameters only, never on the batch: scores do not change with the batch a site is scored in)."""
    step = max(1, MODAL_BLOCK // max(1, lp.numel()))
    for t0 in range(0, t.shape[0], step):
        sl = slice(t0, min(t0 + step, t.shape[0]))
        yield sl, torch.exp(lp[:, :, None] * t[None, None, sl])


def modal_state_update(
    state: torch.Tensor | None, u: torch.Tensor, log_poles: torch.Tensor, powers: torch.Tensor | None = None
) -> torch.Tensor:
    """Carry the Hyena-LI modal state across a chunk.

    ``state[b, c, s] = sum_{j < T} exp(lp[c, s] * (T - 1 - j)) * u[b, c, j]`` over everything seen so far;
    ``u`` is the chunk (B, C, L). Exact for any chunking (float32). ``powers``: ``modal_powers(log_poles, n)``,
    n >= L.
    """
    lp = log_poles.reshape(log_poles.shape[0], -1).float()
    length = u.shape[-1]
    uf = u.float().flip(-1)  # u[T-1-t]: the pole powers run forward in t
    t = torch.arange(length, device=u.device, dtype=torch.float32)
    blocks = [(slice(0, length), powers[:, :, :length])] if powers is not None else _modal_blocks(lp, t)
    new = torch.zeros(u.shape[0], lp.shape[0], lp.shape[1], device=u.device, dtype=torch.float32)
    for sl, w in blocks:  # per row and channel: (1, block) @ (block, state)
        for b in range(u.shape[0]):  # a fixed-shape product per row: no row depends on the batch it is in
            new[b] += torch.einsum("cl,csl->cs", uf[b, :, sl], w)
    if state is not None:
        new += (powers[:, :, length] if powers is not None else torch.exp(lp * length))[None] * state
    return new


def modal_state_contribution(state: torch.Tensor, log_poles: torch.Tensor, residues: torch.Tensor,
                             length: int, powers: torch.Tensor | None = None) -> torch.Tensor:
    """Output of the LI filter at the next ``length`` steps due to the carried state (B, C, L).
    ``powers``: ``modal_powers(log_poles, n)``, n >= length, read instead of computing ``exp``."""
    lp = log_poles.reshape(log_poles.shape[0], -1).float()
    res = residues.reshape(residues.shape[0], -1).float()
    t = torch.arange(1, length + 1, device=state.device, dtype=torch.float32)
    weighted = res[None] * state.float()  # (B, C, state)
    y = torch.empty(state.shape[0], lp.shape[0], length, device=state.device, dtype=torch.float32)
    blocks = [(slice(0, length), powers[:, :, 1 : length + 1])] if powers is not None else _modal_blocks(lp, t)
    for sl, w in blocks:  # per row and channel: (1, state) @ (state, block)
        for b in range(state.shape[0]):  # a fixed-shape product per row: no row depends on the batch it is in
            y[b, :, sl] = torch.einsum("cs,csl->cl", weighted[b], w)
    return y


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, base: float, scaling_factor: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE tables (GPT-NeoX half rotation) with linear position interpolation ``t / scaling_factor``."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    t = positions.float() / scaling_factor
    freqs = torch.outer(t, inv_freq)
    return torch.cos(freqs), torch.sin(freqs)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, L, H, D) by RoPE tables (L, D/2): half-split (non-interleaved), in x's dtype like vortex."""
    half = x.shape[-1] // 2
    c = torch.cat([cos, cos], dim=-1).to(x.dtype)[None, :, None, :]
    s = torch.cat([sin, sin], dim=-1).to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return x * c + torch.cat([-x2, x1], dim=-1) * s


# ---- Hyena inner operators ------------------------------------------------------------------------
def per_channel(p: torch.Tensor, channels: int) -> torch.Tensor:
    """Per-group parameters (G, ...) -> per channel (C, ...): group g serves channels [g C/G, (g+1) C/G)."""
    rep = channels // p.shape[0]
    return p.repeat_interleave(rep, dim=0) if rep > 1 else p


def hyena_se_ref(x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Hyena-SE inner operator ``y = x2 * conv(x1 * v, h)`` (explicit short filter, no skip term).

    Arguments:
        x2, x1, v: (B, C, L), the split featurizer outputs (gate, gate, value).
        h: (G, K) or (G, 1, K), the short filter in ``nn.Conv1d`` orientation
            (``conv[t] = sum_k h[k] u[t - K + 1 + k]``), shared by groups of C // G consecutive channels.
    Returns:
        y: (B, C, L) in x2's dtype; the convolution accumulates in float32.
    """
    h = per_channel(h.reshape(h.shape[0], -1), x2.shape[1])
    return causal_depthwise_conv(x1 * v, h).float().to(x2.dtype) * x2


def hyena_mr_ref(x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor, h: torch.Tensor,
                 D: torch.Tensor) -> torch.Tensor:
    """Hyena-MR inner operator ``y = x2 * (conv(x1 * v, h) + D * x1 * v)`` (explicit medium filter, FFT conv).

    Arguments:
        x2, x1, v: (B, C, L), the split featurizer outputs (gate, gate, value).
        h: (G, K) or (G, 1, K), the filter in time orientation (``conv[t] = sum_j h[j] u[t - j]``), shared
            by groups of C // G consecutive channels (any decay regulariser already applied).
        D: (C,), the skip connection.
    Returns:
        y: (B, C, L) in x2's dtype; the convolution and skip accumulate in float32.
    """
    h = per_channel(h.reshape(h.shape[0], -1), x2.shape[1])
    u = x1 * v
    y = fft_causal_conv(u, h) + u.float() * D.float()[None, :, None]
    return y.to(x2.dtype) * x2


def hyena_li_ref(x2: torch.Tensor, x1: torch.Tensor, v: torch.Tensor, log_poles: torch.Tensor,
                 residues: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Hyena-LI inner operator ``y = x2 * (conv(x1 * v, h) + D * x1 * v)`` with the implicit modal filter.

    ``h[c, t] = sum_s residues[c, s] * exp(log_poles[c, s] * t)`` over the whole length (``modal_filter``),
    applied by FFT.

    Arguments:
        x2, x1, v: (B, C, L), the split featurizer outputs (gate, gate, value).
        log_poles: (G, S) or (G, S, 1); residues: (G, S): S modes shared by groups of C // G channels.
        D: (C,), the skip connection.
    Returns:
        y: (B, C, L) in x2's dtype; filter, convolution and skip in float32.
    """
    c = x2.shape[1]
    lp = per_channel(log_poles.reshape(log_poles.shape[0], -1).float(), c)
    res = per_channel(residues.reshape(residues.shape[0], -1).float(), c)
    u = x1 * v
    y = fft_causal_conv(u, modal_filter(lp, res, u.shape[-1])) + u.float() * D.float()[None, :, None]
    return y.to(x2.dtype) * x2
