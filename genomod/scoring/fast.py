"""Fast SNV scores from one forward per window: log p(alt) - log p(ref) at the site (an approximation).

The model's predicted distribution at a site (given the bases before it) is read once and scores all
three possible SNVs there; the effect of the change on the *following* bases, which the exact score
includes, is ignored. Windows lie on a fixed grid so a site's score never depends on which other
variants are scored with it: with ``S = window // 2``, tile ``k`` covers sites ``[k*S, (k+1)*S)`` and
its forward window is ``[k*S - S, k*S + S)``, giving every site between S and 2S-1 bases of left context.
With ``rc`` the reverse strand is read from the mirrored tile ``[k*S, k*S + 2S)`` (reverse-complemented,
so every site again sees >= S bases of context, from its right) and the two strands' scores are averaged.
Positions past a contig edge are N.

A tile is the unit of work: ``tile_logprobs`` computes many tiles per forward (forward and RC windows of
a batch in one call) and keeps only the S rows each tile scores, as (S, 4) log-probabilities over A, C,
G, T in forward-strand order. ``TileCache`` keeps recent tiles so that records of one tile split over
several input chunks (dense VCFs, saturation scans) reuse it instead of recomputing the forward.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from genomod.io.windows import FetchFn, Window
from genomod.model.hybrid import HybridModel
from genomod.tokenizer import BASE_IDS, encode, reverse_complement

_COMP_IDX = np.array([3, 2, 1, 0])  # A C G T -> T G C A (as indices into ACGT)
_BASE_IDX = {b: i for i, b in enumerate("ACGT")} | {b: i for i, b in enumerate("acgt")}
# default tokens per fast-mode forward (rows x window). CPU: measured on the 2-core AVX-512 dev box with the
# shipped model at window 1024, 4 rows beat 2, 6, 8 and 16 (GEMMs are at their peak from M ~ 4096 and the
# element-wise work falls out of cache beyond); other devices: at least batch_size rows, ~16k tokens.
CPU_TOKENS_PER_FORWARD = 4096
TOKENS_PER_FORWARD = 16384
TileLP = tuple[np.ndarray, np.ndarray | None]  # forward (S, 4), reverse strand (S, 4) or None


def fast_rows(window: int, batch_size: int = 8, device: torch.device | str = "cpu") -> int:
    """Default forward rows per fast-mode batch: ~CPU_TOKENS_PER_FORWARD tokens on CPU (whatever
    ``batch_size``), else at least ``batch_size`` rows and ~TOKENS_PER_FORWARD tokens."""
    tile = max(1, 2 * (window // 2))
    if torch.device(device).type == "cpu":
        return max(1, CPU_TOKENS_PER_FORWARD // tile)
    return max(int(batch_size), TOKENS_PER_FORWARD // tile)


class TileCache:
    """LRU of computed tiles keyed by (contig, tile), bounded in bytes; one per scoring call (not shared)."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.computed = 0  # tiles computed by forwards through this cache (tests, benchmarks)
        self.forwards = 0  # model forward calls made through this cache
        self._data: OrderedDict[tuple[str, int], TileLP] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._data

    def get(self, key: tuple[str, int]) -> TileLP | None:
        val = self._data.get(key)
        if val is not None:
            self._data.move_to_end(key)
        return val

    def put(self, key: tuple[str, int], val: TileLP) -> None:
        if key in self._data:
            return
        size = sum(a.nbytes for a in val if a is not None)
        self._data[key] = val
        self.nbytes += size
        while self.nbytes > self.max_bytes and len(self._data) > 1:
            _, old = self._data.popitem(last=False)
            self.nbytes -= sum(a.nbytes for a in old if a is not None)


def _tile_tokens(fetch: FetchFn, contig: str, contig_length: int, tiles: Sequence[int], half: int) -> np.ndarray:
    """Token windows ``[k*S - S, k*S + S)`` of the ``tiles`` (in order), one fetch per run of nearby tiles."""
    ks = np.asarray(tiles, dtype=np.int64)
    out = np.empty((len(ks), 2 * half), dtype=np.int64)
    order = np.argsort(ks, kind="stable")
    breaks = np.flatnonzero(np.diff(ks[order]) > 2) + 1  # windows of k and k + 2 are adjacent
    for run in np.split(order, breaks):
        lo, hi = int(ks[run[0]]) * half - half, int(ks[run[-1]]) * half + half
        span = encode(Window.read(fetch, contig, lo, hi, contig_length).seq)
        out[run] = span[(ks[run] * half - half - lo)[:, None] + np.arange(2 * half)]
    return out


@torch.no_grad()
def tile_logprobs(
    model: HybridModel,
    fetch: FetchFn,
    contig: str,
    contig_length: int,
    tiles: Sequence[int],
    window: int,
    rc: bool = False,
    batch_size: int = 8,
    counter: TileCache | None = None,
    chunk_size: int | None = None,
) -> dict[int, TileLP]:
    """Tile index -> (forward (S, 4) log p over ACGT at sites k*S..k*S+S-1, reverse strand or None).

    ``batch_size`` is in forward rows (sequences); with ``rc`` a batch holds the forward and RC windows
    of ``batch_size // 2`` tiles. Only the S logit rows that score the tile's sites are normalised.
    Windows longer than ``chunk_size`` run one row at a time in chunks with carried state (``_chunked_rows``).
    """
    half = max(1, window // 2)
    keys = sorted(set(int(k) for k in tiles))
    per = max(1, batch_size // 2) if rc else max(1, batch_size)
    base_ids = torch.as_tensor(BASE_IDS, device=model.device)
    out: dict[int, TileLP] = {}
    for b0 in range(0, len(keys), per):
        batch = keys[b0 : b0 + per]
        # forward windows of tiles k and (for the RC strand) k + 1, whose window is tile k's mirrored tile
        toks = torch.from_numpy(_tile_tokens(fetch, contig, contig_length, batch + [k + 1 for k in batch]
                                             if rc else batch, half))
        if rc:
            toks = torch.cat([toks[: len(batch)], reverse_complement(toks[len(batch) :])])
        if chunk_size and toks.shape[1] > chunk_size:
            lp = _chunked_rows(model, toks, half, chunk_size, base_ids)
        else:
            logits = model(toks.to(model.device)).logits[:, half - 1 : 2 * half - 1]  # rows predicting sites
            lp = torch.log_softmax(logits.float(), -1).index_select(-1, base_ids).cpu().numpy()  # (R, S, 4)
        if counter is not None:
            counter.forwards += 1
            counter.computed += len(batch)
        for j, k in enumerate(batch):
            # forward row i predicts site k*S + i; RC row i predicts site k*S + S-1-i on the other strand
            r = lp[len(batch) + j, ::-1][:, _COMP_IDX].copy() if rc else None
            out[k] = (lp[j].copy(), r)
    return out


def _chunked_rows(model: HybridModel, toks: torch.Tensor, half: int, chunk_size: int,
                  base_ids: torch.Tensor) -> np.ndarray:
    """(R, S, 4) log p over ACGT from logit rows [S-1, 2S-1) of each window, one row at a time in chunks:
    each chunk's logits are reduced at once, so memory is one chunk plus attention K/V of one window."""
    rows = []
    for r in range(toks.shape[0]):
        parts = []
        for start, out in model.iter_chunks(toks[r : r + 1].to(model.device), chunk_size):
            lo, hi = max(start, half - 1), min(start + out.logits.shape[1], 2 * half - 1)
            if lo < hi:
                logits = out.logits[0, lo - start : hi - start].float()
                parts.append(torch.log_softmax(logits, -1).index_select(-1, base_ids).cpu())
        rows.append(torch.cat(parts))
    return torch.stack(rows).numpy()


def fast_scores(
    model: HybridModel,
    fetch: FetchFn,
    contig: str,
    contig_length: int,
    positions: np.ndarray,
    ref_idx: np.ndarray,
    alt_idx: np.ndarray,
    window: int,
    rc: bool = False,
    batch_size: int = 8,
    cache: TileCache | None = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Scores (float64) of SNVs at 0-based ``positions`` with REF/ALT given as ACGT indices (-1: NaN).

    Tiles are computed ``batch_size`` forward rows at a time, each at most once per ``cache``; values are
    read with numpy indexing (no per-site Python loop). ``chunk_size``: see ``tile_logprobs``.
    """
    half = max(1, window // 2)
    positions = np.asarray(positions, dtype=np.int64)
    ref_idx, alt_idx = np.asarray(ref_idx, dtype=np.int64), np.asarray(alt_idx, dtype=np.int64)
    out = np.full(len(positions), np.nan, dtype=np.float64)
    ok = (ref_idx >= 0) & (alt_idx >= 0)
    tile_of = positions // half
    keys = np.unique(tile_of[ok]).tolist()
    per = (max(1, batch_size // 2) if rc else max(1, batch_size)) * 4  # tiles read per pass
    for b0 in range(0, len(keys), per):
        group = keys[b0 : b0 + per]
        have = {k: cache.get((contig, k)) for k in group} if cache is not None else {}
        todo = [k for k in group if have.get(k) is None]
        if todo:
            new = tile_logprobs(model, fetch, contig, contig_length, todo, window, rc, batch_size, cache, chunk_size)
            have.update(new)
            if cache is not None:
                for k, v in new.items():
                    cache.put((contig, k), v)
        sel = np.flatnonzero(ok & (tile_of >= group[0]) & (tile_of <= group[-1]))
        slot = np.searchsorted(np.asarray(group), tile_of[sel])
        fwd = np.stack([have[k][0] for k in group])  # (T, S, 4)
        col = positions[sel] - tile_of[sel] * half
        score = (fwd[slot, col, alt_idx[sel]] - fwd[slot, col, ref_idx[sel]]).astype(np.float64)
        if rc:
            back = np.stack([have[k][1] for k in group])
            score = 0.5 * (score + (back[slot, col, alt_idx[sel]] - back[slot, col, ref_idx[sel]]).astype(np.float64))
        out[sel] = score
    return out


def tile_pads(positions: np.ndarray, window: int, contig_length: int) -> np.ndarray:
    """N bases in the forward window of each 0-based position's tile (its ``Window.pad``), vectorised."""
    half = max(1, window // 2)
    lo = np.asarray(positions, dtype=np.int64) // half * half
    return np.maximum(0, half - lo) + np.maximum(0, lo + half - contig_length)


def base_index(bases: Iterable[str]) -> np.ndarray:
    """ACGT index (case-insensitive) of each single-base string, -1 for anything else."""
    return np.fromiter((_BASE_IDX.get(b, -1) for b in bases), dtype=np.int64)


def site_logprobs(
    model: HybridModel,
    fetch: FetchFn,
    contig: str,
    contig_length: int,
    positions: Iterable[int],
    window: int,
    rc: bool = False,
    batch_size: int = 8,
    chunk_size: int | None = None,
) -> dict[int, TileLP]:
    """0-based position -> (log p over A,C,G,T forward, same for the reverse strand or None)."""
    half = max(1, window // 2)
    pos = sorted(set(int(p) for p in positions))
    if not pos:
        return {}
    rows = 2 * batch_size if rc else batch_size  # as before: batch_size tiles per forward and strand
    tiles = tile_logprobs(model, fetch, contig, contig_length, [p // half for p in pos], window, rc, rows,
                          chunk_size=chunk_size)
    return {p: (tiles[p // half][0][p % half], None if not rc else tiles[p // half][1][p % half]) for p in pos}


def snv_score(lp: TileLP, ref: str, alt: str) -> float:
    """log p(alt) - log p(ref) at a site (strand-averaged when the reverse strand is present)."""
    ri, ai = "ACGT".find(ref.upper()), "ACGT".find(alt.upper())
    if ri < 0 or ai < 0:
        return float("nan")
    f, r = lp
    score = float(f[ai] - f[ri])
    if r is not None:
        score = 0.5 * (score + float(r[ai] - r[ri]))
    return score
