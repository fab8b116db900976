"""Fine-tuned variant models (``genomod finetune``): the head on pooled ref/alt states and its loader for scoring.

A model folder written by ``genomod finetune`` holds ``finetune.json`` (what the head needs: task, window,
pooling, classes, target scaling, base model) and ``head.safetensors``. Its backbone is the genomod checkpoint
in the same folder (``model.safetensors`` + ``config.json``: full fine-tuning, or LoRA adapters merged by
``genomod finetune merge``) or, for a frozen backbone, the base model named in ``finetune.json`` (its weights'
sha256 is checked). ``VariantScorer`` given such a folder for a ``variant-effect`` task adds the column ``ft``
(INFO ``GENOMOD_FT``): P(positive class) for a label task, the predicted score for a score task.

The modules here are the ones the fine-tuning package trains (it imports them from here), so that a
trained model and the scorer run one and the same forward.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from genomod.errors import ModelError
from genomod.utils import read_format_json

FT_FILE, HEAD_FILE = "finetune.json", "head.safetensors"
FT_FORMAT, FT_FORMAT_VERSION = "genomod-finetune", 1
PARTS = ("ref", "alt", "diff")


def backbone_states(model: nn.Module, tokens: torch.Tensor, layer: str = "final"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states (B, L, D) at ``layer`` ('final' = after the final norm, or 'blocks.K') and logits (B, L, V).

    Unlike ``HybridModel(..., return_hidden=...)`` the states keep their gradient (fine-tuning needs it). Works
    on a plain or LoRA-wrapped (peft) HybridModel: the blocks are called as they are.
    """
    x = model.embedding_layer(tokens)
    states = None
    for i, block in enumerate(model.blocks):
        x, _ = block(x, None, False, 0)
        if layer == f"blocks.{i}":
            states = x
    h = model.norm(x)
    return (h if states is None else states), model._logits(h)


def sequence_ll(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-likelihood sum over positions 1..L-1 of each row (float32), the quantity of exact scoring."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, tokens[:, 1:, None]).squeeze(-1).sum(-1)


class MLP(nn.Module):
    """``Linear -> GELU -> Dropout -> Linear`` (or one Linear when ``hidden`` is 0)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, out_dim))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SequenceHead(nn.Module):
    """Mean of the states over a sequence's real positions (mask), LayerNorm, MLP -> (B, n_out)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        d = int(cfg["in_dim"])
        self.norm = nn.LayerNorm(d)
        self.mlp = MLP(d, int(cfg["hidden"]), int(cfg["n_out"]), float(cfg["dropout"]))

    def features(self, model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The backbone part: pooled states (B, D), float32."""
        states, _ = backbone_states(model, tokens, self.cfg["layer"])
        m = mask.to(states.dtype).unsqueeze(-1)
        return ((states * m).sum(1) / m.sum(1).clamp_min(1.0)).float()

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """The head part: pooled states -> (B, n_out)."""
        return self.mlp(self.norm(feats))

    def forward(self, model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(model, tokens, mask))


class VariantHead(nn.Module):
    """Ref and alt windows through the model; states pooled over ``[off - radius, off + radius]`` (``off`` = the
    variant's offset, window // 2); features ``ref``, ``alt``, ``diff`` = alt - ref (each LayerNorm-ed) and,
    with ``zero_shot``, the delta log-likelihood LL(alt) - LL(ref) of the two windows from the same forward;
    MLP -> (B, n_out)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        d = int(cfg["in_dim"])
        self.parts = tuple(cfg["parts"])
        self.norms = nn.ModuleDict({p: nn.LayerNorm(d) for p in self.parts})
        n_in = d * len(self.parts) + (1 if cfg["zero_shot"] else 0)
        self.mlp = MLP(n_in, int(cfg["hidden"]), int(cfg["n_out"]), float(cfg["dropout"]))

    def pool_range(self, length: int) -> tuple[int, int]:
        """Pooled window positions [lo, hi)."""
        off, r = length // 2, int(self.cfg["radius"])
        return max(0, off - r), min(length, off + r + 1)

    def features(self, model: nn.Module, ref: torch.Tensor, alt: torch.Tensor) -> torch.Tensor:
        """The backbone part: [pooled ref (D), pooled alt (D), delta LL] per variant, (B, 2D + 1) float32."""
        b = ref.shape[0]
        tokens = torch.cat([ref, alt])
        states, logits = backbone_states(model, tokens, self.cfg["layer"])
        lo, hi = self.pool_range(tokens.shape[1])
        pooled = states[:, lo:hi].float().mean(1)
        ll = sequence_ll(logits, tokens) if self.cfg["zero_shot"] else torch.zeros(2 * b, device=ref.device)
        return torch.cat([pooled[:b], pooled[b:], (ll[b:] - ll[:b]).unsqueeze(-1)], dim=-1)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """The head part: features from ``features`` -> (B, n_out)."""
        d = int(self.cfg["in_dim"])
        blocks = {"ref": feats[:, :d], "alt": feats[:, d : 2 * d]}
        blocks["diff"] = blocks["alt"] - blocks["ref"]
        cols = [self.norms[p](blocks[p]) for p in self.parts]
        if self.cfg["zero_shot"]:
            cols.append(feats[:, 2 * d :])
        return self.mlp(torch.cat(cols, dim=-1))

    def forward(self, model: nn.Module, ref: torch.Tensor, alt: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(model, ref, alt))


def make_head(cfg: dict[str, Any]) -> nn.Module:
    """The head module for a head config (``kind`` 'sequence' or 'variant')."""
    if cfg.get("kind") == "variant":
        return VariantHead(cfg)
    if cfg.get("kind") == "sequence":
        return SequenceHead(cfg)
    raise ModelError(f"unknown fine-tuning head kind {cfg.get('kind')!r}")


def read_finetune_card(folder: str | os.PathLike) -> dict[str, Any] | None:
    """``finetune.json`` of a fine-tuned model folder, or None when ``folder`` is not one."""
    path = Path(folder) / FT_FILE
    if not path.is_file():
        return None
    return read_format_json(path, FT_FORMAT, FT_FORMAT_VERSION, "head", "fine-tuned model card")


def backbone_source(folder: str | os.PathLike, card: dict[str, Any]) -> str:
    """Where the backbone of a fine-tuned folder is: the folder itself or the (checked) frozen base model."""
    from genomod.checkpoint import CONFIG, WEIGHTS, resolve_checkpoint
    from genomod.utils import file_digest

    folder = Path(folder)
    if (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file():
        return str(folder)
    if card.get("mode") == "lora":
        raise ModelError(f"{folder}: LoRA adapters without merged weights; run `genomod finetune merge {folder}` "
                         "first (writes model.safetensors beside the adapters)")
    base = card.get("base", {})
    src = base.get("resolved") or base.get("name")
    try:
        path = resolve_checkpoint(src)
    except ModelError as exc:
        raise ModelError(f"{folder / FT_FILE}: frozen backbone {src!r} not found ({exc})") from None
    want = base.get("weights_sha256")
    if want and file_digest(path / WEIGHTS) != want:
        raise ModelError(f"{folder / FT_FILE}: base model {path} has other weights than the head was trained on "
                         f"(sha256 differs)")
    return str(path)


def load_head(folder: str | os.PathLike, card: dict[str, Any]) -> nn.Module:
    """The head module of a fine-tuned folder with its weights, in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / HEAD_FILE
    head = make_head(card["head"])
    try:
        head.load_state_dict(load_file(str(path)))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelError(f"{path}: cannot load the fine-tuned head ({str(exc).splitlines()[0]})") from None
    return head.eval()


@dataclass
class FinetunedVariantModel:
    """A fine-tuned variant-effect head bound to its folder; ``predict`` gives the ``ft`` column."""

    folder: Path
    card: dict[str, Any]
    head: nn.Module
    backbone: str

    @property
    def window(self) -> int:
        return int(self.card["head"]["window"])

    @torch.no_grad()
    def predict(self, model: nn.Module, fetch: Callable[[str, int, int], str], contig_lengths: dict[str, int],
                sites: Sequence[tuple[str, int, str, str]], batch_size: int = 16) -> np.ndarray:
        """``ft`` per (contig, 0-based start, REF, ALT): P(positive) or the predicted score; NaN when REF is longer
        than half the window."""
        from genomod.scoring.exact import build_site

        self.head.to(model.device)
        out = np.full(len(sites), np.nan)
        ok = [i for i, s in enumerate(sites) if len(s[2]) <= self.window - self.window // 2]
        for b0 in range(0, len(ok), batch_size):
            idx = ok[b0 : b0 + batch_size]
            built = [build_site(fetch, sites[i][0], sites[i][1], [(sites[i][2], sites[i][3])], self.window,
                                contig_lengths[sites[i][0]]) for i in idx]
            ref = torch.from_numpy(np.stack([s.ref_tokens for s in built])).long().to(model.device)
            alt = torch.from_numpy(np.stack([s.alt_tokens[0] for s in built])).long().to(model.device)
            out[idx] = head_output(self.card, self.head(model, ref, alt))
        return out


def head_output(card: dict[str, Any], raw: torch.Tensor) -> np.ndarray:
    """Head outputs (B, n_out) -> P(positive class) (classification) or the score in label units (regression)."""
    raw = raw.float()
    if card["target"]["kind"] == "regression":
        return (raw[:, 0] * float(card["target"]["std"]) + float(card["target"]["mean"])).cpu().numpy()
    probs = torch.softmax(raw, dim=-1)
    return probs[:, int(card["target"].get("positive_index", probs.shape[1] - 1))].cpu().numpy()


def finetuned_variant_model(path: str | os.PathLike) -> FinetunedVariantModel | None:
    """A fine-tuned variant model in folder ``path`` (None when ``path`` is not a fine-tuned folder)."""
    p = Path(path)
    if not p.is_dir():
        return None
    card = read_finetune_card(p)
    if card is None:
        return None
    if card.get("task") != "variant-effect":
        raise ModelError(f"{p / FT_FILE}: a {card.get('task')} model scores sequences, not variants")
    return FinetunedVariantModel(p, card, load_head(p, card), backbone_source(p, card))


__all__ = ["FT_FILE", "HEAD_FILE", "FinetunedVariantModel", "SequenceHead", "VariantHead", "backbone_states",
           "finetuned_variant_model", "head_output", "load_head", "make_head", "read_finetune_card",
           "sequence_ll"]
