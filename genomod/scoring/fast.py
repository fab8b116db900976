"""Fast SNV scores from one forward per window: log p(alt) - log p(ref) at the site (an approximation).

The model's predicted distribution at a site (given the bases before it) is read once and scores all
three possible SNVs there; the effect of the change on the *following* bases, which the exact score
includes, is ignored. Windows lie on a fixed grid so a site's score never depends on which other
variants are scored with it: with ``S = window // 2``, tile ``k`` covers sites ``[k*S, (k+1)*S)`` and
its forward window is ``[k*S - S, k*S + S)``, giving every site between S and 2S-1 bases of left context.
With ``rc`` the reverse strand is read from the mirrored tile ``[k*S, k*S + 2S)`` (reverse-complemented,
so every site again sees >= S bases of context, from its right) and the two strands' scores are averaged.
Positions past a contig edge are N.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from genomod.model.hybrid import HybridModel
from genomod.tokenizer import BASE_IDS, encode, reverse_complement

FetchFn = Callable[[str, int, int], str]
_COMP_IDX = np.array([3, 2, 1, 0])  # A C G T -> T G C A (as indices into ACGT)


def fetch_padded(fetch: FetchFn, contig: str, start: int, end: int, contig_length: int) -> str:
    """Sequence of [start, end) with N outside the contig."""
    lo = min(max(0, start), end)
    hi = max(min(contig_length, end), lo)
    mid = fetch(contig, lo, hi) if hi > lo else ""
    return "N" * (lo - start) + mid + "N" * (end - hi)


@torch.no_grad()
def site_logprobs(
    model: HybridModel,
    fetch: FetchFn,
    contig: str,
    contig_length: int,
    positions: Iterable[int],
    window: int,
    rc: bool = False,
    batch_size: int = 8,
) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """0-based position -> (log p over A,C,G,T forward, same for the reverse strand or None)."""
    half = max(1, window // 2)
    tiles: dict[int, list[int]] = {}
    for p in sorted(set(int(p) for p in positions)):
        tiles.setdefault(p // half, []).append(p)
    result: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    keys = sorted(tiles)
    base_ids = torch.as_tensor(BASE_IDS)
    for b0 in range(0, len(keys), batch_size):
        batch = keys[b0 : b0 + batch_size]
        fwd = np.stack(
            [
                encode(fetch_padded(fetch, contig, k * half - half, k * half + half, contig_length))
                for k in batch
            ]
        )
        logp = torch.log_softmax(model(torch.from_numpy(fwd).to(model.device)).logits.float(), -1)
        fwd_lp = logp.index_select(-1, base_ids.to(logp.device)).cpu().numpy()  # (B, 2S, 4)
        rc_lp = None
        if rc:
            rev = np.stack(
                [
                    encode(fetch_padded(fetch, contig, k * half, k * half + 2 * half, contig_length))
                    for k in batch
                ]
            )
            toks = reverse_complement(torch.from_numpy(rev))
            logp = torch.log_softmax(model(toks.to(model.device)).logits.float(), -1)
            rc_lp = logp.index_select(-1, base_ids.to(logp.device)).cpu().numpy()
        for j, k in enumerate(batch):
            for p in tiles[k]:
                i = p - (k * half - half)  # index of p in the forward tile; logits at i-1 predict it
                f = fwd_lp[j, i - 1]
                r = None
                if rc_lp is not None:
                    q = (k * half + 2 * half - 1) - p  # index of p in the RC tile
                    r = rc_lp[j, q - 1][_COMP_IDX]  # complement back to forward-strand bases
                result[p] = (f, r)
    return result


def snv_score(lp: tuple[np.ndarray, np.ndarray | None], ref: str, alt: str) -> float:
    """log p(alt) - log p(ref) at a site (strand-averaged when the reverse strand is present)."""
    ri, ai = "ACGT".find(ref.upper()), "ACGT".find(alt.upper())
    if ri < 0 or ai < 0:
        return float("nan")
    f, r = lp
    score = float(f[ai] - f[ri])
    if r is not None:
        score = 0.5 * (score + float(r[ai] - r[ri]))
    return score
