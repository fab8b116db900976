"""Building blocks of the hybrid model: RMSNorm, gated MLP, Hyena-SE/MR/LI and rotary attention.

Module and parameter names mirror Evo 2's reference code (vortex ``StripedHyena``), so that Evo 2 state
dicts load 1:1 and layer names such as ``blocks.26.mlp.l3`` mean the same thing in both.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from genomod.model.config import ModelConfig
from genomod.ops import reference as ref
from genomod.ops.attention import causal_attention

LayerState = dict[str, torch.Tensor]


class RMSNorm(nn.Module):
    """RMSNorm in Evo 2's form (eps added to the RMS, not inside the square root)."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ref.rms_norm(x, self.scale, self.eps)


class GatedMLP(nn.Module):
    """Gated MLP ``l3(act(l1 x) * l2 x)``; Evo 2 uses the activation on layer 0 only (identity after)."""

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        d, f = cfg.hidden_size, cfg.inner_mlp_size
        self.l1 = nn.Linear(d, f, bias=False)
        self.l2 = nn.Linear(d, f, bias=False)
        self.l3 = nn.Linear(f, d, bias=False)
        if cfg.evo2_style_activations and layer_idx > 0:
            self.act = nn.Identity()
        else:
            self.act = nn.GELU() if cfg.mlp_activation == "gelu" else nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l3(self.act(self.l1(x)) * self.l2(x))


class HyenaFilter(nn.Module):
    """The Hyena cascade inside a block (vortex ``HyenaCascade``): featurizer conv, gates, inner filter.

    - Hyena-SE (Ku et al. 2025): explicit short inner filter ``h`` (groups, 1, ~7), conv1d orientation.
    - Hyena-MR: explicit medium filter ``h`` (groups, 1, ~128) + skip ``D``, optional exp-decay regulariser.
    - Hyena-LI: implicit modal filter ``h[t] = sum_s R_s exp(log_pole_s * t)`` + skip ``D``, FFT conv.
    Filters are shared by groups of ``hidden_size / groups`` consecutive channels.
    """

    def __init__(self, cfg: ModelConfig, kind: str) -> None:
        super().__init__()
        self.cfg, self.kind = cfg, kind
        d = cfg.hidden_size
        self.short_filter_weight = nn.Parameter(torch.empty(3 * d, 1, cfg.short_filter_length))
        self.short_filter_bias = nn.Parameter(torch.zeros(3 * d)) if cfg.short_filter_bias else None
        if kind == "SE":
            self.groups, self.length = cfg.se_filter_groups, cfg.se_filter_length
            self.h = nn.Parameter(torch.empty(self.groups, 1, self.length))
            self.D = None
        elif kind == "MR":
            self.groups, self.length = cfg.mr_filter_groups, cfg.mr_filter_length
            self.h = nn.Parameter(torch.empty(self.groups, 1, self.length))
            self.D = nn.Parameter(torch.zeros(d))
        elif kind == "LI":
            self.groups, self.length = cfg.li_filter_groups, None
            self.log_poles = nn.Parameter(torch.empty(self.groups, cfg.li_state_size, 1, dtype=torch.float32))
            self.residues = nn.Parameter(torch.empty(self.groups, cfg.li_state_size, dtype=torch.float32))
            self.D = nn.Parameter(torch.zeros(d))
        else:
            raise ValueError(kind)

    # -- filters per channel --------------------------------------------------------------------
    def _per_channel(self, x: torch.Tensor) -> torch.Tensor:
        rep = self.cfg.hidden_size // self.groups
        return x.repeat_interleave(rep, dim=0) if rep > 1 else x

    def explicit_filter(self) -> torch.Tensor:
        """SE/MR filter per channel, (C, K); MR includes the decay regulariser when configured."""
        h = self.h.reshape(self.groups, -1)
        if self.kind == "MR" and self.cfg.mr_filter_decay > 0:
            t = torch.arange(self.length, device=h.device, dtype=torch.float32)
            h = h * torch.exp(-self.cfg.mr_filter_decay * t / self.length).to(h.dtype)
        return self._per_channel(h)

    def modal_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """LI log-poles and residues per channel, (C, state) each, float32."""
        lp = self.log_poles.reshape(self.groups, -1).float()
        return self._per_channel(lp), self._per_channel(self.residues.float())

    # -- forward --------------------------------------------------------------------------------
    def _split(self, z: torch.Tensor) -> torch.Tensor:
        """Reorder featurized channels into [x2, x1, v] blocks (interleave, then column or plain split)."""
        if self.cfg.interleave:
            z = torch.cat([z[:, 0::3], z[:, 1::3], z[:, 2::3]], dim=1)
        if self.cfg.column_split_hyena:
            b, _, length = z.shape
            hd, nh = self.cfg.head_dim, self.cfg.num_attention_heads
            z = z.reshape(b, nh, 3, hd, length).transpose(1, 2).reshape(b, 3 * nh * hd, length)
        return z

    def forward(self, z: torch.Tensor, state: LayerState | None = None, use_cache: bool = False
                ) -> tuple[torch.Tensor, LayerState | None]:
        """``z`` (B, L, 3C) projections -> (B, L, C); carries FIR/modal state when ``use_cache``."""
        state = state or {}
        zt = z.transpose(1, 2)
        ks = self.cfg.short_filter_length
        zf = ref.causal_depthwise_conv(zt, self.short_filter_weight, self.short_filter_bias, state.get("fir"))
        new: LayerState = {}
        if use_cache and ks > 1:
            new["fir"] = _tail(state.get("fir"), zt, ks - 1)
        zf = self._split(zf)
        c = zf.shape[1] // 3
        x2, x1, v = zf[:, :c], zf[:, c : 2 * c], zf[:, 2 * c :]
        if not use_cache and not state:  # no-cache path: fused kernels when selected (genomod.ops.dispatch)
            from genomod.ops.dispatch import fused_hyena

            fused = fused_hyena(self, x2, x1, v)
            if fused is not None:
                return fused.transpose(1, 2), None
        u = x1 * v
        if self.kind == "SE":
            y = ref.causal_depthwise_conv(u, self.explicit_filter(), state=state.get("inner")).float()
            if use_cache:
                new["inner"] = _tail(state.get("inner"), u, self.length - 1)
        elif self.kind == "MR":
            h = self.explicit_filter()
            prev = state.get("inner")
            if prev is None:
                y = ref.fft_causal_conv(u, h)
            else:
                y = ref.fft_causal_conv(torch.cat([prev, u], dim=-1), h)[..., prev.shape[-1]:]
            y = y + u.float() * self.D.float()[None, :, None]
            if use_cache:
                new["inner"] = _tail(prev, u, self.length - 1)
        else:
            lp, res = self.modal_params()
            y = ref.fft_causal_conv(u, ref.modal_filter(lp, res, u.shape[-1]))
            if "modal" in state:
                y = y + ref.modal_state_contribution(state["modal"], lp, res, u.shape[-1])
            y = y + u.float() * self.D.float()[None, :, None]
            if use_cache:
                new["modal"] = ref.modal_state_update(state.get("modal"), u, lp)
        y = y.to(z.dtype) * x2
        return y.transpose(1, 2), (new if use_cache else None)


def _tail(prev: torch.Tensor | None, x: torch.Tensor, n: int) -> torch.Tensor:
    """Last ``n`` time steps of ``cat(prev, x)``, zero-padded on the left when fewer exist."""
    if n <= 0:
        return x[..., :0]
    full = x if prev is None else torch.cat([prev, x], dim=-1)
    if full.shape[-1] < n:
        full = F.pad(full, (n - full.shape[-1], 0))
    return full[..., -n:].detach()


class HyenaBlock(nn.Module):
    """Pre-norm residual block: ``u + out(HyenaFilter(proj(norm u)))`` then ``+ MLP(norm)``."""

    def __init__(self, cfg: ModelConfig, layer_idx: int, kind: str) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.kind = kind
        self.pre_norm, self.post_norm = RMSNorm(d, cfg.norm_eps), RMSNorm(d, cfg.norm_eps)
        self.projections = nn.Linear(d, 3 * d, bias=cfg.qkv_proj_bias)
        self.filter = HyenaFilter(cfg, kind)
        self.out_filter_dense = nn.Linear(d, d, bias=cfg.hyena_out_proj_bias)
        self.mlp = GatedMLP(cfg, layer_idx)

    def forward(self, u: torch.Tensor, state: LayerState | None = None, use_cache: bool = False,
                offset: int = 0) -> tuple[torch.Tensor, LayerState | None]:
        z, new = self.filter(self.projections(self.pre_norm(u)), state, use_cache)
        u = self.out_filter_dense(z) + u
        return self.mlp(self.post_norm(u)) + u, new


class RotaryEmbedding(nn.Module):
    """RoPE (GPT-NeoX half rotation) with linear position interpolation and base-frequency scaling."""

    def __init__(self, head_dim: int, base: float, scaling_factor: float = 1.0) -> None:
        super().__init__()
        self.head_dim, self.base, self.scaling_factor = head_dim, base, scaling_factor
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(offset, offset + q.shape[1], device=q.device)
        cos, sin = ref.rotary_cos_sin(pos, self.head_dim, self.base, self.scaling_factor)
        return ref.apply_rotary(q, cos, sin), ref.apply_rotary(k, cos, sin)


class MHA(nn.Module):
    """Causal multi-head self-attention with rotary embeddings, through SDPA or flash-attn."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.num_heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.Wqkv = nn.Linear(d, 3 * d, bias=cfg.qkv_proj_bias)
        self.out_proj = nn.Linear(d, d, bias=cfg.mha_out_proj_bias)
        self.rotary_emb = RotaryEmbedding(cfg.head_dim, cfg.rotary_base, cfg.rotary_scaling_factor)

    def forward(self, x: torch.Tensor, state: LayerState | None = None, use_cache: bool = False,
                offset: int = 0) -> tuple[torch.Tensor, LayerState | None]:
        b, length, _ = x.shape
        qkv = self.Wqkv(x).reshape(b, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(dim=2)
        q, k = self.rotary_emb(q, k, offset)
        if state:
            k = torch.cat([state["k"], k], dim=1)
            v = torch.cat([state["v"], v], dim=1)
        out = causal_attention(q, k, v).reshape(b, length, -1)
        return self.out_proj(out), ({"k": k.detach(), "v": v.detach()} if use_cache else None)


class AttentionBlock(nn.Module):
    """Pre-norm residual attention block followed by the gated MLP (vortex ``AttentionBlock``)."""

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.kind = "MHA"
        self.pre_norm, self.post_norm = RMSNorm(d, cfg.norm_eps), RMSNorm(d, cfg.norm_eps)
        self.inner_mha_cls = MHA(cfg)
        self.mlp = GatedMLP(cfg, layer_idx)

    def forward(self, u: torch.Tensor, state: LayerState | None = None, use_cache: bool = False,
                offset: int = 0) -> tuple[torch.Tensor, LayerState | None]:
        a, new = self.inner_mha_cls(self.pre_norm(u), state, use_cache, offset)
        u = a + u
        return self.mlp(self.post_norm(u)) + u, new


def make_block(cfg: ModelConfig, layer_idx: int) -> nn.Module:
    """The block for layer ``layer_idx`` by its kind in ``cfg.layer_types``."""
    kind = cfg.layer_types[layer_idx]
    return AttentionBlock(cfg, layer_idx) if kind == "MHA" else HyenaBlock(cfg, layer_idx, kind)


@torch.no_grad()
def init_weights(model: nn.Module, cfg: ModelConfig) -> None:
    """genomod's trainable initialisation (small normal linears, decaying filters, stable LI poles)."""
    std = 0.02
    out_std = std / math.sqrt(2 * cfg.num_layers)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name.endswith(("out_filter_dense", "out_proj", "mlp.l3"))
            nn.init.normal_(module.weight, 0.0, out_std if last else std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
        elif isinstance(module, HyenaFilter):
            ks = cfg.short_filter_length
            if cfg.init == "vortex":
                module.short_filter_weight.normal_()
            else:
                # near-identity featurizer: current position dominates, small mixing of the previous ones
                module.short_filter_weight.normal_(0.0, 0.1)
                module.short_filter_weight[..., ks - 1] += 1.0
            if module.kind in ("SE", "MR"):
                if cfg.init == "vortex":
                    module.h.normal_()
                else:
                    module.h.normal_(0.0, 1.0 / math.sqrt(module.length))
            else:
                s = cfg.li_state_size
                if cfg.init == "vortex":
                    module.log_poles.normal_()
                    module.residues.normal_()
                else:
                    # decay rates spread log-uniformly from 1/2 to 1/(16 * max_seqlen) per step
                    rates = torch.logspace(math.log10(0.5), math.log10(1.0 / (16 * cfg.max_seqlen)), s)
                    module.log_poles.copy_((-rates)[None, :, None].expand(module.groups, s, 1))
                    # each mode's filter has about unit L2 norm whatever its decay (||exp(-r t)|| ~ 1/sqrt(2r))
                    module.residues.normal_(0.0, 1.0 / math.sqrt(s))
                    module.residues.mul_(torch.sqrt(2 * rates)[None, :])
