"""Build a weighted multi-source pretraining mixture from a declarative recipe (YAML) into HDF5 shards.

    python -m data_prep.make_mixture --recipe recipes/default_model/mixture.yaml --data-root ../shared/data \
        --out work_local/mixture

The recipe lists sources (``name``, ``path`` under ``--data-root``, ``kind``, ``weight``; optional ``softmask``,
``record_fraction``, ``probe``). Per source, in order:

1. **Benchmark exclusion**: records whose header matches ``exclusion.name_pattern`` are dropped; every record
   is screened against the canonical 31-mers of the benchmark locus FASTAs (``exclusion.loci``) and dropped when
   at least ``exclusion.max_fraction`` of its 31-mer positions carry a k-mer found there. Counts go into the manifest.
2. **Hold-outs by record** (a seeded hash of source + record id, before any window is cut): a fraction of the
   records of probe-eligible sources goes to the biology probes (``probes/``: ``orfs.fa.gz``, ``splice.fa.gz``),
   a further fraction to validation. Long records are cut into ``segment``-bp pieces first, so that a genome
   is split by blocks, not as one record.
3. **Windows**: records are packed end to end into rows of ``window`` tokens, separated by the EOD token (0);
   the soft-mask (lowercase) track is kept beside the tokens (``softmask``, uint8), unless ``softmask: false``.
4. **Weights**: ``weight`` is the expected number of times each row of the source is used per pass over the
   mixture; rows are kept with probability ``weight`` (< 1) or repeated (> 1), deterministically by seed.

Optional ``junction_flank`` (bases, default 0 = off): in the records of sources with a ``splice_layout``, the
``junction_flank`` bases on each side of the annotated donor and acceptor junctions get the value 2 in the
``softmask`` track, which training weighs with ``data.junction_weight`` (genomod.train.data.loss_weights), so
that the rare positions where a splice site decides what follows count more in the loss.

Optional ``splicing`` (see ``Splicing``): a fraction of the *training* records of coding sources is put in
genomic form, cut into short exons with whole *training* introns of other sources inserted between them, so that
the model sees reading frames that continue across introns (as at BRCA1's short exons), not only mRNA.

Outputs: ``OUT/train.h5`` and ``OUT/val.h5`` (``tokens`` (N, window) uint8, ``softmask`` (N, window) uint8,
``index`` (N, 3) int64 = source, record ordinal, offset), ``OUT/manifest.json``, ``OUT/probes/``. Reverse-
complement augmentation and the per-base loss weights are applied at training time (genomod.train.data).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from genomod import __version__
from genomod.errors import ConfigError, GenomodError, InputError
from genomod.eval.probes import exon_cuts
from genomod.tokenizer import EOD_ID, TOKENIZER_VERSION, TRACK_JUNCTION, encode
from genomod.utils import file_digest, open_decompressed

FORMAT = "genomod-mixture-1"
KINDS = ("cds", "mrna", "exon-intron", "splice-window", "genomic", "gene", "windows", "noncoding")
PROBE_KINDS = {"orfs": ("mrna",), "splice": ("exon-intron", "splice-window")}
_TWO_BIT = np.full(256, 255, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _TWO_BIT[_b] = _i
    _TWO_BIT[ord(chr(_b).lower())] = _i


# ---------------------------------------------------------------------------------------------- recipe
@dataclass
class Source:
    """One FASTA source of the mixture."""

    name: str
    path: str
    kind: str
    weight: float
    softmask: bool = True
    record_fraction: float = 1.0  # keep this fraction of records (hash), e.g. to thin 1M short windows
    probe: bool = True  # may give records to the probes when its kind is probe-eligible
    splice_layout: str | None = None  # how to find donor/acceptor: header-intron, hs3d, gue
    licence: str | None = None  # as stated by the source (recorded in the manifest and the model card)


@dataclass
class Splicing:
    """Coding records in genomic form: with probability ``fraction`` a training record of one of ``sources`` is
    cut into exons of ``exon_len`` bp and a random whole intron (``intron_len`` bp, GT..AG) from the training
    records of ``introns`` is inserted at each cut. An intron source gives the slice ``intron=D-A`` of its header
    (exon-intron records) or the whole record when it is itself an intron."""

    sources: list[str]
    introns: list[str]
    fraction: float = 0.5
    exon_len: tuple[int, int] = (60, 180)
    intron_len: tuple[int, int] = (40, 2000)


@dataclass
class Recipe:
    """Parsed mixture recipe (see module docstring)."""

    window: int
    sources: list[Source]
    seed: int = 0
    val_fraction: float = 0.01
    probe_fraction: float = 0.03
    # per source: at most this many usable probe records (the rest of the held-out records is simply not used)
    probe_max_records: dict[str, int] = field(default_factory=lambda: {"orfs": 150, "splice": 600})
    heldout_bases: int = 400_000
    segment: int = 50_000
    min_orf: int = 300
    exclusion: dict[str, Any] = field(default_factory=dict)
    splicing: Splicing | None = None
    junction_flank: int = 0  # bases marked (track value 2) on each side of annotated splice junctions


def _parse_splicing(raw: Any, names: set[str], need: Callable[[bool, str, str], None]) -> Splicing:
    need(isinstance(raw, dict), "splicing", "a mapping (sources, introns, fraction, exon_len, intron_len)")
    bad = sorted(set(raw) - set(Splicing.__dataclass_fields__))
    need(not bad, "splicing", f"unknown key(s) {', '.join(bad)}")
    for key in ("sources", "introns"):
        v = raw.get(key)
        need(isinstance(v, list) and v and all(isinstance(x, str) for x in v), f"splicing.{key}",
             "a non-empty list of source names")
        unknown = sorted(set(v) - names)
        need(not unknown, f"splicing.{key}", f"unknown source(s) {', '.join(unknown)}")
    defaults = {name: f.default for name, f in Splicing.__dataclass_fields__.items()}
    frac = raw.get("fraction", defaults["fraction"])
    need(isinstance(frac, (int, float)) and not isinstance(frac, bool) and 0 < frac <= 1, "splicing.fraction",
         f"in (0, 1], got {frac!r}")
    spans = {}
    for key in ("exon_len", "intron_len"):
        v = raw.get(key, defaults[key])
        need(isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v)
             and 1 <= v[0] <= v[1], f"splicing.{key}", f"[min, max] integers with 1 <= min <= max, got {v!r}")
        spans[key] = (int(v[0]), int(v[1]))
    return Splicing(sources=list(raw["sources"]), introns=list(raw["introns"]), fraction=float(frac), **spans)


def parse_recipe(doc: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate a recipe mapping (ConfigError naming the key) and return a Recipe."""

    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{source}: {key}: {msg}")

    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping at top level")
    known = {"window", "sources", "seed", "val_fraction", "probe_fraction", "probe_max_records", "heldout_bases",
             "segment", "min_orf", "exclusion", "splicing", "junction_flank"}
    unknown = sorted(set(doc) - known)
    need(not unknown, "top level", f"unknown key(s) {', '.join(unknown)}")
    window = doc.get("window")
    need(isinstance(window, int) and window >= 16, "window", f"an integer >= 16, got {window!r}")
    raw = doc.get("sources")
    need(isinstance(raw, list) and len(raw) > 0, "sources", "a non-empty list")
    sources, names = [], set()
    skeys = {f for f in Source.__dataclass_fields__}
    for i, s in enumerate(raw):
        key = f"sources[{i}]"
        need(isinstance(s, dict), key, "expected a mapping")
        bad = sorted(set(s) - skeys)
        need(not bad, key, f"unknown key(s) {', '.join(bad)}")
        for req in ("name", "path", "kind", "weight"):
            need(req in s, f"{key}.{req}", "missing")
        need(s["kind"] in KINDS, f"{key}.kind", f"one of {', '.join(KINDS)}, got {s['kind']!r}")
        w = s["weight"]
        need(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0, f"{key}.weight",
             f"a number >= 0, got {w!r}")
        rf = s.get("record_fraction", 1.0)
        need(isinstance(rf, (int, float)) and 0 < rf <= 1, f"{key}.record_fraction", f"in (0, 1], got {rf!r}")
        need(s["name"] not in names, f"{key}.name", f"duplicate source name {s['name']!r}")
        layout = s.get("splice_layout")
        need(layout in (None, "header-intron", "hs3d", "gue"), f"{key}.splice_layout",
             f"header-intron, hs3d or gue, got {layout!r}")
        names.add(s["name"])
        sources.append(Source(**{**s, "weight": float(w), "record_fraction": float(rf)}))
    r = Recipe(window=window, sources=sources)
    for key in ("seed", "segment", "min_orf", "heldout_bases", "junction_flank"):
        if key in doc:
            need(isinstance(doc[key], int) and doc[key] >= 0, key, f"a non-negative integer, got {doc[key]!r}")
            setattr(r, key, doc[key])
    for key in ("val_fraction", "probe_fraction"):
        if key in doc:
            v = doc[key]
            need(isinstance(v, (int, float)) and 0 <= v < 0.5, key, f"a fraction in [0, 0.5), got {v!r}")
            setattr(r, key, float(v))
    if "probe_max_records" in doc:
        need(isinstance(doc["probe_max_records"], dict), "probe_max_records", "a mapping orfs/splice -> int")
        r.probe_max_records.update(doc["probe_max_records"])
    ex = doc.get("exclusion") or {}
    need(isinstance(ex, dict), "exclusion", "a mapping")
    r.exclusion = {"name_pattern": ex.get("name_pattern", "BRCA1"), "kmer": int(ex.get("kmer", 31)),
                   "max_fraction": float(ex.get("max_fraction", 0.05)), "loci": list(ex.get("loci", []))}
    need(1 <= r.exclusion["kmer"] <= 32, "exclusion.kmer", "between 1 and 32")
    if doc.get("splicing") is not None:
        r.splicing = _parse_splicing(doc["splicing"], names, need)
    return r


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a YAML recipe file (or a derived one: ``base`` + ``weights``)."""
    return parse_recipe(load_recipe_doc(Path(path)), str(path))


def _derive(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """A derived recipe: ``base`` (a recipe file, relative to this one) with ``weights`` {source: weight}
    replacing the base's weights and any other top-level key replacing the base's; hold-outs stay identical
    when ``seed`` is kept, so a later training stage re-weights the same sources over the same splits."""
    base = load_recipe_doc(path.parent / str(doc["base"]))
    overrides = doc.get("weights") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}: weights: a mapping source name -> weight")
    names = {s.get("name") for s in base.get("sources", [])}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"{path}: weights: unknown source(s) {', '.join(map(str, unknown))}")
    out = {**base, **{k: v for k, v in doc.items() if k not in ("base", "weights")}}
    out["sources"] = [{**s, "weight": overrides.get(s["name"], s["weight"])} for s in base["sources"]]
    return out


def load_recipe_doc(path: Path) -> dict[str, Any]:
    """The YAML mapping of a recipe file, derived recipes resolved (ConfigError naming the file)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: recipe not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{path}: cannot parse recipe (line {mark.line + 1 if mark else '?'})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return _derive(doc, path) if "base" in doc else doc


# ---------------------------------------------------------------------------------------------- records
def read_fasta(path: Path) -> Iterator[tuple[str, bytes]]:
    """(header without '>', sequence bytes) per record of a plain or gzip FASTA."""
    header, chunks = None, []
    with open_decompressed(path) as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line.startswith(b">"):
                if header is not None:
                    yield header, b"".join(chunks)
                header, chunks = line[1:].decode("utf-8", "replace"), []
            elif header is not None:
                chunks.append(line.strip())
    if header is not None:
        yield header, b"".join(chunks)


def record_unit(seed: int, *parts: object) -> float:
    """A deterministic number in [0, 1) from the seed and the given parts (hash-based hold-outs)."""
    digest = hashlib.blake2b("|".join(str(p) for p in (seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


# ---------------------------------------------------------------------------------------------- k-mer screen
def _kmer_codes(seq: bytes, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical k-mer code (uint64, 2 bits per base) at every start of ``seq``, and whether it is all ACGT."""
    b = _TWO_BIT[np.frombuffer(seq, dtype=np.uint8)]
    n = len(b) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    ok = np.convolve((b == 255).astype(np.int64), np.ones(k, dtype=np.int64), mode="valid") == 0
    v = np.where(b == 255, 0, b).astype(np.uint64)
    fwd = np.zeros(n, dtype=np.uint64)
    rev = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        fwd = (fwd << np.uint64(2)) | v[j : j + n]
        rev = rev | ((np.uint64(3) - v[j : j + n]) << np.uint64(2 * j))
    return np.minimum(fwd, rev), ok


class KmerScreen:
    """Fraction of a record's ACGT k-mer positions whose canonical k-mer occurs in the benchmark loci."""

    def __init__(self, locus_fastas: list[Path], k: int) -> None:
        self.k = k
        codes = []
        for p in locus_fastas:
            for _, seq in read_fasta(p):
                c, ok = _kmer_codes(seq, k)
                codes.append(c[ok])
        self.table = np.unique(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.uint64)

    def fractions(self, seqs: list[bytes], batch_bases: int = 4_000_000) -> np.ndarray:
        """Screen many records at once: they are joined with N separators so no k-mer spans two records."""
        out = np.zeros(len(seqs), dtype=np.float64)
        i = 0
        while i < len(seqs):
            j, total = i, 0
            while j < len(seqs) and (total == 0 or total + len(seqs[j]) <= batch_bases):
                total += len(seqs[j]) + 1
                j += 1
            joined = b"N".join(seqs[i:j]) + b"N"
            codes, ok = _kmer_codes(joined, self.k)
            if len(codes) and len(self.table):
                idx = np.searchsorted(self.table, codes).clip(max=len(self.table) - 1)
                hit = (self.table[idx] == codes) & ok
            else:
                hit = np.zeros(len(codes), dtype=bool)
            starts = np.cumsum([0] + [len(s) + 1 for s in seqs[i:j]])[:-1]
            if len(codes):
                n_hit = np.add.reduceat(np.append(hit, False).astype(np.int64), np.minimum(starts, len(codes)))
                n_ok = np.add.reduceat(np.append(ok, False).astype(np.int64), np.minimum(starts, len(codes)))
                out[i:j] = np.where(n_ok > 0, n_hit / np.maximum(n_ok, 1), 0.0)
            i = j
        return out


# ---------------------------------------------------------------------------------------------- probes
STOPS = (b"TAA", b"TAG", b"TGA")


def longest_orf(seq: bytes, min_len: int) -> tuple[int, int] | None:
    """1-based inclusive (start, end) of the longest ATG..stop ORF on the given strand, or None."""
    s = seq.upper()
    best: tuple[int, int] | None = None
    for frame in range(3):
        start = None
        for i in range(frame, len(s) - 2, 3):
            codon = s[i : i + 3]
            if start is None and codon == b"ATG":
                start = i
            elif start is not None and codon in STOPS:
                if i + 3 - start >= min_len and (best is None or i + 3 - start > best[1] - best[0] + 1):
                    best = (start + 1, i + 3)
                start = None
    return best


def splice_sites(header: str, seq: bytes, layout: str | None) -> tuple[int | None, int | None]:
    """(donor, acceptor) 1-based: first intron base (G of GT) and last intron base (G of AG), checked."""
    donor = acceptor = None
    if layout == "header-intron":
        m = re.search(r"intron=(\d+)-(\d+)", header)
        if m:
            donor, acceptor = int(m.group(1)), int(m.group(2))
    elif layout == "hs3d":
        donor = 71
    elif layout == "gue":
        m = re.search(r"label=(\d)", header)
        if m and m.group(1) == "1":
            donor = len(seq) // 2 + 1
        elif m and m.group(1) == "0":
            acceptor = len(seq) // 2
    s = seq.upper()
    if donor is not None and s[donor - 1 : donor + 1] != b"GT":
        donor = None
    if acceptor is not None and (acceptor < 2 or s[acceptor - 2 : acceptor] != b"AG"):
        acceptor = None
    return donor, acceptor


def mark_junctions(mask: np.ndarray, header: str, seq: bytes, layout: str, flank: int) -> int:
    """Set ``mask`` to ``TRACK_JUNCTION`` (2) on the ``flank`` bases each side of the record's donor and acceptor
    junctions (the exon|intron and intron|exon boundaries of ``splice_sites``); returns how many bases were marked."""
    donor, acceptor = splice_sites(header, seq, layout)
    # junction = index of the first base after the boundary: the intron's first base, the exon's first base
    cuts = [j for j in (None if donor is None else donor - 1, acceptor) if j is not None]
    before = int((mask == TRACK_JUNCTION).sum())
    for j in cuts:
        mask[max(0, j - flank) : min(len(mask), j + flank)] = TRACK_JUNCTION
    return int((mask == TRACK_JUNCTION).sum()) - before


class _ProbeWriter:
    def __init__(self, path: Path) -> None:
        self.fh = gzip.open(path, "wt")
        self.count = 0

    def write(self, rid: str, attrs: str, seq: bytes) -> None:
        self.fh.write(f">{rid} {attrs}\n")
        s = seq.upper().decode()
        for i in range(0, len(s), 80):
            self.fh.write(s[i : i + 80] + "\n")
        self.count += 1

    def close(self) -> None:
        self.fh.close()


# ---------------------------------------------------------------------------------------------- splicing
def record_introns(header: str, seq: bytes, layout: str | None) -> list[bytes]:
    """Whole introns of a record: the ``intron=D-A`` slice of an exon-intron record, else the record itself when it
    reads GT..AG (an intron file)."""
    if layout == "header-intron":
        donor, acceptor = splice_sites(header, seq, layout)
        return [seq[donor - 1 : acceptor]] if donor is not None and acceptor is not None and acceptor > donor else []
    s = seq.upper()
    return [seq] if len(s) >= 4 and s[:2] == b"GT" and s[-2:] == b"AG" else []


def _training_record(recipe: Recipe, src: Source, rid: str, length: int) -> bool:
    """Whether a record is certainly training data: short enough to be split whole, and hashed outside every
    hold-out range (probes and validation)."""
    return length <= recipe.segment and \
        record_unit(recipe.seed, src.name, rid) >= recipe.probe_fraction + recipe.val_fraction


def exclusion_filters(recipe: Recipe) -> tuple[KmerScreen | None, re.Pattern | None]:
    """The recipe's benchmark exclusion: the k-mer screen of its loci and its header name pattern (None if unset)."""
    ex = recipe.exclusion
    loci = [Path(p) for p in ex["loci"]]
    for p in loci:
        if not p.is_file():
            raise InputError(f"{p}: exclusion locus FASTA not found")
    screen = KmerScreen(loci, ex["kmer"]) if loci else None
    name_re = re.compile(ex["name_pattern"], re.IGNORECASE) if ex["name_pattern"] else None
    return screen, name_re


def intron_pool(recipe: Recipe, root: Path, screen: KmerScreen | None,
                name_re: re.Pattern | None) -> tuple[list[bytes], dict[str, int]]:
    """The whole introns of the training records of ``recipe.splicing.introns`` (name filter, thinning and k-mer
    screen applied as to every record), and how many each source gave."""
    sp = recipe.splicing
    assert sp is not None
    by_name = {s.name: s for s in recipe.sources}
    lo, hi = sp.intron_len
    pool: list[bytes] = []
    counts: dict[str, int] = {}
    for name in sp.introns:
        src = by_name[name]
        found = []
        for header, rid, seq in _read_records(root / src.path, src, recipe.seed, name_re, dict.fromkeys(
                ("records", "dropped_name", "thinned"), 0)):
            if _training_record(recipe, src, rid, len(seq)):
                found += [x for x in record_introns(header, seq, src.splice_layout)
                          if lo <= len(x) <= hi and not x.upper().strip(b"ACGT")]
        if screen is not None and found:
            fracs = screen.fractions(found)
            found = [x for x, f in zip(found, fracs) if f < recipe.exclusion["max_fraction"]]
        counts[name] = len(found)
        pool += found
    if not pool:
        raise InputError(f"splicing: no whole GT..AG training introns of {lo}-{hi} bp in {', '.join(sp.introns)}")
    return pool, counts


def splice_record(seq: bytes, introns: list[bytes], rng: np.random.Generator, exon_len: tuple[int, int]) -> bytes:
    """``seq`` cut into exons of ``exon_len`` bp with a random intron of the pool inserted at each cut."""
    parts, prev = [], 0
    for cut in exon_cuts(0, len(seq), rng, exon_len):
        parts += [seq[prev:cut], introns[int(rng.integers(len(introns)))]]
        prev = cut
    parts.append(seq[prev:])
    return b"".join(parts)


def _spliced(recipe: Recipe, sp: Splicing, pool: list[bytes], src: Source, rid: str, seq: bytes) -> bytes | None:
    """The record in genomic form when it is a training record drawn for splicing (seeded by record), else None."""
    if not _training_record(recipe, src, rid, len(seq)) or record_unit(recipe.seed, "splice", src.name, rid) >= \
            sp.fraction:
        return None
    rng = np.random.default_rng([recipe.seed, int.from_bytes(
        hashlib.blake2b(f"{src.name}|{rid}".encode(), digest_size=4).digest(), "little")])
    return splice_record(seq, pool, rng, sp.exon_len)


# ---------------------------------------------------------------------------------------------- packing
class _Packer:
    """Packs records (separated by EOD) into rows of ``window`` tokens for one split of one source."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.tok: list[np.ndarray] = []
        self.mask: list[np.ndarray] = []
        self.n = 0
        self.rows_tok: list[np.ndarray] = []
        self.rows_mask: list[np.ndarray] = []

    def add(self, tokens: np.ndarray, mask: np.ndarray) -> None:
        if self.n:
            self.tok.append(np.array([EOD_ID], dtype=np.uint8))
            self.mask.append(np.zeros(1, dtype=np.uint8))
            self.n += 1
        self.tok.append(tokens.astype(np.uint8))
        self.mask.append(mask.astype(np.uint8))
        self.n += len(tokens)
        if self.n >= 64 * self.window:
            self._cut(final=False)

    def _cut(self, final: bool) -> None:
        if not self.n:
            return
        tok, mask = np.concatenate(self.tok), np.concatenate(self.mask)
        rows = len(tok) // self.window
        if final and len(tok) - rows * self.window >= self.window // 4:  # pad the tail with EOD, no loss
            pad = self.window - (len(tok) - rows * self.window)
            tok = np.concatenate([tok, np.full(pad, EOD_ID, np.uint8)])
            mask = np.concatenate([mask, np.zeros(pad, np.uint8)])
            rows += 1
        cut = rows * self.window
        self.rows_tok.append(tok[:cut].reshape(rows, self.window))
        self.rows_mask.append(mask[:cut].reshape(rows, self.window))
        rest_t, rest_m = tok[cut:], mask[cut:]
        self.tok, self.mask, self.n = ([rest_t], [rest_m], len(rest_t)) if len(rest_t) and not final else ([], [], 0)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        self._cut(final=True)
        if not self.rows_tok:
            return np.zeros((0, self.window), np.uint8), np.zeros((0, self.window), np.uint8)
        return np.concatenate(self.rows_tok), np.concatenate(self.rows_mask)


def _weighted_rows(n: int, weight: float, seed: int, name: str) -> np.ndarray:
    """Row indices of a source after weighting: each row kept floor(w) times plus once more with prob frac(w)."""
    rng = np.random.default_rng([seed, int(hashlib.blake2b(name.encode(), digest_size=4).hexdigest(), 16)])
    whole, frac = int(weight), weight - int(weight)
    extra = np.nonzero(rng.random(n) < frac)[0]
    return np.sort(np.concatenate([np.tile(np.arange(n), whole), extra])).astype(np.int64)


# ---------------------------------------------------------------------------------------------- main build
def make_mixture(recipe: Recipe, data_root: str | Path, out: str | Path, overwrite: bool = False,
                 progress: bool = True, recipe_path: str | None = None) -> dict[str, Any]:
    """Build the mixture shards, probes and manifest (see module docstring); returns the manifest."""
    from rich.progress import Progress

    root, out = Path(data_root), Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out}: output exists (use --overwrite)")
    for s in recipe.sources:
        if not (root / s.path).is_file():
            raise InputError(f"{root / s.path}: source {s.name!r} not found")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "probes").mkdir(parents=True)
    screen, name_re = exclusion_filters(recipe)
    ex = recipe.exclusion
    pool, pool_counts = intron_pool(recipe, root, screen, name_re) if recipe.splicing else (None, {})
    probe_out = {kind: _ProbeWriter(tmp / "probes" / f"{kind}.fa.gz") for kind in PROBE_KINDS}
    heldout = gzip.open(tmp / "probes" / "heldout.fa.gz", "wt")
    heldout_left = {s.name: recipe.heldout_bases // len(recipe.sources) for s in recipe.sources}
    manifest: dict[str, Any] = {
        "format": FORMAT, "genomod_version": __version__, "tokenizer_version": TOKENIZER_VERSION,
        "recipe": recipe_path, "window": recipe.window, "seed": recipe.seed, "val_fraction": recipe.val_fraction,
        "probe_fraction": recipe.probe_fraction, "segment": recipe.segment,
        "exclusion": {**ex, "loci": [{"path": str(p), "md5": file_digest(p, "md5")} for p in map(Path, ex["loci"])],
                      "rule": "drop records whose header matches name_pattern, or with >= max_fraction of their "
                              "ACGT k-mer positions whose canonical k-mer occurs in the loci"},
        "sources": [], "counts": {"train": 0, "val": 0},
    }
    if recipe.splicing is not None:
        manifest["splicing"] = {**asdict(recipe.splicing), "introns_per_source": pool_counts,
                                "rule": "training records only (hashed outside the probe and validation ranges) "
                                        "give introns and are spliced; a spliced record is training data whole"}
    writers = {split: h5py.File(tmp / f"{split}.h5", "w") for split in ("train", "val")}
    data = {split: {"tokens": [], "softmask": [], "index": []} for split in writers}
    try:
        with Progress(disable=not progress) as prog:
            task = prog.add_task("mixture", total=len(recipe.sources))
            for si, src in enumerate(recipe.sources):
                prog.update(task, description=f"mixture: {src.name}")
                entry = _build_source(si, src, root, recipe, screen, name_re, probe_out, heldout, heldout_left,
                                      data, pool)
                manifest["sources"].append(entry)
                prog.advance(task)
        for split, h5 in writers.items():
            tok = np.concatenate(data[split]["tokens"]) if data[split]["tokens"] else np.zeros((0, recipe.window))
            mask = np.concatenate(data[split]["softmask"]) if data[split]["softmask"] else np.zeros_like(tok)
            idx = np.concatenate(data[split]["index"]) if data[split]["index"] else np.zeros((0, 3))
            rows = max(1, min(1024, (1 << 18) // recipe.window, len(tok)))
            kw = dict(chunks=(rows, recipe.window), compression="gzip", compression_opts=4)
            h5.create_dataset("tokens", data=tok.astype(np.uint8), **kw)
            h5.create_dataset("softmask", data=mask.astype(np.uint8), **kw)
            h5.create_dataset("index", data=idx.astype(np.int64), chunks=(4096, 3) if len(idx) > 4096 else None,
                              compression="gzip")
            h5.attrs.update({"split": split, "format": FORMAT, "window": recipe.window,
                             "tokenizer_version": TOKENIZER_VERSION})
            manifest["counts"][split] = int(len(tok))
    finally:
        for h5 in writers.values():
            h5.close()
        for w in probe_out.values():
            w.close()
        heldout.close()
    manifest["counts"]["probe_orfs"] = probe_out["orfs"].count
    manifest["counts"]["probe_splice"] = probe_out["splice"].count
    manifest["split"] = {"rule": "per record (long records cut into segment-bp pieces first): probe if "
                                 "u < probe_fraction and the source kind is probe-eligible, val if u < "
                                 "probe_fraction + val_fraction, else train; u = blake2b(seed|source|record)"}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return manifest


def _read_records(path: Path, src: Source, seed: int, name_re: re.Pattern | None,
                  counts: dict[str, Any]) -> list[tuple[str, str, bytes]]:
    """(header, id, sequence) of the source's records after the name filter and thinning (counted)."""
    records = []
    for ri, (header, seq) in enumerate(read_fasta(path)):
        counts["records"] += 1
        rid = header.split()[0]
        if name_re is not None and name_re.search(header):
            counts["dropped_name"] += 1
            continue
        if src.record_fraction < 1 and record_unit(seed, "thin", src.name, rid, ri) >= src.record_fraction:
            counts["thinned"] += 1
            continue
        records.append((header, rid, seq))
    return records


def _build_source(si: int, src: Source, root: Path, recipe: Recipe, screen: KmerScreen | None,
                  name_re: re.Pattern | None, probe_out: dict[str, _ProbeWriter], heldout: Any,
                  heldout_left: dict[str, int], data: dict, pool: list[bytes] | None = None) -> dict[str, Any]:
    path = root / src.path
    counts = {"records": 0, "bases": 0, "dropped_name": 0, "dropped_kmer": 0, "thinned": 0, "probe_records": 0,
              "val_segments": 0, "train_segments": 0, "max_kmer_fraction_kept": 0.0}
    sp = recipe.splicing if pool and recipe.splicing and src.name in recipe.splicing.sources else None
    if sp is not None:
        counts["spliced_records"] = 0
    packers = {"train": _Packer(recipe.window), "val": _Packer(recipe.window)}
    probe_kind = next((k for k, kinds in PROBE_KINDS.items() if src.kind in kinds), None) if src.probe else None
    records = _read_records(path, src, recipe.seed, name_re, counts)
    fracs = screen.fractions([r[2] for r in records]) if screen is not None else np.zeros(len(records))
    for (header, rid, seq), frac in zip(records, fracs):
        if frac >= recipe.exclusion["max_fraction"]:
            counts["dropped_kmer"] += 1
            continue
        counts["max_kmer_fraction_kept"] = max(counts["max_kmer_fraction_kept"], float(frac))
        counts["bases"] += len(seq)
        u = record_unit(recipe.seed, src.name, rid)
        if probe_kind is not None and u < recipe.probe_fraction:
            cap = recipe.probe_max_records.get(probe_kind, 0)
            if counts["probe_records"] < cap and _write_probe(probe_kind, src, header, rid, seq, probe_out,
                                                              recipe.min_orf):
                counts["probe_records"] += 1
            continue  # held out whether or not it made a usable probe
        gene = _spliced(recipe, sp, pool, src, rid, seq) if sp is not None else None
        spliced = gene is not None
        if spliced:
            seq = gene
            counts["spliced_records"] += 1
        tokens, mask = encode(seq, return_mask=True)
        if not src.softmask:
            mask = np.zeros_like(mask)
        if recipe.junction_flank and src.splice_layout and not spliced:
            mask = mask.astype(np.uint8)
            counts["junction_bases"] = counts.get("junction_bases", 0) + mark_junctions(
                mask, header, seq, src.splice_layout, recipe.junction_flank)
        for off in range(0, max(len(seq), 1), recipe.segment):
            seg_u = u if len(seq) <= recipe.segment else record_unit(recipe.seed, src.name, rid, off)
            split = "val" if recipe.probe_fraction <= seg_u < recipe.probe_fraction + recipe.val_fraction else "train"
            if (len(seq) > recipe.segment and seg_u < recipe.probe_fraction) or spliced:
                split = "train"  # long records give no probes; their low hashes are ordinary training segments
            piece_t, piece_m = tokens[off : off + recipe.segment], mask[off : off + recipe.segment]
            counts[f"{split}_segments"] += 1
            packers[split].add(piece_t, piece_m)
            if split == "val" and heldout_left[src.name] > 0 and len(piece_t) >= 100:
                take = seq[off : off + min(recipe.segment, heldout_left[src.name])]
                heldout.write(f">{src.name}:{rid}:{off} source={src.name}\n{take.upper().decode()}\n")
                heldout_left[src.name] -= len(take)
    entry: dict[str, Any] = {"name": src.name, "path": src.path, "kind": src.kind, "weight": src.weight,
                             "licence": src.licence,
                             "softmask": src.softmask, "record_fraction": src.record_fraction,
                             "md5": file_digest(path, "md5"), "size": path.stat().st_size, **counts}
    for split, packer in packers.items():
        tok, mask = packer.finish()
        keep = _weighted_rows(len(tok), src.weight, recipe.seed, src.name) if split == "train" else np.arange(len(tok))
        entry[f"{split}_rows_before_weight"] = int(len(tok))
        entry[f"{split}_rows"] = int(len(keep))
        if len(keep):
            data[split]["tokens"].append(tok[keep])
            data[split]["softmask"].append(mask[keep])
            data[split]["index"].append(np.stack([np.full(len(keep), si), keep, np.zeros(len(keep), np.int64)], 1))
    return entry


def _write_probe(kind: str, src: Source, header: str, rid: str, seq: bytes, probe_out: dict[str, _ProbeWriter],
                 min_orf: int) -> bool:
    w = probe_out[kind]
    if kind == "orfs":
        orf = longest_orf(seq, min_orf)
        if orf is None:
            return False
        w.write(f"{src.name}:{rid}", f"cds={orf[0]}-{orf[1]} source={src.name}", seq)
        return True
    donor, acceptor = splice_sites(header, seq, src.splice_layout)
    if donor is None and acceptor is None:
        return False
    w.write(f"{src.name}:{rid}", f"donor={donor or '-'} acceptor={acceptor or '-'} source={src.name}", seq)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True, help="mixture recipe YAML")
    ap.add_argument("--data-root", required=True, help="folder the recipe's source paths are relative to")
    ap.add_argument("--out", required=True, help="output folder (created atomically)")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        m = make_mixture(load_recipe(args.recipe), args.data_root, args.out, args.overwrite,
                         progress=not args.no_progress, recipe_path=args.recipe)
    except GenomodError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    c = m["counts"]
    print(f"train rows {c['train']:,}, val rows {c['val']:,}, probe ORFs {c['probe_orfs']}, "
          f"probe splice records {c['probe_splice']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
