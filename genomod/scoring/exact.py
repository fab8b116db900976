"""Exact delta log-likelihood (Evo 2 convention) with shared-prefix reuse.

For a variant at 0-based ``start`` the reference window holds ``window`` bases with the variant's first
REF base at offset ``off = window // 2``. The alt window is the reference window with REF replaced by ALT,
keeping the same left flank; it is cut (insertions) or extended with the following reference bases
(deletions) on the right so that both windows have the same length. Tokens ``[0, off)`` are therefore
identical in the reference window and every alt window of the site, and because the model is causal so
are their logits: the prefix is run once per site (``HybridModel.prefill``) and only the suffixes
(``[off, window)``, one row for REF and one per ALT) are run, continuing from the cached state.

LL(window) = sum over positions 1..window-1 of log p(x_t | x_<t) (position 0 has no context).
delta_ll_sum = LL(alt) - LL(ref); the prefix terms cancel, so only positions >= off are computed.
delta_ll_mean = delta_ll_sum / (window - 1) (mean of per-position log-probs, as in Evo 2).

delta_embed (SNVs) = minus the mean over the positions from the variant to the window's end of the L2 distance
between the ALT and REF windows' hidden states after the last block (before the final norm): the embedding
distance zero-shot score (Dalla-Torre et al. 2023, Nucleotide Transformer), signed like delta LL (0 = no
change, lower = more damaging). It comes from the same forwards as delta LL (``embed=True``); on the reverse
strand the positions are those after the variant in RC orientation. Indels get NaN: their ALT suffix is not
aligned with the REF one position by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from genomod.io.windows import FetchFn, Window
from genomod.model.config import ModelConfig
from genomod.model.hybrid import HybridModel, InferenceCache
from genomod.tokenizer import encode, reverse_complement


@dataclass
class Site:
    """All alleles scored against one reference window (same contig and 0-based start)."""

    contig: str
    start: int
    ref_tokens: np.ndarray  # (window,)
    alt_tokens: list[np.ndarray]  # one (window,) per allele
    pad: int = 0  # N bases added at contig edges
    snv: tuple[bool, ...] = ()  # per allele: single-base REF and ALT (delta_embed is defined for these)


def build_site(
    fetch: FetchFn,
    contig: str,
    start: int,
    alleles: Sequence[tuple[str, str]],
    window: int,
    contig_length: int,
) -> Site:
    """Reference window centred on ``start`` and one same-length alt window per (REF, ALT) (module doc).

    The window read runs ``extra`` bases past the reference window so that deletions can be refilled from
    the following reference bases; ``pad`` counts the N bases of the reference window only.
    """
    off = window // 2
    extra = max(0, max((len(r) - len(a) for r, a in alleles), default=0))
    win = Window.read(fetch, contig, start - off, start - off + window + extra, contig_length)
    seq = win.seq.upper()
    alt_tokens = [encode((seq[:off] + alt + seq[off + len(ref) :])[:window]) for ref, alt in alleles]
    snv = tuple(len(r) == 1 and len(a) == 1 for r, a in alleles)
    return Site(contig, start, encode(seq[:window]), alt_tokens, win.head(window).pad, snv)


def site_deltas(sums: np.ndarray, ref_rows: Sequence[int | Sequence[int]],
                alt_rows: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Per site: the LL sums of its ALT rows minus that of its REF row (one REF row per site, or one per ALT
    when the REF window is repeated per allele). The one place where row sums become per-site deltas."""
    return [sums[np.asarray(a, dtype=np.int64)] - sums[np.asarray(r, dtype=np.int64)] for r, a in zip(ref_rows, alt_rows)]


def embed_layer(model: HybridModel) -> str:
    """The hidden state delta_embed compares: the last block's output (before the final norm)."""
    return f"blocks.{len(model.blocks) - 1}"


def _distance_sum(h_alt: torch.Tensor, h_ref: torch.Tensor) -> torch.Tensor:
    """Sum over positions of the L2 distance between (B, L, C) and (B or 1, L, C) hidden states, float64 (B,)."""
    return (h_alt.float() - h_ref.float()).norm(dim=-1).double().sum(-1)


def site_embed(dist: np.ndarray, rows: Sequence[int], site: Site, positions: int) -> np.ndarray:
    """delta_embed of a site's alleles from per-row distance sums over ``positions`` (NaN for non-SNVs)."""
    out = -dist[np.asarray(rows, dtype=np.int64)] / positions
    snv = np.asarray(site.snv, dtype=bool) if site.snv else np.ones(len(out), dtype=bool)
    return np.where(snv, out, np.nan)


def _suffix_ll(logits: torch.Tensor, first_logp: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Sum of log p over suffix tokens: the first from ``first_logp`` (B, V), the rest from ``logits``."""
    lg = logits[:, :-1].float()
    # log p = logit - logsumexp(logits): the full (rows, L, vocab) log-softmax is never written
    rest = lg.gather(-1, tokens[:, 1:, None]).squeeze(-1) - torch.logsumexp(lg, dim=-1)
    first = first_logp.gather(-1, tokens[:, :1]).squeeze(-1)
    return first.double() + rest.double().sum(-1)


def local_split(config: ModelConfig, suffix: int) -> tuple[int, int]:
    """``(k, span)``: an SNV's ALT suffix needs the first ``k`` blocks over its first ``span`` positions only.

    An SNV changes the suffix's first token; each leading block of finite reach (``ModelConfig.block_reach``:
    Hyena-SE/MR) spreads the change over ``reach`` more positions, so after ``k`` such blocks the ALT row's
    hidden states equal the REF row's from ``span = 1 + sum of reaches`` on, and only blocks ``k, ...`` need the
    whole suffix. ``k`` maximises the positions saved, ``k x (suffix - span)`` (``(0, 1)``: none saved).
    """
    best, k, span = (0, 1), 0, 1
    for reach in config.block_reach():
        if reach is None:
            break
        k, span = k + 1, span + reach
        if span < suffix and k * (suffix - span) > best[0] * (suffix - best[1]):
            best = (k, span)
    return best


def _states(cache: InferenceCache, rows: np.ndarray, lo: int, hi: int | None, group: int) -> list[dict]:
    """The cached states of blocks ``lo:hi`` for prefix rows ``rows`` (no copy when they are the whole group)."""
    layers = cache.layers[lo:hi]
    if len(rows) == group and (rows == np.arange(group)).all():
        return layers
    return InferenceCache(layers, cache.offset).select(rows.tolist()).layers


def _suffix_forwards(model: HybridModel, cache: InferenceCache, last_logp: torch.Tensor, toks_all: torch.Tensor,
                     site_idx: np.ndarray, snv: np.ndarray, g: int, rows_per: int,
                     embed: bool) -> tuple[np.ndarray, np.ndarray]:
    """LL sums of a group's suffix rows (REF rows of its ``g`` sites first, then ALT rows; ``site_idx``: each
    row's site) and, with ``embed``, each ALT row's summed hidden-state distance to its REF row; ``rows_per``
    rows per forward. ALT rows flagged ``snv`` run blocks ``:k`` over their first ``span`` positions only
    (``local_split``), the others over the whole suffix: the path a row takes never depends on its batch."""
    length = toks_all.shape[1]
    k, span = local_split(model.config, length)
    sums = np.empty(len(site_idx), dtype=np.float64)
    dist = np.zeros(len(site_idx), dtype=np.float64)
    ref_x: torch.Tensor | None = None  # (g, suffix, C): REF rows' input to block k (they come first)
    ref_h: torch.Tensor | None = None  # (g, suffix, C): REF rows' last-block output, for delta_embed
    for r0 in range(0, len(site_idx), rows_per):
        idx = site_idx[r0 : r0 + rows_per]
        n_ref = max(0, min(len(idx), g - r0))  # REF rows in this forward
        toks = toks_all[r0 : r0 + len(idx)]
        parts = []
        if n_ref:
            x, _ = model.run_blocks(model.embedding_layer(toks[:n_ref]), _states(cache, idx[:n_ref], 0, k, g),
                                    cache.offset)
            if span < length and snv.any():  # SNV ALT rows continue from these past `span`
                ref_x = x.new_empty(g, *x.shape[1:]) if ref_x is None else ref_x
                ref_x[r0 : r0 + n_ref] = x
            parts.append(x)
        if n_ref < len(idx):
            parts.append(_alt_inputs(model, cache, toks[n_ref:], idx[n_ref:], snv[r0 + n_ref : r0 + len(idx)], ref_x,
                                     g, k, span))
        x = parts[0] if len(parts) == 1 else torch.cat(parts)
        h, _ = model.run_blocks(x, _states(cache, idx, k, None, g), cache.offset, start=k)
        del x, parts
        sums[r0 : r0 + len(idx)] = _suffix_ll(model.head(h), last_logp[idx], toks).cpu().numpy()
        if embed:  # delta_embed compares the last block's outputs (embed_layer)
            if n_ref:
                ref_h = h.new_empty(g, *h.shape[1:]) if ref_h is None else ref_h
                ref_h[r0 : r0 + n_ref] = h[:n_ref]
            if n_ref < len(idx):
                alt_sites = torch.as_tensor(idx[n_ref:], device=h.device)
                dist[r0 + n_ref : r0 + len(idx)] = _distance_sum(h[n_ref:], ref_h[alt_sites]).cpu().numpy()
        del h
    return sums, dist


def _alt_inputs(model: HybridModel, cache: InferenceCache, toks: torch.Tensor, sites: np.ndarray, snv: np.ndarray,
                ref_x: torch.Tensor | None, g: int, k: int, span: int) -> torch.Tensor:
    """ALT rows' input to block ``k`` (rows, suffix, C): SNV rows from blocks ``:k`` over their first ``span``
    positions and their site's REF row (``ref_x``) after it, other rows from blocks ``:k`` over the whole suffix."""
    out: torch.Tensor | None = None
    for rows, local in ((np.flatnonzero(snv), True), (np.flatnonzero(~snv), False)):
        if not len(rows):
            continue
        sel = torch.as_tensor(rows, device=toks.device)
        x, _ = model.run_blocks(model.embedding_layer(toks[sel, :span] if local else toks[sel]),
                                _states(cache, sites[rows], 0, k, g), cache.offset)
        if local and span < toks.shape[1]:  # past `span` the input to block k is the REF row's
            x = torch.cat([x, ref_x[torch.as_tensor(sites[rows], device=x.device), span:]], dim=1)
        if len(rows) == len(sites):
            return x
        out = x.new_empty(len(sites), *x.shape[1:]) if out is None else out
        out[sel] = x
    return out


SUFFIX_TOKENS = 16384  # cap on rows x suffix length per suffix forward when suffix_batch is not given


@torch.no_grad()
def exact_deltas(
    model: HybridModel, sites: Sequence[Site], batch_size: int = 8, suffix_batch: int | None = None,
    chunk_size: int | None = None, embed: bool = False, prefix: int | None = None,
) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
    """Forward-strand delta LL sums per site (array of len(alts)), prefix run once per site; with ``embed``
    also delta_embed per site from the same forwards (module doc), returned as ``(deltas, embeds)``.

    The prefixes of ``batch_size`` sites run together (``HybridModel.prefill``). Their suffix rows are ordered
    by allele slot (every site's REF, then every site's first ALT, ...), so a forward over one whole slot
    continues from the prefix cache as it is; ``suffix_batch`` (default ``batch_size``, rows) larger than
    the group packs several slots per forward at the cost of a cache copy (``InferenceCache.select``).
    An SNV's ALT row runs the first blocks only where it differs from its REF row
    (``local_split``: the first two of Hyena-SE, MR, LI, ...), then continues from the REF row's hidden states.
    Windows longer than ``chunk_size`` go to ``chunked_deltas`` (bounded memory, one site at a time).
    ``prefix``: the tokens every row of a site shares (default ``window // 2``, the forward strand's; the RC
    strand of an SNV shares ``window - 1 - window // 2``, see ``rc_deltas``).
    """
    if not sites:
        return ([], []) if embed else []
    if chunk_size and len(sites[0].ref_tokens) > chunk_size:
        return chunked_deltas(model, sites, chunk_size, embed, prefix)
    device = model.device
    embeds: list[np.ndarray] = []
    window = len(sites[0].ref_tokens)
    off = window // 2 if prefix is None else prefix
    rows_per = max(1, int(suffix_batch or batch_size))
    if suffix_batch is None:
        rows_per = max(1, min(rows_per, max(batch_size, SUFFIX_TOKENS // max(1, window - off))))
    results: list[np.ndarray] = []
    prefix_buf = np.empty((batch_size, off), dtype=np.int64)
    for b0 in range(0, len(sites), batch_size):
        group = sites[b0 : b0 + batch_size]
        g = len(group)
        for i, s in enumerate(group):
            prefix_buf[i] = s.ref_tokens[:off]
        last_logits, cache = model.prefill(torch.from_numpy(prefix_buf[:g]).to(device))
        last_logp = torch.log_softmax(last_logits, dim=-1)
        # suffix rows by allele slot: slot 0 = REF of every site, slot j = j-th ALT of the sites that have one
        n_alts = np.array([len(s.alt_tokens) for s in group])
        site_of = [np.arange(g)] + [np.flatnonzero(n_alts > j) for j in range(int(n_alts.max(initial=0)))]
        site_idx = np.concatenate(site_of)
        suffix = np.empty((len(site_idx), window - off), dtype=np.int64)
        r = 0
        for j, members in enumerate(site_of):
            for i in members:
                suffix[r] = (group[i].ref_tokens if j == 0 else group[i].alt_tokens[j - 1])[off:]
                r += 1
        toks_all = torch.from_numpy(suffix).to(device)
        # per suffix row: an SNV ALT row (runs the first blocks over a few positions only, local_split)
        snv = np.array([j > 0 and bool(group[i].snv) and group[i].snv[j - 1]
                        for j, members in enumerate(site_of) for i in members], dtype=bool)
        sums, dist = _suffix_forwards(model, cache, last_logp, toks_all, site_idx, snv, g, rows_per, embed)
        slot_start = np.cumsum([0] + [len(m) for m in site_of])
        # ALT j of site i sits at its rank among slot j's members (sites with more than j ALTs)
        alt_rows = [[slot_start[j + 1] + int(np.searchsorted(site_of[j + 1], i)) for j in range(n_alts[i])]
                    for i in range(g)]
        results.extend(site_deltas(sums, range(g), alt_rows))
        if embed:
            embeds.extend(site_embed(dist, rows, s, window - off) for s, rows in zip(group, alt_rows))
    return (results, embeds) if embed else results


@torch.no_grad()
def chunked_deltas(model: HybridModel, sites: Sequence[Site], chunk_size: int, embed: bool = False,
                   prefix: int | None = None) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
    """``exact_deltas`` for windows longer than ``chunk_size``: one site at a time, its prefix and then each
    allele's suffix run in chunks with carried state (the suffixes continue from the prefix's cache), each
    chunk's logits reduced to a log-likelihood sum at once. Memory: one chunk's activations plus attention
    K/V of the prefix and of one window, whatever the window (with ``embed``, plus the REF suffix's hidden
    states, suffix x hidden_size floats, which each ALT's are compared with chunk by chunk)."""
    device = model.device
    layer = embed_layer(model) if embed else None
    results: list[np.ndarray] = []
    embeds: list[np.ndarray] = []
    for site in sites:
        off = len(site.ref_tokens) // 2 if prefix is None else prefix
        cache, last = None, None
        for _, out in model.iter_chunks(torch.from_numpy(site.ref_tokens[None, :off]).to(device), chunk_size):
            cache, last = out.cache, out.logits[:, -1]
        first_logp = torch.log_softmax(last.float(), dim=-1)
        del out, last
        ref_hidden: list[torch.Tensor] = []
        stats = [_continued_ll(model, torch.from_numpy(row[None, off:]).to(device), first_logp, cache, chunk_size,
                               layer, ref_hidden, keep=i == 0)
                 for i, row in enumerate([site.ref_tokens, *site.alt_tokens])]
        sums = np.array([float(ll[0]) for ll, _ in stats])
        results.append(sums[1:] - sums[0])
        if embed:
            dist = np.array([float(d[0]) for _, d in stats])
            embeds.append(site_embed(dist, range(1, len(stats)), site, len(site.ref_tokens) - off))
    return (results, embeds) if embed else results


def _continued_ll(model: HybridModel, tokens: torch.Tensor, first_logp: torch.Tensor, cache: InferenceCache | None,
                  chunk_size: int, layer: str | None = None, ref_hidden: list[torch.Tensor] | None = None,
                  keep: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log p over ``tokens`` (B, L) continuing from ``cache``, chunk by chunk (float64, (B,)), and with
    ``layer`` the summed L2 distance of its hidden states to ``ref_hidden`` (one tensor per chunk), which
    ``keep=True`` fills instead (the REF row, distance 0)."""
    total = torch.zeros(tokens.shape[0], dtype=torch.float64, device=tokens.device)
    dist = torch.zeros_like(total)
    prev = first_logp
    for k, (start, out) in enumerate(model.iter_chunks(tokens, chunk_size, cache=cache,
                                                        return_hidden=[layer] if layer else None)):
        total += _suffix_ll(out.logits, prev, tokens[:, start : start + out.logits.shape[1]])
        prev = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        if layer is not None and ref_hidden is not None:
            if keep:
                ref_hidden.append(out.hidden[layer])
            else:
                dist += _distance_sum(out.hidden[layer], ref_hidden[k])
    return total, dist


@torch.no_grad()
def window_ll(
    model: HybridModel, tokens: np.ndarray | torch.Tensor, batch_size: int = 8, rc: bool = False,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Full-window log-likelihood sums (positions 1..L-1) of each row, optionally of the RC strand.

    Rows longer than ``chunk_size`` run one at a time in chunks with carried state (bounded memory).
    """
    return _window_rows(model, tokens, batch_size, rc, chunk_size)[0]


def _window_rows(model: HybridModel, tokens: np.ndarray | torch.Tensor, batch_size: int, rc: bool,
                 chunk_size: int | None, hidden_from: int | None = None) -> tuple[np.ndarray, list[torch.Tensor]]:
    """``window_ll``'s sums and, with ``hidden_from``, each row's last-block hidden states from that position on
    (the same forwards and arithmetic either way)."""
    t = torch.as_tensor(np.asarray(tokens)) if not isinstance(tokens, torch.Tensor) else tokens
    if rc:
        t = reverse_complement(t)
    chunked = bool(chunk_size) and t.shape[1] > chunk_size
    if chunked:
        batch_size = 1
    out = np.empty(t.shape[0], dtype=np.float64)
    tails: list[torch.Tensor] = []
    layer = embed_layer(model)
    for b0 in range(0, t.shape[0], batch_size):
        chunk = t[b0 : b0 + batch_size].to(model.device)
        hidden: dict[str, list[torch.Tensor]] | None = {layer: []} if hidden_from is not None else None
        ll = model.log_likelihoods(chunk, chunk_size=chunk_size if chunked else None, hidden_out=hidden)
        out[b0 : b0 + len(chunk)] = ll[:, 1:].double().sum(-1).cpu().numpy()
        if hidden is not None:
            tails.extend(torch.cat(hidden[layer], dim=1)[:, hidden_from:].unbind(0))
    return out, tails


def rc_deltas(model: HybridModel, sites: Sequence[Site], batch_size: int = 8, chunk_size: int | None = None,
              embed: bool = False) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
    """Reverse-strand delta LL sums per site (with ``embed`` also delta_embed, as ``(deltas, embeds)``).

    In RC orientation an SNV sits at ``window - 1 - window // 2`` and everything before it (the reversed right
    flank) is the same in every row of the site, so SNV-only sites run through ``exact_deltas`` on their RC
    rows with that prefix (run once per site); sites with indels, whose RC rows differ from the first token,
    run full forwards of every RC row (``_full_rc``).
    """
    if not sites:
        return ([], []) if embed else []
    window = len(sites[0].ref_tokens)
    at = window - 1 - window // 2
    shared = [i for i, s in enumerate(sites) if s.snv and all(s.snv)]
    rest = sorted(set(range(len(sites))) - set(shared))
    deltas: list[np.ndarray | None] = [None] * len(sites)
    embeds: list[np.ndarray | None] = [None] * len(sites)
    if shared:
        rc_sites = [replace(sites[i], ref_tokens=reverse_complement(sites[i].ref_tokens),
                            alt_tokens=[reverse_complement(a) for a in sites[i].alt_tokens]) for i in shared]
        res = exact_deltas(model, rc_sites, batch_size, chunk_size=chunk_size, embed=embed, prefix=at)
        for k, i in enumerate(shared):
            deltas[i] = res[0][k] if embed else res[k]
            if embed:
                embeds[i] = res[1][k]
    if rest:
        d, e = _full_rc(model, [sites[i] for i in rest], batch_size, chunk_size, embed, at)
        for k, i in enumerate(rest):
            deltas[i], embeds[i] = d[k], (e[k] if embed else None)
    return (deltas, embeds) if embed else deltas


def _full_rc(model: HybridModel, sites: Sequence[Site], batch_size: int, chunk_size: int | None, embed: bool,
             at: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RC deltas (and delta_embed, over RC positions ``[at, window)``) from full forwards of every RC row."""
    window = len(sites[0].ref_tokens)
    deltas: list[np.ndarray] = []
    embeds: list[np.ndarray] = []
    for b0 in range(0, len(sites), batch_size):  # a group's REF and ALT rows together: pairs never wait long
        group = sites[b0 : b0 + batch_size]
        rows = [s.ref_tokens for s in group] + [a for s in group for a in s.alt_tokens]
        sums, tails = _window_rows(model, np.stack(rows), batch_size, True, chunk_size,
                                   hidden_from=at if embed else None)
        ends = len(group) + np.cumsum([len(s.alt_tokens) for s in group])
        alt_rows = [range(e - len(s.alt_tokens), e) for s, e in zip(group, ends)]
        deltas.extend(site_deltas(sums, range(len(group)), alt_rows))
        if embed:  # each ALT row's RC tail against its site's REF row (row i of the group)
            alt_idx = [r for rows_i in alt_rows for r in rows_i]
            ref_idx = [i for i, rows_i in enumerate(alt_rows) for _ in rows_i]
            dist = np.zeros(len(rows))
            dist[alt_idx] = _distance_sum(torch.stack([tails[r] for r in alt_idx]),
                                          torch.stack([tails[i] for i in ref_idx])).cpu().numpy()
            embeds.extend(site_embed(dist, r, s, window - at) for s, r in zip(group, alt_rows))
    return deltas, embeds


def naive_deltas(model: HybridModel, sites: Sequence[Site], batch_size: int = 8) -> list[np.ndarray]:
    """Reference implementation: two full forwards per variant (ref window recomputed for every allele)."""
    rows = [t for s in sites for a in s.alt_tokens for t in (s.ref_tokens, a)]
    if not rows:
        return [np.zeros(0) for _ in sites]
    sums = window_ll(model, np.stack(rows), batch_size)
    n = [len(s.alt_tokens) for s in sites]
    first = 2 * np.cumsum([0] + n[:-1])  # rows are (REF, ALT) pairs: one REF row per allele
    return site_deltas(sums, [range(b, b + 2 * k, 2) for b, k in zip(first, n)],
                       [range(b + 1, b + 2 * k, 2) for b, k in zip(first, n)])
