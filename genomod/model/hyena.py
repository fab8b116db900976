"""Hyena operators (vortex ``HyenaCascade``): one shared featurizer and one class per operator kind.

``HyenaOperator`` holds what every kind shares: the featurizer, a causal depthwise short conv over the
(B, L, 3C) projections followed by Evo 2's channel reorder into ``x2, x1, v`` (B, C, L) each. A subclass
adds the inner filter of its kind, ``y = x2 * (filter(x1 * v) [+ D * x1 * v])``:

- ``HyenaSE`` (Ku et al. 2025): explicit short filter ``h`` (groups, 1, ~7), conv1d orientation, no skip.
- ``HyenaMR``: explicit medium filter ``h`` (groups, 1, ~128) in time orientation + skip ``D``, optional
  exp-decay regulariser (``mr_filter_decay``).
- ``HyenaLI``: implicit modal filter ``h[t] = sum_s R_s exp(log_pole_s * t)`` + skip ``D``, FFT conv.
Filters are shared by groups of ``hidden_size / groups`` consecutive channels. Parameter names
(``short_filter_weight``, ``h``, ``D``, ``log_poles``, ``residues``) are vortex's, so Evo 2 checkpoints load 1:1.

The no-cache forward (training, whole-sequence scoring) hands ``x2, x1, v`` and the operator's plain
parameters to one function: ``genomod.ops.reference.hyena_{se,mr,li}_ref`` or its fused twin, chosen by
``genomod.ops.dispatch.hyena_op`` once per (device, dtype) and kept on the layer (re-chosen on
``set_kernels``). The cached path (``use_cache`` or a carried state) composes the lower-level reference
helpers so that chunked calls with carried FIR/modal state equal one call over the whole sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from genomod.model.config import ModelConfig
from genomod.ops import dispatch
from genomod.ops import reference as ref

LayerState = dict[str, torch.Tensor]
InnerOp = Callable[..., torch.Tensor]
MODAL_TABLE = 1 << 22  # elements: the largest pole-power table a Hyena-LI layer keeps between inference calls


class HyenaOperator(nn.Module):
    """Shared featurizer and forward of the Hyena operators; subclasses define the inner filter.

    A subclass sets ``kind`` and implements ``operator_params`` (the tensors its inner operator takes after
    ``x2, x1, v``), ``_inner_step`` (the cached path) and ``_init_filter``.
    """

    kind: ClassVar[str] = ""

    def __init__(self, cfg: ModelConfig, groups: int, filter_length: int | None) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.groups, self.length = groups, filter_length
        self.short_filter_length = cfg.short_filter_length
        self.interleave, self.column_split = cfg.interleave, cfg.column_split_hyena
        self.num_heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.short_filter_weight = nn.Parameter(torch.empty(3 * d, 1, cfg.short_filter_length))
        self.short_filter_bias = nn.Parameter(torch.zeros(3 * d)) if cfg.short_filter_bias else None
        # kernels: the mode is read once here (set_kernels > GENOMOD_KERNELS > config); the operator per
        # (device, dtype) is chosen on first use or by resolve_backend, and both again on set_kernels
        self.config_kernels = cfg.kernels
        self.kernel_mode = dispatch.kernel_mode(cfg.kernels)
        self._ops: dict[tuple[torch.device, torch.dtype], InnerOp] = {}
        dispatch.register(self)

    # -- kernels (resolved outside forward) ------------------------------------------------------
    def resolve_backend(self, device: torch.device | str, dtype: torch.dtype) -> InnerOp:
        """Choose (and keep) the inner operator for activations on ``device`` with ``dtype``."""
        op = dispatch.hyena_op(self.kind, self.kernel_mode, device, dtype, self.length)
        self._ops[(torch.device(device), dtype)] = op
        return op

    def refresh_kernels(self) -> None:
        """Re-read the mode and re-choose every kept operator (called by ``set_kernels``/``use_kernels``)."""
        self.kernel_mode = dispatch.kernel_mode(self.config_kernels)
        for device, dtype in list(self._ops):
            self.resolve_backend(device, dtype)

    def __setstate__(self, state: dict) -> None:  # copies (deepcopy, pickle) follow set_kernels too
        super().__setstate__(state)
        dispatch.register(self)

    # -- featurizer -------------------------------------------------------------------------------
    def _split(self, z: torch.Tensor) -> torch.Tensor:
        """Reorder featurized channels into [x2, x1, v] blocks (interleave, then column or plain split)."""
        if self.interleave:
            z = torch.cat([z[:, 0::3], z[:, 1::3], z[:, 2::3]], dim=1)
        if self.column_split:
            b, _, length = z.shape
            z = z.reshape(b, self.num_heads, 3, self.head_dim, length).transpose(1, 2).reshape(b, -1, length)
        return z

    def featurize(self, z: torch.Tensor, state: LayerState, new: LayerState | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z`` (B, L, 3C) -> ``x2, x1, v`` (B, C, L); carries the FIR tail into ``new`` when given."""
        zt = z.transpose(1, 2)
        ks = self.short_filter_length
        w, bias, fir = self.short_filter_weight, self.short_filter_bias, state.get("fir")
        if new is not None and ks > 1:
            new["fir"] = _tail(fir, zt, ks - 1)
        if self.interleave and not self.column_split:
            # channels interleave x2, x1, v: filter each set as a strided view (no reorder copy); the same
            # values as filtering all channels and reordering, the filter being per channel
            return tuple(ref.causal_depthwise_conv(zt[:, i::3], w[i::3], None if bias is None else bias[i::3],
                                                   None if fir is None else fir[:, i::3]) for i in range(3))
        zf = self._split(ref.causal_depthwise_conv(zt, w, bias, fir))
        c = zf.shape[1] // 3
        return zf[:, :c], zf[:, c : 2 * c], zf[:, 2 * c :]

    # -- forward ----------------------------------------------------------------------------------
    def operator_params(self) -> tuple[torch.Tensor, ...]:
        """The inner operator's arguments after ``x2, x1, v`` (see ``genomod.ops.reference``)."""
        raise NotImplementedError

    def _inner_step(self, u: torch.Tensor, state: LayerState, new: LayerState | None) -> torch.Tensor:
        """Cached path: float32 ``filter(u) [+ D u]`` (B, C, L) continuing ``state``; new state into ``new``."""
        raise NotImplementedError

    def keeps_tables(self, length: int) -> bool:
        """Whether this layer reuses tables kept between inference calls of ``length`` (Hyena-LI): then a forward
        without cache takes the step path too, the same arithmetic as the reference operator."""
        return False

    def forward(self, z: torch.Tensor, state: LayerState | None = None, use_cache: bool = False
                ) -> tuple[torch.Tensor, LayerState | None]:
        """``z`` (B, L, 3C) projections -> (B, L, C); carries FIR/filter state when ``use_cache``."""
        state = state or {}
        new: LayerState | None = {} if use_cache else None
        x2, x1, v = self.featurize(z, state, new)
        if new is None and not state and not self.keeps_tables(x2.shape[-1]):  # the resolved reference or fused op
            op = self._ops.get((x2.device, x2.dtype)) or self.resolve_backend(x2.device, x2.dtype)
            return op(x2, x1, v, *self.operator_params()).transpose(1, 2), None
        y = self._inner_step(x1 * v, state, new).to(z.dtype) * x2
        return y.transpose(1, 2), new

    # -- initialisation ---------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, scheme: str, max_seqlen: int) -> None:
        """``scheme`` "vortex" (Evo 2's random init) or "genomod" (near-identity featurizer, stable filters)."""
        if scheme == "vortex":
            self.short_filter_weight.normal_()
        else:
            # near-identity featurizer: current position dominates, small mixing of the previous ones
            self.short_filter_weight.normal_(0.0, 0.1)
            self.short_filter_weight[..., self.short_filter_length - 1] += 1.0
        self._init_filter(scheme, max_seqlen)

    def _init_filter(self, scheme: str, max_seqlen: int) -> None:
        raise NotImplementedError


def _init_explicit(h: torch.Tensor, scheme: str, length: int) -> None:
    """Explicit SE/MR filters: standard normal (vortex) or normal with std 1/sqrt(length) (genomod)."""
    if scheme == "vortex":
        h.normal_()
    else:
        h.normal_(0.0, 1.0 / math.sqrt(length))


class HyenaSE(HyenaOperator):
    """Hyena-SE: explicit short filter ``h`` (groups, 1, K), conv1d orientation, no skip term."""

    kind = "SE"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cfg.se_filter_groups, cfg.se_filter_length)
        self.h = nn.Parameter(torch.empty(self.groups, 1, self.length))

    def explicit_filter(self) -> torch.Tensor:
        """The filter per group, (G, K)."""
        return self.h.reshape(self.groups, -1)

    def operator_params(self) -> tuple[torch.Tensor, ...]:
        return (self.explicit_filter(),)

    def _inner_step(self, u: torch.Tensor, state: LayerState, new: LayerState | None) -> torch.Tensor:
        h = ref.per_channel(self.explicit_filter(), u.shape[1])
        y = ref.causal_depthwise_conv(u, h, state=state.get("inner")).float()
        if new is not None:
            new["inner"] = _tail(state.get("inner"), u, self.length - 1)
        return y

    def _init_filter(self, scheme: str, max_seqlen: int) -> None:
        _init_explicit(self.h, scheme, self.length)


class HyenaMR(HyenaOperator):
    """Hyena-MR: explicit medium filter ``h`` (groups, 1, K) in time orientation, skip ``D`` (C,)."""

    kind = "MR"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cfg.mr_filter_groups, cfg.mr_filter_length)
        self.decay = cfg.mr_filter_decay
        self.h = nn.Parameter(torch.empty(self.groups, 1, self.length))
        self.D = nn.Parameter(torch.zeros(cfg.hidden_size))

    def explicit_filter(self) -> torch.Tensor:
        """The filter per group, (G, K), times ``exp(-decay t / K)`` when ``mr_filter_decay`` > 0."""
        h = self.h.reshape(self.groups, -1)
        if self.decay > 0:
            t = torch.arange(self.length, device=h.device, dtype=torch.float32)
            h = h * torch.exp(-self.decay * t / self.length).to(h.dtype)
        return h

    def operator_params(self) -> tuple[torch.Tensor, ...]:
        return self.explicit_filter(), self.D

    def _inner_step(self, u: torch.Tensor, state: LayerState, new: LayerState | None) -> torch.Tensor:
        h = ref.per_channel(self.explicit_filter(), u.shape[1])
        prev = state.get("inner")
        if prev is None:
            y = ref.fft_causal_conv(u, h)
        else:
            y = ref.fft_causal_conv(torch.cat([prev, u], dim=-1), h)[..., prev.shape[-1]:]
        y = y + u.float() * self.D.float()[None, :, None]
        if new is not None:
            new["inner"] = _tail(prev, u, self.length - 1)
        return y

    def _init_filter(self, scheme: str, max_seqlen: int) -> None:
        _init_explicit(self.h, scheme, self.length)


class HyenaLI(HyenaOperator):
    """Hyena-LI: implicit modal filter from ``log_poles`` (groups, state, 1) and ``residues`` (groups, state),
    both kept in float32, skip ``D`` (C,)."""

    kind = "LI"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cfg.li_filter_groups, None)
        self.state_size = cfg.li_state_size
        self.log_poles = nn.Parameter(torch.empty(self.groups, cfg.li_state_size, 1, dtype=torch.float32))
        self.residues = nn.Parameter(torch.empty(self.groups, cfg.li_state_size, dtype=torch.float32))
        self.D = nn.Parameter(torch.zeros(cfg.hidden_size))
        self._tables: tuple[tuple, torch.Tensor, torch.Tensor] | None = None  # inference: (key, powers, filter)

    def operator_params(self) -> tuple[torch.Tensor, ...]:
        return self.log_poles, self.residues, self.D

    def modal_params(self, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-poles and residues per channel, (C, state) each, float32."""
        lp = ref.per_channel(self.log_poles.reshape(self.groups, -1).float(), channels)
        return lp, ref.per_channel(self.residues.float(), channels)

    def _inner_step(self, u: torch.Tensor, state: LayerState, new: LayerState | None) -> torch.Tensor:
        lp, res = self.modal_params(u.shape[1])
        powers, h = self._modal_tables(lp, res, u.shape[-1])
        y = ref.fft_causal_conv(u, h)
        if "modal" in state:
            y = y + ref.modal_state_contribution(state["modal"], lp, res, u.shape[-1], powers)
        y = y + u.float() * self.D.float()[None, :, None]
        if new is not None:
            new["modal"] = ref.modal_state_update(state.get("modal"), u, lp, powers)
        return y

    def keeps_tables(self, length: int) -> bool:
        return not torch.is_grad_enabled() and self.D.numel() * self.state_size * (length + 1) <= MODAL_TABLE

    def _modal_tables(self, lp: torch.Tensor, res: torch.Tensor, length: int
                      ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The pole powers (``reference.modal_powers``) and the filter for chunks of ``length``; when
        ``keeps_tables`` (outside autograd, at most ``MODAL_TABLE`` powers) both are kept for the next call of the
        same length and weights (scoring and chunked inference call a layer many times with one length)."""
        if not self.keeps_tables(length):
            return None, ref.modal_filter(lp, res, length)
        key = (length, lp.device, self.log_poles._version, self.residues._version, self.log_poles.data_ptr(),
               self.residues.data_ptr())
        if self._tables is None or self._tables[0] != key:
            powers = ref.modal_powers(lp, length)
            self._tables = (key, powers, ref.modal_filter(lp, res, length, powers=powers))
        return self._tables[1], self._tables[2]

    def _init_filter(self, scheme: str, max_seqlen: int) -> None:
        s = self.state_size
        if scheme == "vortex":
            self.log_poles.normal_()
            self.residues.normal_()
            return
        # decay rates spread log-uniformly from 1/2 to 1/(16 * max_seqlen) per step
        rates = torch.logspace(math.log10(0.5), math.log10(1.0 / (16 * max_seqlen)), s)
        self.log_poles.copy_((-rates)[None, :, None].expand(self.groups, s, 1))
        # each mode's filter has about unit L2 norm whatever its decay (||exp(-r t)|| ~ 1/sqrt(2r))
        self.residues.normal_(0.0, 1.0 / math.sqrt(s))
        self.residues.mul_(torch.sqrt(2 * rates)[None, :])


HYENA_OPERATORS: dict[str, type[HyenaOperator]] = {"SE": HyenaSE, "MR": HyenaMR, "LI": HyenaLI}


def _tail(prev: torch.Tensor | None, x: torch.Tensor, n: int) -> torch.Tensor:
    """Last ``n`` time steps of ``cat(prev, x)``, zero-padded on the left when fewer exist."""
    if n <= 0:
        return x[..., :0]
    if x.shape[-1] >= n:  # the chunk alone holds the tail: copy only it (a view would keep the chunk alive)
        return x[..., -n:].detach().clone()
    full = x if prev is None else torch.cat([prev[..., -(n - x.shape[-1]):], x], dim=-1)
    if full.shape[-1] < n:
        full = F.pad(full, (n - full.shape[-1], 0))
    return full[..., -n:].detach()
