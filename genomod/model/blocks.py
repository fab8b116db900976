"""Building blocks of the hybrid model: RMSNorm, gated MLP, the Hyena block and rotary attention.

The Hyena operators themselves (shared featurizer + Hyena-SE/MR/LI) live in ``genomod.model.hyena``.
Module and parameter names mirror Evo 2's reference code (vortex ``StripedHyena``), so that Evo 2 state
dicts load 1:1 and layer names such as ``blocks.26.mlp.l3`` mean the same thing in both.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from genomod.model.config import ModelConfig
from genomod.model.hyena import HYENA_OPERATORS, HyenaOperator, LayerState
from genomod.ops import reference as ref
from genomod.ops.attention import attention_backend, causal_attention, requested_backend


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


class ResidualBlock(nn.Module):
    """A layer of the stack: ``forward(u, state, use_cache, offset, keep_last) -> (u', new state)``.

    ``keep_last`` (inference): the block's state still sees every position of ``u``, but its output is computed
    for the last ``keep_last`` positions only (``HybridModel.prefill``). With ``checkpoint_activations`` set
    (``HybridModel.set_activation_checkpointing``) a training forward without cache recomputes the block's
    activations in backward (torch.utils.checkpoint); parameter names are unchanged.
    """

    checkpoint_activations: bool = False

    def forward(self, u: torch.Tensor, state: LayerState | None = None, use_cache: bool = False,
                offset: int = 0, keep_last: int | None = None) -> tuple[torch.Tensor, LayerState | None]:
        """The block on ``u`` (B, L, D), continuing from ``state``; recomputed in backward when checkpointing."""
        if self.checkpoint_activations and self.training and torch.is_grad_enabled() and not use_cache \
                and not state and keep_last is None:
            out = torch_checkpoint(lambda x: self.block_forward(x, None, False, offset)[0], u, use_reentrant=False)
            return out, None
        return self.block_forward(u, state, use_cache, offset, keep_last)

    def block_forward(self, u: torch.Tensor, state: LayerState | None, use_cache: bool, offset: int,
                      keep_last: int | None = None) -> tuple[torch.Tensor, LayerState | None]:
        """The block's computation (subclasses)."""
        raise NotImplementedError


class HyenaBlock(ResidualBlock):
    """Pre-norm residual block: ``u + out(HyenaOperator(proj(norm u)))`` then ``+ MLP(norm)``."""

    def __init__(self, cfg: ModelConfig, layer_idx: int, kind: str) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.kind = kind
        self.pre_norm, self.post_norm = RMSNorm(d, cfg.norm_eps), RMSNorm(d, cfg.norm_eps)
        self.projections = nn.Linear(d, 3 * d, bias=cfg.qkv_proj_bias)
        self.filter = HYENA_OPERATORS[kind](cfg)
        self.out_filter_dense = nn.Linear(d, d, bias=cfg.hyena_out_proj_bias)
        self.mlp = GatedMLP(cfg, layer_idx)

    def block_forward(self, u: torch.Tensor, state: LayerState | None, use_cache: bool, offset: int,
                      keep_last: int | None = None) -> tuple[torch.Tensor, LayerState | None]:
        z, new = self.filter(self.projections(self.pre_norm(u)), state, use_cache)
        if keep_last is not None:
            z, u = z[:, -keep_last:], u[:, -keep_last:]
        u = self.out_filter_dense(z) + u
        return self.mlp(self.post_norm(u)) + u, new


class RotaryEmbedding(nn.Module):
    """RoPE (GPT-NeoX half rotation) with linear position interpolation and base-frequency scaling.

    No state: the tables are computed per call from the positions (``reference.rotary_cos_sin``).
    """

    def __init__(self, head_dim: int, base: float, scaling_factor: float = 1.0) -> None:
        super().__init__()
        self.head_dim, self.base, self.scaling_factor = head_dim, base, scaling_factor

    def forward(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(offset, offset + q.shape[1], device=q.device)
        cos, sin = ref.rotary_cos_sin(pos, self.head_dim, self.base, self.scaling_factor)
        return ref.apply_rotary(q, cos, sin), ref.apply_rotary(k, cos, sin)


class MHA(nn.Module):
    """Causal multi-head self-attention with rotary embeddings, through SDPA or flash-attn.

    The backend request (``GENOMOD_ATTENTION``) is read once at build; the backend per (device, dtype) is
    chosen on first use or by ``resolve_backend`` and kept.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.num_heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.Wqkv = nn.Linear(d, 3 * d, bias=cfg.qkv_proj_bias)
        self.out_proj = nn.Linear(d, d, bias=cfg.mha_out_proj_bias)
        self.rotary_emb = RotaryEmbedding(cfg.head_dim, cfg.rotary_base, cfg.rotary_scaling_factor)
        self.attention_request = requested_backend()
        self._backends: dict[tuple[torch.device, torch.dtype], str] = {}

    def resolve_backend(self, device: torch.device | str, dtype: torch.dtype) -> str:
        """Choose (and keep) the attention backend for activations on ``device`` with ``dtype``."""
        backend = attention_backend(device, dtype, self.attention_request)
        self._backends[(torch.device(device), dtype)] = backend
        return backend

    def forward(self, x: torch.Tensor, state: LayerState | None = None, use_cache: bool = False,
                offset: int = 0, keep_last: int | None = None) -> tuple[torch.Tensor, LayerState | None]:
        b, length, _ = x.shape
        qkv = self.Wqkv(x).reshape(b, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(dim=2)
        q, k = self.rotary_emb(q, k, offset)
        if keep_last is not None:  # queries at the end only; keys and values at every position
            q, length = q[:, -keep_last:], keep_last
        if state:
            k = torch.cat([state["k"], k], dim=1)
            v = torch.cat([state["v"], v], dim=1)
        backend = self._backends.get((q.device, q.dtype)) or self.resolve_backend(q.device, q.dtype)
        out = causal_attention(q, k, v, backend).reshape(b, length, -1)
        return self.out_proj(out), ({"k": k.detach(), "v": v.detach()} if use_cache else None)


class AttentionBlock(ResidualBlock):
    """Pre-norm residual attention block followed by the gated MLP (vortex ``AttentionBlock``)."""

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.kind = "MHA"
        self.pre_norm, self.post_norm = RMSNorm(d, cfg.norm_eps), RMSNorm(d, cfg.norm_eps)
        self.inner_mha_cls = MHA(cfg)
        self.mlp = GatedMLP(cfg, layer_idx)

    def block_forward(self, u: torch.Tensor, state: LayerState | None, use_cache: bool, offset: int,
                      keep_last: int | None = None) -> tuple[torch.Tensor, LayerState | None]:
        a, new = self.inner_mha_cls(self.pre_norm(u), state, use_cache, offset, keep_last)
        u = a + (u if keep_last is None else u[:, -keep_last:])
        return self.mlp(self.post_norm(u)) + u, new


def make_block(cfg: ModelConfig, layer_idx: int) -> ResidualBlock:
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
        elif isinstance(module, HyenaOperator):
            module.init_weights(cfg.init, cfg.max_seqlen)
