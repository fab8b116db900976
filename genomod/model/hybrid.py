"""HybridModel: embedding -> stack of Hyena-SE/MR/LI and attention blocks -> RMSNorm -> (tied) unembedding.

``forward`` returns logits, optionally hidden states of named layers, and an ``InferenceCache`` that
carries every layer's state so that a sequence can be processed in chunks (long inference) or a shared
prefix reused (variant scoring) with the same result as one forward over the whole sequence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from genomod.model.blocks import RMSNorm, init_weights, make_block
from genomod.model.config import ModelConfig

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Parameters kept in float32 whatever the model dtype (as vortex keeps poles and residues).
FP32_PARAMS = ("log_poles", "residues")
# Default chunk (tokens) of chunked long inference: forward_chunked, iter_chunks, scoring windows beyond it.
DEFAULT_CHUNK = 8192


@dataclass
class InferenceCache:
    """Per-layer state after ``offset`` tokens: FIR tails, LI modal states, attention K/V."""

    layers: list[dict[str, torch.Tensor]] = field(default_factory=list)
    offset: int = 0

    def _map(self, fn) -> InferenceCache:
        return InferenceCache([{k: fn(v) for k, v in st.items()} for st in self.layers], self.offset)

    def expand(self, batch: int) -> InferenceCache:
        """Broadcast a batch-1 cache to ``batch`` rows (no copy until written)."""
        return self._map(lambda t: t.expand(batch, *t.shape[1:]))

    def select(self, index: torch.Tensor | list[int]) -> InferenceCache:
        """Keep the batch rows ``index`` (e.g. one prefix state per variant)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return self._map(lambda t: t.index_select(0, idx.to(t.device)))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for st in self.layers for t in st.values())


@dataclass
class ModelOutput:
    """Logits (B, L, vocab) float32, hidden states by layer name, and the cache when requested."""

    logits: torch.Tensor
    hidden: dict[str, torch.Tensor] = field(default_factory=dict)
    cache: InferenceCache | None = None


class HybridModel(nn.Module):
    """A StripedHyena-2-style causal DNA language model (see ``ModelConfig``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        # on the meta device (load_model, parameter counts) the weight is left uninitialised: nn.Embedding's own
        # normal_ init of a meta tensor imports torch._dynamo, about 1 s of every command's start-up
        meta = torch.get_default_device().type == "meta"
        self.embedding_layer = nn.Embedding(config.vocab_size, d,
                                            _weight=torch.empty(config.vocab_size, d) if meta else None)
        self.blocks = nn.ModuleList([make_block(config, i) for i in range(config.num_layers)])
        self.norm = RMSNorm(d, config.norm_eps) if config.final_norm else nn.Identity()
        self.unembed = None if config.tie_embeddings else nn.Linear(d, config.vocab_size, bias=False)
        # the checkpoint the weights came from (set by ``load_model``; None for new or since-changed weights)
        self.checkpoint_info: dict[str, Any] | None = None
        if not any(p.is_meta for p in self.parameters()):
            init_weights(self, config)

    # ------------------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_activation_checkpointing(self, enabled: bool = True) -> HybridModel:
        """Recompute each block's activations in backward instead of storing them (training forwards only)."""
        for block in self.blocks:
            block.checkpoint_activations = enabled
        return self

    def to_dtype(self, dtype: str | torch.dtype) -> HybridModel:
        """Cast weights to ``dtype`` but keep LI poles/residues in float32 (needed at long lengths)."""
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                from genomod.errors import ConfigError

                raise ConfigError(f"unknown dtype {dtype!r}: use one of {', '.join(_DTYPES)}")
            dtype = _DTYPES[dtype]
        if getattr(self, "quantization", None):
            from genomod.errors import ConfigError

            raise ConfigError(f"cannot cast a {self.quantization}-quantized model; load the float checkpoint")
        for name, p in self.named_parameters():
            p.data = p.data.float() if name.endswith(FP32_PARAMS) else p.data.to(dtype)
        return self

    @property
    def device(self) -> torch.device:
        return self.embedding_layer.weight.device

    def resolve_backends(self) -> HybridModel:
        """Choose every layer's kernels (Hyena operators, attention) for the current device and dtype now.

        ``build_model`` and ``load_model`` call it, so that fallbacks are logged at load time; a layer that
        meets another device or dtype later chooses once more, and ``genomod.ops.dispatch.set_kernels``
        re-chooses for all. Nothing is looked up per forward.
        """
        dev, dtype = self.device, self.embedding_layer.weight.dtype
        if dev.type != "meta":
            for module in self.modules():
                if module is not self and hasattr(module, "resolve_backend"):
                    module.resolve_backend(dev, dtype)
        return self

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        w = self.embedding_layer.weight if self.unembed is None else self.unembed.weight
        return F.linear(x, w).float()

    @contextlib.contextmanager
    def _capture(self, names: Iterable[str] | None) -> Iterator[dict[str, torch.Tensor]]:
        """Forward hooks that record the outputs of named submodules (e.g. ``blocks.26.mlp.l3``)."""
        store: dict[str, torch.Tensor] = {}
        handles = []
        if names:
            modules = dict(self.named_modules())
            for name in names:
                if name not in modules:
                    from genomod.errors import ConfigError

                    raise ConfigError(f"unknown layer name {name!r}; e.g. 'blocks.0', 'blocks.3.mlp.l3', 'norm'")

                def hook(_m, _inp, out, name=name):
                    store[name] = (out[0] if isinstance(out, tuple) else out).detach()

                handles.append(modules[name].register_forward_hook(hook))
        try:
            yield store
        finally:
            for h in handles:
                h.remove()

    def forward(
        self,
        tokens: torch.Tensor,
        cache: InferenceCache | None = None,
        use_cache: bool = False,
        return_hidden: Iterable[str] | None = None,
    ) -> ModelOutput:
        """Run the model on ``tokens`` (B, L) continuing from ``cache`` (if any)."""
        offset = cache.offset if cache is not None else 0
        states = cache.layers if cache is not None else [{} for _ in self.blocks]
        with self._capture(return_hidden) as hidden:
            x, new_states = self.run_blocks(self.embedding_layer(tokens), states, offset, use_cache=use_cache)
            logits = self.head(x)
        out_cache = InferenceCache(new_states, offset + tokens.shape[1]) if use_cache else None
        return ModelOutput(logits=logits, hidden=dict(hidden), cache=out_cache)

    def run_blocks(self, x: torch.Tensor, states: list[dict[str, torch.Tensor]], offset: int = 0, start: int = 0,
                   use_cache: bool = False) -> tuple[torch.Tensor, list[dict[str, torch.Tensor] | None]]:
        """Blocks ``start, start + 1, ...`` (one per entry of ``states``, their cached state) on hidden states
        ``x`` (B, L, D) at position ``offset``: ``forward`` is ``head(run_blocks(embedding(tokens)))``, and exact
        scoring runs the first blocks and the rest on different positions."""
        new_states = []
        for block, st in zip(self.blocks[start:], states):
            x, new = block(x, st, use_cache, offset)
            new_states.append(new)
        return x, new_states

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and (tied) unembedding of the last block's output: float32 logits."""
        return self._logits(self.norm(x))

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor) -> tuple[torch.Tensor, InferenceCache]:
        """The logits of the last position (B, vocab), float32, and the cache after ``tokens`` (B, L): what a
        shared prefix is run for; the same values as ``forward(tokens, use_cache=True)``.

        From the first block whose later outputs are not all read (``ModelConfig.trailing_outputs``) the rows
        run one at a time at fixed shapes, so that no row's rounding depends on its batch, and those blocks
        compute only the outputs read after them (every block's state still sees every position).
        """
        need = self.config.trailing_outputs(tokens.shape[1])
        cut = next((i for i, n in enumerate(need) if n < tokens.shape[1]), len(self.blocks))
        x, states = self.run_blocks(self.embedding_layer(tokens), [{} for _ in self.blocks[:cut]], use_cache=True)
        logits, row_states = [], []
        for b in range(tokens.shape[0]):
            xb, sts = x[b : b + 1], []
            for block, n in zip(self.blocks[cut:], need[cut:]):
                xb, st = block(xb, {}, True, 0, keep_last=n if n < xb.shape[1] else None)
                sts.append(st)
            logits.append(self.head(xb[:, -1:])[:, 0])
            row_states.append(sts)
        for i in range(len(self.blocks) - cut):
            states.append({k: torch.cat([sts[i][k] for sts in row_states]) for k in row_states[0][i]})
        return torch.cat(logits), InferenceCache(states, tokens.shape[1])

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def iter_chunks(self, tokens: torch.Tensor, chunk_size: int = DEFAULT_CHUNK, cache: InferenceCache | None = None,
                    return_hidden: Iterable[str] | None = None) -> Iterator[tuple[int, ModelOutput]]:
        """Long inference as a stream: ``(start, output)`` per chunk of ``tokens`` (B, L), state carried.

        Only the ``InferenceCache`` lives from one chunk to the next, so a caller that reduces each output
        (log-likelihood sums, hidden states written to disk) holds memory bounded by the chunk plus attention's
        K/V (2 x L x hidden per attention layer), whatever L. ``cache`` continues a sequence (a shared prefix);
        each output's ``cache`` is the state after its chunk.
        """
        if chunk_size < 1:
            from genomod.errors import ConfigError

            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
        for start in range(0, tokens.shape[1], chunk_size):
            out = self(tokens[:, start : start + chunk_size], cache=cache, use_cache=True, return_hidden=return_hidden)
            cache = out.cache
            yield start, out

    @torch.no_grad()
    def forward_chunked(self, tokens: torch.Tensor, chunk_size: int = DEFAULT_CHUNK,
                        return_hidden: Iterable[str] | None = None) -> ModelOutput:
        """Long inference: process ``tokens`` in chunks with carried state (same result as one forward).

        Activation memory is bounded by the chunk size except attention's K/V cache, which grows as
        2 * L * hidden per attention layer; the returned logits and hidden states are whole-sequence tensors
        (``iter_chunks`` streams them instead).
        """
        cache: InferenceCache | None = None
        logits, hidden_parts = [], {}
        for _, out in self.iter_chunks(tokens, chunk_size, return_hidden=return_hidden):
            cache = out.cache
            logits.append(out.logits)
            for k, v in out.hidden.items():
                hidden_parts.setdefault(k, []).append(v)
        return ModelOutput(torch.cat(logits, dim=1), {k: torch.cat(v, dim=1) for k, v in hidden_parts.items()},
                           cache)

    @torch.no_grad()
    def log_likelihoods(self, tokens: torch.Tensor, rc_average: bool = False,
                        chunk_size: int | None = None,
                        hidden_out: dict[str, list[torch.Tensor]] | None = None) -> torch.Tensor:
        """Per-position log p(token_t | tokens_<t), shape (B, L); position 0 has no context and is NaN.

        With ``rc_average`` the reverse-complement strand's per-position values are mapped back and
        averaged with the forward ones (position 0 then takes the RC value, position L-1 the forward one).
        ``hidden_out`` ({layer name: []}, forward strand only) receives those layers' hidden states, one tensor
        per chunk, from the same forwards.
        """
        if rc_average and hidden_out is not None:
            from genomod.errors import ConfigError

            raise ConfigError("hidden_out is for one strand: call log_likelihoods per strand")
        fwd = self._per_position(tokens, chunk_size, hidden_out)
        if not rc_average:
            return fwd
        from genomod.tokenizer import reverse_complement

        rc = self._per_position(reverse_complement(tokens), chunk_size).flip(-1)
        return torch.stack([fwd, rc]).nanmean(0)

    def _per_position(self, tokens: torch.Tensor, chunk_size: int | None,
                      hidden_out: dict[str, list[torch.Tensor]] | None = None) -> torch.Tensor:
        """Forward log-likelihoods; with ``chunk_size`` logits are reduced per chunk (never all stored)."""
        step = chunk_size or tokens.shape[1]
        cache, parts, last = None, [torch.full_like(tokens[:, :1], 0, dtype=torch.float32).fill_(float("nan"))], None
        for start in range(0, tokens.shape[1], step):
            chunk = tokens[:, start : start + step]
            out = self(chunk, cache=cache, use_cache=chunk_size is not None and start + step < tokens.shape[1],
                       return_hidden=list(hidden_out) if hidden_out else None)
            cache = out.cache
            for name, h in out.hidden.items():
                hidden_out[name].append(h)
            logp = torch.log_softmax(out.logits, dim=-1)
            if last is not None:  # the previous chunk's final position predicts this chunk's first token
                parts.append(last.gather(-1, chunk[:, :1, None]).squeeze(-1))
            parts.append(logp[:, :-1].gather(-1, chunk[:, 1:, None]).squeeze(-1))
            last = logp[:, -1:]
        return torch.cat(parts, dim=1)


def build_model(config: ModelConfig | str, device: str | torch.device = "cpu",
                dtype: str | torch.dtype | None = None, meta: bool = False) -> HybridModel:
    """Instantiate a model from a config or preset name; ``meta=True`` allocates no memory (param counts)."""
    cfg = ModelConfig.preset(config) if isinstance(config, str) else config
    if meta:
        with torch.device("meta"):
            return HybridModel(cfg)
    model = HybridModel(cfg).to(device)
    if dtype is not None:
        model.to_dtype(dtype)
    return model.resolve_backends()
