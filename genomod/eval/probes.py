"""Label-free biology probes for a causal DNA language model: nonsense, splice sites, perplexity.

No experimental labels are needed; the "labels" come from biology every genome obeys:

- **nonsense** (``orfs.fa.gz``): inside a coding sequence (start and stop codons excluded), SNVs that create
  a stop codon (TAA/TAG/TGA, positive) should score lower than synonymous SNVs (negative, standard code).
- **splice** (``splice.fa.gz``): SNVs at the two canonical intron bases of a donor (GT) or acceptor (AG)
  (positive) should score lower than SNVs 5-20 bp deeper inside the intron (negative).
- **perplexity** (``heldout.fa.gz`` + ``markov_counts.npz``): the model's per-nucleotide perplexity on
  held-out sequence next to Markov chains of every order fitted on the training data.

Scores are delta log-likelihoods (log p(alt) - log p(ref), higher = more benign) from
:mod:`genomod.scoring.fast` or :mod:`genomod.scoring.exact`; metrics use ``-delta`` (higher = more damaging,
the :mod:`genomod.eval.metrics` convention). Coordinates in the input headers are 1-based; everything in
this module is 0-based, half-open.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genomod.errors import ConfigError, InputError
from genomod.utils import atomic_path, check_readable, open_decompressed

if TYPE_CHECKING:  # pragma: no cover
    from genomod.model.hybrid import HybridModel
    from genomod.scoring.finetuned import FinetunedVariantModel

BASES = "ACGT"
MODES = ("fast", "exact", "embed")  # embed: exact mode's forwards, delta_embed (embedding distance)
#: File names of a probe folder (a plain, non-gzipped ``orfs.fa`` etc. is accepted too).
PROBE_FILES = {"nonsense": "orfs.fa.gz", "splice": "splice.fa.gz", "perplexity": "heldout.fa.gz"}
MARKOV_FILE = "markov_counts.npz"
MAX_DEFAULT_WINDOW = 1024

# Standard genetic code (NCBI table 1); '*' = stop.
_AA = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
_ORDER = "TCAG"
CODON_TABLE: dict[str, str] = {
    a + b + c: _AA[16 * i + 4 * j + k]
    for i, a in enumerate(_ORDER)
    for j, b in enumerate(_ORDER)
    for k, c in enumerate(_ORDER)
}
STOP_CODONS = frozenset(c for c, aa in CODON_TABLE.items() if aa == "*")  # TAA, TAG, TGA

# ASCII byte -> base index (A0 C1 G2 T3, -1 otherwise); lowercase counts as the base
_BYTE_INDEX = np.full(256, -1, dtype=np.int8)
for _i, _b in enumerate(b"ACGT"):
    _BYTE_INDEX[_b] = _i
    _BYTE_INDEX[ord(chr(_b).lower())] = _i


# ---------------------------------------------------------------------------------------------------------
# records and readers


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record: id, uppercase sequence, header key=value attributes and 1-based header line."""

    id: str
    seq: str
    attrs: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class OrfRecord:
    """An mRNA with its coding sequence ``seq[cds_start:cds_end]`` (0-based, start codon .. stop codon)."""

    id: str
    seq: str
    cds_start: int
    cds_end: int
    source: str = ""


@dataclass(frozen=True)
class SpliceRecord:
    """A sequence with an intron's 0-based first base (``donor``) and last base (``acceptor``), or None."""

    id: str
    seq: str
    donor: int | None
    acceptor: int | None
    source: str = ""


@dataclass(frozen=True)
class ProbeVariant:
    """One probe SNV: record index, 0-based position, REF/ALT, label (1 = damaging class) and group."""

    record: int
    pos: int
    ref: str
    alt: str
    label: int
    group: str  # nonsense/synonymous (ORF probe) or donor/acceptor (splice probe)


def read_fasta_records(path: str | os.PathLike) -> Iterator[FastaRecord]:
    """Records of a FASTA file (gzip or plain) with ``key=value`` header attributes parsed."""
    path = check_readable(path, "FASTA", allow_empty=True)
    head: tuple[str, dict[str, str], int] | None = None
    parts: list[str] = []
    with open_decompressed(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("ascii").strip()
            except UnicodeDecodeError:
                raise InputError(f"{path}: line {lineno}: not ASCII text (is this a FASTA file?)") from None
            if not line:
                continue
            if line.startswith(">"):
                if head is not None:
                    yield FastaRecord(head[0], "".join(parts).upper(), head[1], head[2])
                fields = line[1:].split()
                if not fields:
                    raise InputError(f"{path}: line {lineno}: header without a record id")
                attrs = dict(tok.split("=", 1) for tok in fields[1:] if "=" in tok)
                head, parts = (fields[0], attrs, lineno), []
            elif head is None:
                raise InputError(f"{path}: line {lineno}: sequence before the first '>' header")
            else:
                parts.append(line)
    if head is not None:
        yield FastaRecord(head[0], "".join(parts).upper(), head[1], head[2])


def _bad(path: Path, rec: FastaRecord, msg: str) -> InputError:
    return InputError(f"{path}: record {rec.id!r} (line {rec.line}): {msg}")


def _attr(path: Path, rec: FastaRecord, key: str, example: str) -> str:
    if key not in rec.attrs:
        raise _bad(path, rec, f"header lacks {key}= (expected e.g. '{example}')")
    return rec.attrs[key]


def read_orfs(path: str | os.PathLike) -> list[OrfRecord]:
    """Read ``>ID cds=S-E source=NAME`` records (S..E 1-based inclusive, a whole number of codons)."""
    path = Path(path)
    out = []
    for rec in read_fasta_records(path):
        text = _attr(path, rec, "cds", "cds=51-1250")
        try:
            s, e = (int(v) for v in text.split("-"))
        except ValueError:
            raise _bad(path, rec, f"cds={text!r} is not START-END (1-based integers)") from None
        if not 1 <= s <= e <= len(rec.seq):
            raise _bad(path, rec, f"cds={text} outside the sequence (length {len(rec.seq)})")
        if (e - s + 1) % 3:
            raise _bad(path, rec, f"cds={text} length {e - s + 1} is not a multiple of 3")
        out.append(OrfRecord(rec.id, rec.seq, s - 1, e, rec.attrs.get("source", "")))
    return out


def _site(path: Path, rec: FastaRecord, key: str, lo: int, hi: int) -> int | None:
    text = _attr(path, rec, key, f"{key}=120 or {key}=-")
    if text == "-":
        return None
    try:
        v = int(text)
    except ValueError:
        raise _bad(path, rec, f"{key}={text!r} is not a 1-based integer or '-'") from None
    if not lo <= v <= hi:
        raise _bad(path, rec, f"{key}={v} outside the sequence (length {len(rec.seq)})")
    return v - 1


def read_splice(path: str | os.PathLike) -> list[SpliceRecord]:
    """Read ``>ID donor=D acceptor=A source=NAME`` records (1-based first/last intron base, or '-')."""
    path = Path(path)
    out = []
    for rec in read_fasta_records(path):
        n = len(rec.seq)
        donor = _site(path, rec, "donor", 1, n - 1)  # GT needs D and D+1
        acceptor = _site(path, rec, "acceptor", 2, n)  # AG needs A-1 and A
        if donor is not None and acceptor is not None and acceptor <= donor + 1:
            raise _bad(path, rec, f"acceptor={acceptor + 1} is not after donor={donor + 1}")
        out.append(SpliceRecord(rec.id, rec.seq, donor, acceptor, rec.attrs.get("source", "")))
    return out


def read_heldout(path: str | os.PathLike) -> list[FastaRecord]:
    """Read the plain held-out sequences (``>ID source=NAME``)."""
    return list(read_fasta_records(path))


# ---------------------------------------------------------------------------------------------------------
# variant enumeration


def orf_variants(orf: OrfRecord, record: int = 0) -> list[ProbeVariant]:
    """Nonsense (label 1) and synonymous (label 0) SNVs of the CDS, start and stop codons excluded.

    Codons holding a non-ACGT base or already a stop (an in-frame premature stop) are skipped.
    """
    out = []
    seq = orf.seq
    for c0 in range(orf.cds_start + 3, orf.cds_end - 3, 3):
        codon = seq[c0 : c0 + 3]
        aa = CODON_TABLE.get(codon)
        if aa is None or aa == "*":
            continue
        for o in range(3):
            for alt in BASES:
                if alt == codon[o]:
                    continue
                new = codon[:o] + alt + codon[o + 1 :]
                if new in STOP_CODONS:
                    out.append(ProbeVariant(record, c0 + o, codon[o], alt, 1, "nonsense"))
                elif CODON_TABLE[new] == aa:
                    out.append(ProbeVariant(record, c0 + o, codon[o], alt, 0, "synonymous"))
    return out


def splice_variants(rec: SpliceRecord, record: int = 0, near: int = 5, far: int = 20) -> list[ProbeVariant]:
    """Canonical-base SNVs (label 1) and SNVs ``near``..``far`` bp inside the intron (label 0) per site.

    Donor: positives at GT (0-based d, d+1), negatives at d+near..d+far; acceptor: positives at AG (a-1, a),
    negatives at a-far..a-near. A site whose dinucleotide is not GT/AG is skipped entirely. Negatives stay
    inside the intron (and the record), avoid the other site's canonical bases, and need an ACGT REF;
    a position listed by both sites (short introns) is kept once, under the donor.
    """
    seq, d, a = rec.seq, rec.donor, rec.acceptor
    lo = d if d is not None else 0  # intron extent, clipped to the record
    hi = a if a is not None else len(seq) - 1
    canonical = set()
    sites: list[tuple[str, list[int], range]] = []
    if d is not None and seq[d : d + 2] == "GT":
        sites.append(("donor", [d, d + 1], range(d + near, d + far + 1)))
        canonical.update((d, d + 1))
    if a is not None and a >= 1 and seq[a - 1 : a + 1] == "AG":
        sites.append(("acceptor", [a - 1, a], range(a - far, a - near + 1)))
        canonical.update((a - 1, a))
    out: list[ProbeVariant] = []
    seen: set[int] = set()
    for group, pos_sites, neg_sites in sites:
        for p in pos_sites:
            out.extend(ProbeVariant(record, p, seq[p], alt, 1, group) for alt in BASES if alt != seq[p])
        for p in neg_sites:
            if not lo <= p <= hi or p in canonical or p in seen or seq[p] not in BASES:
                continue
            seen.add(p)
            out.extend(ProbeVariant(record, p, seq[p], alt, 0, group) for alt in BASES if alt != seq[p])
    return out


def held_out_introns(splice: Sequence[SpliceRecord], min_len: int = 40, max_len: int = 1000) -> list[str]:
    """Whole introns (GT..AG, ACGT only, ``min_len``..``max_len`` bp) of the splice records that list both sites."""
    out = []
    for r in splice:
        if r.donor is None or r.acceptor is None:
            continue
        intron = r.seq[r.donor : r.acceptor + 1]
        if min_len <= len(intron) <= max_len and intron[:2] == "GT" and intron[-2:] == "AG" and \
                not intron.strip("ACGT"):
            out.append(intron)
    return out


def exon_cuts(start: int, end: int, rng: np.random.Generator, exon_len: tuple[int, int] = (60, 180)) -> list[int]:
    """Positions that cut ``[start, end)`` into exons of ``exon_len`` bp (uniform; the last exon takes what is
    left, at least the minimum): where introns go when coding sequence is put in genomic form."""
    lo, hi = exon_len
    cuts = []
    pos = start + int(rng.integers(lo, hi + 1))
    while pos <= end - lo:
        cuts.append(pos)
        pos += int(rng.integers(lo, hi + 1))
    return cuts


def spliced_orf(orf: OrfRecord, introns: Sequence[str], rng: np.random.Generator,
                exon_len: tuple[int, int] = (60, 180)) -> tuple[str, np.ndarray]:
    """The ORF's mRNA with held-out introns inserted into its CDS, cutting it into exons of ``exon_len`` bp
    (uniform; the last exon takes what is left, at least the minimum): a gene in genomic form whose reading
    frame continues across introns, as at BRCA1's short exons. Returns the sequence and, for every mRNA base,
    its position in it."""
    cuts = exon_cuts(orf.cds_start, orf.cds_end, rng, exon_len)
    parts, offsets, prev, shift = [], np.empty(len(orf.seq), dtype=np.int64), 0, 0
    for cut in [*cuts, len(orf.seq)]:
        parts.append(orf.seq[prev:cut])
        offsets[prev:cut] = np.arange(prev, cut) + shift
        if cut < len(orf.seq):
            intron = introns[int(rng.integers(len(introns)))]
            parts.append(intron)
            shift += len(intron)
        prev = cut
    return "".join(parts), offsets


def subsample(variants: Sequence[ProbeVariant], max_per_class: int | None, seed: int = 0) -> list[ProbeVariant]:
    """At most ``max_per_class`` variants per (group, label), drawn without replacement; order is kept."""
    if max_per_class is None:
        return list(variants)
    classes: dict[tuple[str, int], list[int]] = {}
    for i, v in enumerate(variants):
        classes.setdefault((v.group, v.label), []).append(i)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for key in sorted(classes):
        idx = classes[key]
        if len(idx) > max_per_class:
            idx = rng.choice(idx, size=max_per_class, replace=False).tolist()
        keep.extend(idx)
    return [variants[i] for i in sorted(keep)]


# ---------------------------------------------------------------------------------------------------------
# scoring

#: score_fn(variants, sequences) -> delta per variant (log p(alt) - log p(ref), higher = more benign).
ScoreFn = Callable[[Sequence[ProbeVariant], Sequence[str]], np.ndarray]


@contextlib.contextmanager
def _progress(label: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (only on a terminal); yields ``advance(n)``."""
    if not enabled:
        yield lambda n: None
        return
    from genomod.utils import progress_bar

    with progress_bar(label, remaining=False) as prog:
        task = prog.add_task(label, total=total)
        yield lambda n: prog.advance(task, n)


def default_window(model: HybridModel) -> int:
    """Probe window: the model's training context, capped at 1,024 bp (at least 16)."""
    return max(16, min(MAX_DEFAULT_WINDOW, int(model.config.max_seqlen)))


def _check_mode(mode: str, window: int | None) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown scoring mode {mode!r}; use one of {', '.join(MODES)}")
    if window is not None and window < 16:
        raise ConfigError(f"window must be >= 16 bases, got {window}")


def score_variants(model: HybridModel, variants: Sequence[ProbeVariant], seqs: Sequence[str], mode: str = "fast",
                   rc: bool = True, window: int | None = None, batch_size: int = 8,
                   progress: bool = True) -> np.ndarray:
    """Delta log-likelihood of each SNV on in-memory sequences (fast: at the site; exact: delta_ll_sum; embed:
    delta_embed, the embedding distance from exact mode's forwards).

    ``rc`` averages the forward and reverse-complement strands (as ``VariantScorer`` does in both modes).
    """
    from genomod.scoring.exact import build_site, exact_deltas, rc_deltas
    from genomod.scoring.fast import site_logprobs, snv_score

    _check_mode(mode, window)
    window = int(window) if window is not None else default_window(model)

    def fetch(contig: str, start: int, end: int) -> str:
        return seqs[int(contig)][start:end]

    out = np.full(len(variants), np.nan)
    by_record: dict[int, list[int]] = {}
    for i, v in enumerate(variants):
        by_record.setdefault(v.record, []).append(i)
    with _progress(f"scoring ({mode})", len(variants), progress) as advance:
        for rec, idx in by_record.items():
            size = len(seqs[rec])
            if mode == "fast":
                lps = site_logprobs(model, fetch, str(rec), size, [variants[i].pos for i in idx], window, rc,
                                    batch_size)
                for i in idx:
                    out[i] = snv_score(lps[variants[i].pos], variants[i].ref, variants[i].alt)
                advance(len(idx))
                continue
            sites_at: dict[int, list[int]] = {}
            for i in idx:
                sites_at.setdefault(variants[i].pos, []).append(i)
            positions = list(sites_at)
            step = 4 * batch_size
            embed = mode == "embed"
            for s0 in range(0, len(positions), step):
                chunk = positions[s0 : s0 + step]
                sites = [build_site(fetch, str(rec), p, [(variants[i].ref, variants[i].alt) for i in sites_at[p]],
                                    window, size) for p in chunk]
                deltas = exact_deltas(model, sites, batch_size, embed=embed)
                deltas = deltas[1] if embed else deltas
                if rc:
                    back = rc_deltas(model, sites, batch_size, embed=embed)
                    back = back[1] if embed else back
                    deltas = [0.5 * (f + r) for f, r in zip(deltas, back)]
                for p, d in zip(chunk, deltas):
                    out[sites_at[p]] = d
                advance(sum(len(sites_at[p]) for p in chunk))
    return out


def _scorer(model: HybridModel | None, score_fn: ScoreFn | None, mode: str, rc: bool, window: int | None,
            batch_size: int, progress: bool) -> ScoreFn:
    if score_fn is not None:
        return score_fn
    if model is None:
        raise ConfigError("a probe needs a model or a score_fn")
    _check_mode(mode, window)
    return lambda variants, seqs: score_variants(model, variants, seqs, mode, rc, window, batch_size, progress)


def _run_scorer(scorer: ScoreFn, variants: Sequence[ProbeVariant], seqs: Sequence[str]) -> np.ndarray:
    if not variants:
        return np.zeros(0)
    delta = np.asarray(scorer(variants, seqs), dtype=float).ravel()
    if delta.size != len(variants):
        raise ConfigError(f"score function returned {delta.size} scores for {len(variants)} variants")
    return delta


def _metrics(variants: Sequence[ProbeVariant], delta: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    from genomod.eval.metrics import score_metrics

    y = np.array([v.label for v in variants], dtype=float)
    row: dict[str, Any] = dict(score_metrics(y, -np.asarray(delta, dtype=float), n_boot=n_boot, seed=seed))
    for name, lab in (("mean_delta_pos", 1), ("mean_delta_neg", 0)):
        d = np.asarray(delta, dtype=float)[y == lab]
        d = d[np.isfinite(d)]
        row[name] = float(d.mean()) if d.size else float("nan")
    return row


def _classes(variants: Sequence[ProbeVariant], delta: np.ndarray, names: Mapping[tuple[str, int], str]
             ) -> dict[str, dict[str, Any]]:
    out = {}
    for (group, label), name in names.items():
        d = np.array([x for v, x in zip(variants, delta) if v.group == group and v.label == label], dtype=float)
        ok = d[np.isfinite(d)]
        out[name] = {"n": int(d.size), "mean_delta": float(ok.mean()) if ok.size else float("nan")}
    return out


def _records(items: str | os.PathLike | Sequence[Any], reader: Callable[[Any], list[Any]],
             max_records: int | None) -> list[Any]:
    recs = reader(items) if isinstance(items, (str, os.PathLike)) else list(items)
    return recs[:max_records] if max_records is not None else recs


def _settings(mode: str, rc: bool, window: int | None, model: HybridModel | None, **extra: Any) -> dict[str, Any]:
    if window is None and model is not None:
        window = default_window(model)
    return {"mode": mode, "rc": rc, "window": window, **extra}


# ---------------------------------------------------------------------------------------------------------
# the probes


def nonsense_probe(model: HybridModel | None, orfs: str | os.PathLike | Sequence[OrfRecord], mode: str = "fast",
                   rc: bool = True, window: int | None = None, max_records: int | None = None,
                   max_variants_per_class: int | None = None, seed: int = 0, n_boot: int = 1000,
                   batch_size: int = 8, score_fn: ScoreFn | None = None, progress: bool = True) -> dict[str, Any]:
    """AUROC (-delta, 95% bootstrap CI) of nonsense (positive) vs synonymous SNVs in the ORFs' CDSs."""
    scorer = _scorer(model, score_fn, mode, rc, window, batch_size, progress)
    recs = _records(orfs, read_orfs, max_records)
    if not recs:
        raise InputError(f"{orfs if isinstance(orfs, (str, os.PathLike)) else 'orfs'}: no ORF records")
    variants = [v for i, r in enumerate(recs) for v in orf_variants(r, i)]
    variants = subsample(variants, max_variants_per_class, seed)
    delta = _run_scorer(scorer, variants, [r.seq for r in recs])
    names = {("nonsense", 1): "nonsense", ("synonymous", 0): "synonymous"}
    return {
        "probe": "nonsense", "positive": "nonsense", "negative": "synonymous", "score": "-delta",
        "n_records": len(recs),
        "settings": _settings(mode, rc, window, model, max_records=max_records,
                              max_variants_per_class=max_variants_per_class, seed=seed, n_boot=n_boot),
        "classes": _classes(variants, delta, names),
        "overall": _metrics(variants, delta, n_boot, seed),
    }


def exon_nonsense_probe(model: HybridModel | None, orfs: str | os.PathLike | Sequence[OrfRecord],
                        splice: str | os.PathLike | Sequence[SpliceRecord], mode: str = "fast", rc: bool = True,
                        window: int | None = None, max_records: int | None = None,
                        max_variants_per_class: int | None = None, seed: int = 0, n_boot: int = 1000,
                        batch_size: int = 8, score_fn: ScoreFn | None = None, progress: bool = True,
                        exon_len: tuple[int, int] = (60, 180)) -> dict[str, Any]:
    """The nonsense probe in genomic form: the held-out ORFs cut into short exons by held-out introns
    (``spliced_orf``), nonsense vs synonymous SNVs in the exons. It asks what a variant-effect benchmark in
    genomic DNA asks (finding the frame across introns), which contiguous mRNA does not."""
    scorer = _scorer(model, score_fn, mode, rc, window, batch_size, progress)
    recs = _records(orfs, read_orfs, max_records)
    introns = held_out_introns(_records(splice, read_splice, None))
    if not recs or not introns:
        raise InputError("exon_nonsense probe: needs ORF records and splice records with whole GT..AG introns")
    rng = np.random.default_rng(seed)
    seqs, variants = [], []
    for i, r in enumerate(recs):
        gene, offsets = spliced_orf(r, introns, rng, exon_len)
        seqs.append(gene)
        variants += [replace(v, pos=int(offsets[v.pos])) for v in orf_variants(r, i)]
    variants = subsample(variants, max_variants_per_class, seed)
    delta = _run_scorer(scorer, variants, seqs)
    names = {("nonsense", 1): "nonsense", ("synonymous", 0): "synonymous"}
    return {
        "probe": "exon_nonsense", "positive": "nonsense", "negative": "synonymous", "score": "-delta",
        "n_records": len(recs), "n_introns": len(introns),
        "settings": _settings(mode, rc, window, model, max_records=max_records,
                              max_variants_per_class=max_variants_per_class, seed=seed, n_boot=n_boot,
                              exon_len=list(exon_len)),
        "classes": _classes(variants, delta, names),
        "overall": _metrics(variants, delta, n_boot, seed),
    }


def splice_probe(model: HybridModel | None, splice: str | os.PathLike | Sequence[SpliceRecord], mode: str = "fast",
                 rc: bool = True, window: int | None = None, max_records: int | None = None,
                 max_variants_per_class: int | None = None, seed: int = 0, n_boot: int = 1000,
                 batch_size: int = 8, score_fn: ScoreFn | None = None, progress: bool = True,
                 near: int = 5, far: int = 20) -> dict[str, Any]:
    """AUROC (-delta) of canonical GT/AG SNVs vs SNVs ``near``..``far`` bp inside the intron, overall and per site type.

    ``max_variants_per_class`` caps each of donor/acceptor x canonical/intronic separately.
    """
    scorer = _scorer(model, score_fn, mode, rc, window, batch_size, progress)
    recs = _records(splice, read_splice, max_records)
    if not recs:
        raise InputError(f"{splice if isinstance(splice, (str, os.PathLike)) else 'splice'}: no splice records")
    sites = {"donor": [0, 0], "acceptor": [0, 0]}  # [listed, non-canonical (skipped)]
    for r in recs:
        if r.donor is not None:
            sites["donor"][0] += 1
            sites["donor"][1] += r.seq[r.donor : r.donor + 2] != "GT"
        if r.acceptor is not None:
            sites["acceptor"][0] += 1
            sites["acceptor"][1] += r.seq[r.acceptor - 1 : r.acceptor + 1] != "AG"
    variants = [v for i, r in enumerate(recs) for v in splice_variants(r, i, near, far)]
    variants = subsample(variants, max_variants_per_class, seed)
    delta = _run_scorer(scorer, variants, [r.seq for r in recs])
    names = {(g, lab): f"{g}_{'canonical' if lab else 'intronic'}" for g in ("donor", "acceptor") for lab in (1, 0)}
    by_site = {}
    for g in ("donor", "acceptor"):
        idx = [i for i, v in enumerate(variants) if v.group == g]
        by_site[g] = {"n_sites": sites[g][0] - sites[g][1], "n_sites_skipped_noncanonical": sites[g][1],
                      **_metrics([variants[i] for i in idx], delta[idx], n_boot, seed)}
    return {
        "probe": "splice", "positive": "canonical GT/AG base", "negative": f"intron +{near}..+{far} bp",
        "score": "-delta", "n_records": len(recs),
        "settings": _settings(mode, rc, window, model, max_records=max_records,
                              max_variants_per_class=max_variants_per_class, seed=seed, n_boot=n_boot,
                              near=near, far=far),
        "classes": _classes(variants, delta, names),
        "overall": _metrics(variants, delta, n_boot, seed),
        "by_site": by_site,
    }


# ---------------------------------------------------------------------------------------------------------
# Markov baselines


def _base_index(seq: str | bytes | np.ndarray) -> np.ndarray:
    """Base indices (A0 C1 G2 T3, -1 otherwise) of a string or a genomod token array (ASCII ids)."""
    if isinstance(seq, str):
        seq = seq.encode("ascii", errors="replace")
    if isinstance(seq, (bytes, bytearray)):
        return _BYTE_INDEX[np.frombuffer(seq, dtype=np.uint8)].astype(np.int64)
    arr = np.asarray(seq).astype(np.int64, copy=False)
    out = np.full(arr.shape, -1, dtype=np.int64)
    ok = (arr >= 0) & (arr < 256)
    out[ok] = _BYTE_INDEX[arr[ok]]
    return out


def _runs(x: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """Length of the all-ACGT run ending at each position (0 at non-ACGT); runs restart at ``starts``."""
    idx = np.arange(x.size)
    brk = np.where(x < 0, idx, -1)
    if starts is not None and starts.size:
        brk[starts] = np.maximum(brk[starts], starts - 1)
    return idx - np.maximum.accumulate(brk)


def _contexts(x: np.ndarray, order: int) -> np.ndarray:
    """Context index of the ``order`` bases before each position along the last axis (most distant first).

    Positions with fewer than ``order`` bases before them, or a non-ACGT base among those, get meaningless
    values: callers mask them with :func:`_runs`.
    """
    xs = np.where(x < 0, 0, x)
    ctx = np.zeros(x.shape, dtype=np.int64)
    for j in range(1, order + 1):
        ctx[..., j:] += xs[..., :-j] * (4 ** (j - 1))
    return ctx


def fit_markov_counts(sequences: Iterable[str | bytes | np.ndarray] | np.ndarray, max_order: int,
                      chunk: int = 1 << 22) -> dict[int, np.ndarray]:
    """Counts ``{K: (4**K, 4) int64}`` of next base after each K-mer, K = 0..max_order (all-ACGT only).

    ``sequences``: strings, genomod token arrays (ASCII ids, e.g. shard rows) or a 2-D token array whose rows
    are separate sequences; contexts never cross sequence or row boundaries.
    """
    if max_order < 0 or max_order > 12:
        raise ConfigError(f"max_order must be in 0..12, got {max_order}")
    counts = {k: np.zeros(4 ** (k + 1), dtype=np.int64) for k in range(max_order + 1)}
    if isinstance(sequences, np.ndarray) and sequences.ndim == 2:
        rows = max(1, chunk // max(1, sequences.shape[1]))
        parts: Iterable[tuple[np.ndarray, np.ndarray | None]] = (
            (_base_index(sequences[r : r + rows]).ravel(),
             np.arange(0, min(rows, sequences.shape[0] - r) * sequences.shape[1], sequences.shape[1]))
            for r in range(0, sequences.shape[0], rows)
        )
        pieces = ((x, st, 0) for x, st in parts)
    else:
        pieces = (p for s in sequences for p in _chunks(_base_index(s), max_order, chunk))
    for x, starts, skip in pieces:
        run = _runs(x, starts)
        for k in range(max_order + 1):
            ctx = _contexts(x, k)
            ok = run >= k + 1
            ok[:skip] = False
            counts[k] += np.bincount((ctx * 4 + x)[ok], minlength=4 ** (k + 1))
    return {k: c.reshape(4**k, 4) for k, c in counts.items()}


def _chunks(x: np.ndarray, max_order: int, chunk: int) -> Iterator[tuple[np.ndarray, None, int]]:
    """Overlapping pieces of a long sequence: each carries ``max_order`` bases of context it does not count."""
    for s in range(0, max(1, x.size), chunk):
        lo = max(0, s - max_order)
        yield x[lo : s + chunk], None, s - lo


def save_markov_counts(counts: Mapping[int, np.ndarray], path: str | os.PathLike) -> Path:
    """Write counts as ``order_K`` arrays of an .npz file (atomically); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **{f"order_{k}": np.asarray(v, dtype=np.int64) for k, v in counts.items()})
    return path


def load_markov_counts(path: str | os.PathLike) -> dict[int, np.ndarray]:
    """Read and check ``order_K`` arrays (K = 0..Kmax, shape (4**K, 4)) of a markov_counts.npz file."""
    path = check_readable(path, "Markov counts")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None
    counts: dict[int, np.ndarray] = {}
    for name, arr in arrays.items():
        if not name.startswith("order_") or not name[6:].isdigit():
            raise InputError(f"{path}: unexpected array {name!r} (expected order_0, order_1, ...)")
        k = int(name[6:])
        if arr.shape != (4**k, 4) or not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any():
            raise InputError(f"{path}: {name} must be non-negative integers of shape {(4**k, 4)}, "
                             f"got {arr.dtype} {arr.shape}")
        counts[k] = arr.astype(np.int64)
    if not counts or sorted(counts) != list(range(max(counts) + 1)):
        raise InputError(f"{path}: orders {sorted(counts)} are not 0..K without gaps")
    return counts


def markov_logprobs(counts: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """(4**K, 4) natural-log next-base probabilities with add-``alpha`` smoothing."""
    c = np.asarray(counts, dtype=np.float64) + alpha
    return np.log(c / c.sum(axis=1, keepdims=True))


# ---------------------------------------------------------------------------------------------------------
# perplexity


def _windows(seqs: Sequence[str], window: int, skip: int) -> list[tuple[int, int, int]]:
    """(record, start, end) of non-overlapping windows; tails shorter than ``skip + 1`` bases are dropped."""
    out = []
    for r, s in enumerate(seqs):
        for start in range(0, len(s), window):
            end = min(len(s), start + window)
            if end - start > skip:
                out.append((r, start, end))
    return out


def perplexity_probe(model: HybridModel | None, heldout: str | os.PathLike | Sequence[FastaRecord | str],
                     markov: str | os.PathLike | Mapping[int, np.ndarray] | None = None,
                     window: int | None = None, alpha: float = 1.0, max_records: int | None = None,
                     max_windows: int | None = None, batch_size: int = 8, progress: bool = True,
                     logprob_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, Any]:
    """Per-nucleotide NLL (nats) and perplexity of the model and of every Markov order, on the same targets.

    Sequences are cut into non-overlapping windows of ``window`` bases (tail windows kept), each scored on its
    own (forward strand). Targets: window offsets ``i >= max(1, Kmax)`` whose base and ``Kmax`` preceding
    bases are all ACGT — the first Kmax bases of every window are *skipped* (not backed off to lower
    orders), so the model and every Markov order are scored on exactly the same positions.
    ``logprob_fn(tokens (B, L)) -> (B, L)`` log p(x_t | x_<t) replaces the model (tests).
    """
    window, orders = _perplexity_settings(model, logprob_fn, markov, window, alpha)
    kmax = max(orders) if orders else 0
    skip = max(1, kmax)
    recs = _records(heldout, read_heldout, max_records)
    seqs = [r if isinstance(r, str) else r.seq for r in recs]
    if not seqs:
        raise InputError(f"{heldout if isinstance(heldout, (str, os.PathLike)) else 'heldout'}: no sequences")
    wins = _windows(seqs, window, skip)[:max_windows]
    if logprob_fn is None:
        assert model is not None
        logprob_fn = _model_logprob_fn(model)
    from genomod.tokenizer import encode

    tables = {k: markov_logprobs(c, alpha) for k, c in orders.items()}
    model_sum, n_targets = 0.0, 0
    markov_sum = dict.fromkeys(orders, 0.0)
    by_len: dict[int, list[tuple[int, int, int]]] = {}
    for w in wins:
        by_len.setdefault(w[2] - w[1], []).append(w)
    with _progress("perplexity", len(wins), progress) as advance:
        for group in by_len.values():
            for b0 in range(0, len(group), batch_size):
                batch = group[b0 : b0 + batch_size]
                texts = [seqs[r][s:e] for r, s, e in batch]
                x = np.stack([_base_index(t) for t in texts])  # (B, L)
                run = np.stack([_runs(row) for row in x])
                mask = run >= kmax + 1
                mask[:, :skip] = False
                if not mask.any():
                    advance(len(batch))
                    continue
                lp = np.asarray(logprob_fn(np.stack([encode(t) for t in texts])), dtype=np.float64)
                if lp.shape != x.shape:
                    raise ConfigError(f"log-prob function returned shape {lp.shape}, expected {x.shape}")
                model_sum += float(lp[mask].sum())
                n_targets += int(mask.sum())
                for k, table in tables.items():
                    ctx = _contexts(x, k)
                    markov_sum[k] += float(table[ctx[mask], x[mask]].sum())
                advance(len(batch))
    if n_targets == 0:
        raise InputError("perplexity probe: no scorable (all-ACGT) positions in the held-out sequences")

    def entry(total: float) -> dict[str, float]:
        nll = -total / n_targets
        return {"nll": nll, "perplexity": math.exp(nll)}

    result: dict[str, Any] = {
        "probe": "perplexity", "n_records": len(seqs), "n_windows": len(wins), "n_targets": n_targets,
        "settings": {"window": window, "alpha": alpha, "skip_first": skip, "max_records": max_records,
                     "max_windows": max_windows, "strand": "forward"},
        "model": entry(model_sum),
        "markov": [{"order": k, **entry(markov_sum[k])} for k in sorted(orders)],
    }
    if orders:
        best = min(result["markov"], key=lambda m: m["nll"])
        result.update(best_markov_order=best["order"], best_markov_perplexity=best["perplexity"],
                      model_beats_best_markov=bool(result["model"]["nll"] < best["nll"]))
    return result


def _perplexity_settings(model: HybridModel | None, logprob_fn: Callable[[np.ndarray], np.ndarray] | None,
                         markov: str | os.PathLike | Mapping[int, np.ndarray] | None, window: int | None,
                         alpha: float) -> tuple[int, dict[int, np.ndarray]]:
    """Checked (window, Markov counts by order) of ``perplexity_probe``; ConfigError naming a bad setting."""
    if model is None and logprob_fn is None:
        raise ConfigError("perplexity_probe needs a model or a logprob_fn")
    if window is None:
        window = default_window(model) if model is not None else MAX_DEFAULT_WINDOW
    if window < 2:
        raise ConfigError(f"window must be >= 2 bases, got {window}")
    if alpha <= 0:
        raise ConfigError(f"alpha must be > 0, got {alpha}")
    if isinstance(markov, (str, os.PathLike)):
        markov = load_markov_counts(markov)
    orders = dict(markov or {})
    kmax = max(orders) if orders else 0
    if max(1, kmax) >= window:
        raise ConfigError(f"window {window} must exceed the largest Markov order {kmax}")
    return window, orders


def _model_logprob_fn(model: HybridModel) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def fn(tokens: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.asarray(tokens, dtype=np.int64)).to(model.device)
        return model.log_likelihoods(t).double().cpu().numpy()

    return fn


# ---------------------------------------------------------------------------------------------------------
# everything


def probe_file(probe_dir: str | os.PathLike, name: str) -> Path | None:
    """``probe_dir/name`` or its non-gzipped twin (``orfs.fa`` for ``orfs.fa.gz``) when present, else None."""
    d = Path(probe_dir)
    for cand in (name, name[:-3] if name.endswith(".gz") else name):
        if (d / cand).is_file():
            return d / cand
    return None


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj


def finetuned_score_fn(finetuned: FinetunedVariantModel, backbone: HybridModel, batch_size: int = 8) -> ScoreFn:
    """Probe scores from a fine-tuned variant model: delta = -P(positive class) (``ft``), so that the probes'
    ``-delta`` ranks what the head calls damaging first. Asks whether a head trained on one gene's assay learned
    the concepts (stop codons, splice sites) or only its training loci."""

    def score(variants: Sequence[ProbeVariant], seqs: Sequence[str]) -> np.ndarray:
        def fetch(contig: str, start: int, end: int) -> str:
            return seqs[int(contig)][start:end]

        lengths = {str(i): len(s) for i, s in enumerate(seqs)}
        sites = [(str(v.record), v.pos, v.ref, v.alt) for v in variants]
        return -finetuned.predict(backbone, fetch, lengths, sites, batch_size)

    return score


def run_probes(model: HybridModel | str | os.PathLike, probe_dir: str | os.PathLike, mode: str = "fast",
               rc: bool = True, window: int | None = None, max_records: int | None = None,
               max_variants_per_class: int | None = None, seed: int = 0, n_boot: int = 1000,
               batch_size: int = 8, alpha: float = 1.0, device: str = "cpu",
               progress: bool = True) -> dict[str, Any]:
    """Run every probe whose file is in ``probe_dir``; JSON-able dict (NaN -> None) with settings and skips.

    ``model`` may be a fine-tuned variant-effect folder (``genomod finetune``): the variant probes then rank by
    its head's P(positive) (``finetuned_score_fn``; mode, rc and window are the head's) and perplexity is skipped."""
    from genomod.model.hybrid import HybridModel

    d = Path(probe_dir)
    if not d.is_dir():
        raise InputError(f"{d}: probe folder not found")
    files = {name: probe_file(d, fname) for name, fname in PROBE_FILES.items()}
    if not any(files.values()):
        raise InputError(f"{d}: no probe files (expected {', '.join(PROBE_FILES.values())})")
    _check_mode(mode, window)
    model_name = str(model) if not isinstance(model, HybridModel) else getattr(model.config, "name", "custom")
    finetuned = None
    if not isinstance(model, HybridModel):
        from genomod.checkpoint import load_model
        from genomod.scoring.finetuned import finetuned_variant_model

        finetuned = finetuned_variant_model(model)
        model = load_model(finetuned.backbone if finetuned is not None else model, device=device)
    score_fn = None
    if finetuned is not None:  # the probes ask the fine-tuned head, not the language model
        score_fn = finetuned_score_fn(finetuned, model, batch_size)
        mode, rc, window = "finetuned", False, finetuned.window
    win = int(window) if window is not None else default_window(model)
    common = dict(mode=mode, rc=rc, window=win, max_records=max_records,
                  max_variants_per_class=max_variants_per_class, seed=seed, n_boot=n_boot,
                  batch_size=batch_size, progress=progress, score_fn=score_fn)
    probes: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    # each file read once: the ORFs and splice records serve two probes each
    orfs = read_orfs(files["nonsense"]) if files["nonsense"] is not None else None
    splice = read_splice(files["splice"]) if files["splice"] is not None else None
    for name, path in files.items():
        if path is None:
            skipped[name] = f"{PROBE_FILES[name]} not in {d}"
            continue
        if name == "nonsense":
            probes[name] = nonsense_probe(model, orfs, **common)
            if splice is not None:  # the same ORFs in genomic form, cut by the held-out introns
                probes["exon_nonsense"] = exon_nonsense_probe(model, orfs, splice, **common)
        elif name == "splice":
            probes[name] = splice_probe(model, splice, **common)
        elif finetuned is not None:
            skipped[name] = "a fine-tuned variant model: its head scores variants; perplexity is a language-model probe"
        else:
            markov = probe_file(d, MARKOV_FILE)
            probes[name] = perplexity_probe(model, path, markov, window=win, alpha=alpha, max_records=max_records,
                                            batch_size=batch_size, progress=progress)
            if markov is None:
                probes[name]["note"] = f"{MARKOV_FILE} not in {d}: no Markov baseline"
    settings = {"model": model_name, "probe_dir": str(d),
                **{k: v for k, v in common.items() if k not in ("progress", "score_fn")}, "alpha": alpha}
    if finetuned is not None:
        settings["score"] = "-delta = P(positive class) of the fine-tuned head"
    return _json_safe({"settings": settings, "probes": probes, "skipped": skipped})
