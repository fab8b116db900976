"""Background calibration of zero-shot scores (GPN-Star-style): subtract the model's mean score in context.

A model's raw score of an SNV (``delta_fast``, ``delta_ll_sum``) depends strongly on the local sequence
context, much like a mutation rate does. Calibration removes that part:

    cal = raw - mean_background(context, ALT)

where ``context`` is the 5-base reference sequence ``pos-2 .. pos+2`` on the forward strand (REF in the
middle, soft-masking ignored) and the mean is taken over the model's scores of all three SNVs at
``n_sites`` positions sampled uniformly from background sequence (``build_calibration_table``).

Table layout (``CalibrationTable``): one cell per (mode, rc, 5-mer, ALT), 4^5 contexts x 3 ALTs, holding the
number of background SNVs ``n`` and their mean raw score. ``mode`` is ``fast`` (mean of ``delta_fast``),
``exact`` (mean of ``delta_ll_sum``; ``delta_ll_mean`` is ``delta_ll_sum / (window - 1)``, so its calibrated
value is the calibrated sum divided by the same number) or ``embed`` (mean of ``delta_embed``, the embedding
distance, from the same forwards as ``exact``). ``rc`` matters and has its own rows: strand
averaging (``rc=True``) mixes in the reverse strand's prediction, which sees the site's right-hand context
and is symmetric under reverse complement, so its context means differ from the forward-only ones.
The window matters too (the amount of context in fast mode, the number of summed positions in exact
mode): a table is built for one window and is refused for another.

Lookups back off when a cell is thin: 5-mer cell with ``n >= min_count`` -> its mean; otherwise the
3-mer cell (pos-1 .. pos+1, pooled over the 16 5-mers sharing it) when it has ``n >= min_count``; otherwise
the 1-base (REF, ALT) mean (pooled over 256 5-mers) whenever it has any site. Pooled means are
``sum(n * mean) / sum(n)`` over the 5-mer cells, so a table read back from disk gives identical lookups.
Contexts holding N (or any non-ACGT base, or running past a contig edge) and non-SNVs are not calibrated:
NaN.

File (``calibration.tsv``, written atomically): line 1 is ``# genomod calibration table: {json}`` (model,
weights sha256, window, n_sites, seed, modes, rc, source sequences with their sha256, exclusion BED,
min_count, genomod version), line 2 the column header ``mode rc context alt n mean`` (tab-separated), then
one row per non-empty cell (``rc`` 0/1; ``mean`` written with Python's round-trip ``repr``).
``load_calibration`` looks for ``calibration.tsv`` beside a checkpoint's ``model.safetensors``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genomod.errors import ConfigError, InputError, ModelError, check_terminated
from genomod.io.windows import FetchFn, Window

MODES = ("exact", "fast", "embed")
BASES = "ACGT"
K = 5  # context length
FLANK = K // 2
N_CONTEXTS = 4**K
TABLE_NAME = "calibration.tsv"
COLUMNS = ("mode", "rc", "context", "alt", "n", "mean")
HEADER_PREFIX = "# genomod calibration table: "
FORMAT = "genomod-calibration"
FORMAT_VERSION = 1
DEFAULT_MIN_COUNT = 10
SCORE_OF_MODE = {"fast": "delta_fast", "exact": "delta_ll_sum", "embed": "delta_embed"}
CHUNK = 1 << 20  # bases per scan chunk

_BASE_CODE = np.full(256, -1, dtype=np.int64)
for _i, _b in enumerate(b"ACGT"):
    _BASE_CODE[_b] = _i
    _BASE_CODE[ord(chr(_b).lower())] = _i
_POW = 4 ** np.arange(K - 1, -1, -1, dtype=np.int64)  # first base is the most significant digit


# -- contexts -----------------------------------------------------------------------------------------------
def context_index(context: str) -> int:
    """Index 0..1023 of a 5-base context (A=0 C=1 G=2 T=3, first base most significant); -1 if not ACGT."""
    if not isinstance(context, str) or len(context) != K:
        return -1
    codes = _BASE_CODE[np.frombuffer(context.encode("ascii", "replace"), dtype=np.uint8)]
    if (codes < 0).any():
        return -1
    return int(codes @ _POW)


def context_string(index: int) -> str:
    """The 5-mer of a context index (inverse of ``context_index``)."""
    return "".join(BASES[(index // int(p)) % 4] for p in _POW)


def site_context(fetch: FetchFn, contig: str, start: int, contig_length: int) -> str:
    """Uppercase reference bases ``start-2 .. start+2`` (0-based ``start``), N past the contig edges."""
    return Window.read(fetch, contig, start - FLANK, start + FLANK + 1, contig_length).seq.upper()


def _contexts_of_chunk(seq: str) -> tuple[np.ndarray, np.ndarray]:
    """For a chunk padded with FLANK bases on each side: (all-ACGT mask, context index) per inner base."""
    codes = _BASE_CODE[np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)]
    n = len(codes) - 2 * FLANK
    ok = np.ones(max(n, 0), dtype=bool)
    idx = np.zeros(max(n, 0), dtype=np.int64)
    for k in range(K):
        part = codes[k : k + n]
        ok &= part >= 0
        idx += np.maximum(part, 0) * _POW[k]
    return ok, idx


# -- the table ----------------------------------------------------------------------------------------------
def _norm_rc(rc: Any) -> bool:
    return bool(rc)


@dataclass(eq=False)
class CalibrationTable:
    """Mean raw score and count per (mode, rc, 5-mer context, ALT); see the module doc for the backoff."""

    cells: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]]  # -> (n int64 (1024, 4), mean f64 (1024, 4))
    meta: dict[str, Any] = field(default_factory=dict)
    min_count: int = DEFAULT_MIN_COUNT
    path: Path | None = None
    _resolved: dict = field(default_factory=dict, repr=False, compare=False)

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_sums(cls, sums: Mapping[tuple[str, bool], tuple[np.ndarray, np.ndarray]],
                  meta: Mapping[str, Any] | None = None, min_count: int = DEFAULT_MIN_COUNT) -> CalibrationTable:
        """A table from per-(mode, rc) arrays ``(count, sum)`` of shape (1024, 4) (ALT index 0..3 = ACGT)."""
        cells = {}
        for (mode, rc), (n, s) in sums.items():
            n = np.asarray(n, dtype=np.int64)
            s = np.asarray(s, dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(n > 0, s / np.maximum(n, 1), np.nan)
            cells[(str(mode), _norm_rc(rc))] = (n, mean)
        return cls(cells, dict(meta or {}), int(min_count))

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, bool, str, str, int, float]],
                  meta: Mapping[str, Any] | None = None, min_count: int = DEFAULT_MIN_COUNT) -> CalibrationTable:
        """A table from ``(mode, rc, context, alt, n, mean)`` rows (hand-made tables, tests)."""
        cells: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]] = {}
        for mode, rc, ctx, alt, n, mean in rows:
            if mode not in MODES:
                raise ConfigError(f"unknown scoring mode {mode!r}; use one of {', '.join(MODES)}")
            ci, ai = context_index(ctx), BASES.find(str(alt).upper())
            if ci < 0 or ai < 0 or ctx[FLANK].upper() == alt.upper():
                raise ConfigError(f"invalid calibration cell context {ctx!r} alt {alt!r}")
            key = (mode, _norm_rc(rc))
            if key not in cells:
                cells[key] = (np.zeros((N_CONTEXTS, 4), np.int64), np.full((N_CONTEXTS, 4), np.nan))
            cells[key][0][ci, ai] = int(n)
            cells[key][1][ci, ai] = float(mean)
        return cls(cells, dict(meta or {}), int(min_count))

    # -- properties --------------------------------------------------------------------------------------
    @property
    def window(self) -> int | None:
        """Scoring window the table was built with (None when unknown, e.g. a hand-made table)."""
        w = self.meta.get("window")
        return int(w) if w is not None else None

    @property
    def source(self) -> str:
        """Where the table came from (its file, or a short description)."""
        return str(self.path) if self.path is not None else "calibration table"

    def keys(self) -> list[tuple[str, bool]]:
        """The (mode, rc) pairs the table holds."""
        return sorted(self.cells)

    def has(self, mode: str, rc: bool) -> bool:
        """True when the table holds rows for ``mode`` and ``rc``."""
        return (mode, _norm_rc(rc)) in self.cells

    def require(self, mode: str, rc: bool) -> None:
        """ConfigError naming the table and how to build the missing rows when (mode, rc) is absent."""
        if mode not in MODES:
            raise ConfigError(f"unknown scoring mode {mode!r}; use one of {', '.join(MODES)}")
        if not self.has(mode, rc):
            held = ", ".join(f"{m}/rc={int(r)}" for m, r in self.keys()) or "nothing"
            raise ConfigError(
                f"{self.source}: calibration table has no rows for mode {mode} with rc={int(bool(rc))} (it holds "
                f"{held}); rebuild it with `genomod calibrate ... --mode {mode}{' --rc' if rc else ''}`"
            )

    def counts(self, mode: str, rc: bool) -> np.ndarray:
        """(1024, 4) site counts of the 5-mer cells (ALT column equal to REF is always 0)."""
        self.require(mode, rc)
        return self.cells[(mode, _norm_rc(rc))][0]

    def means(self, mode: str, rc: bool) -> np.ndarray:
        """(1024, 4) raw means of the 5-mer cells (NaN where empty), before backoff."""
        self.require(mode, rc)
        return self.cells[(mode, _norm_rc(rc))][1]

    def n_sites(self) -> int | None:
        """Number of background sites the table was built from (from its header)."""
        v = self.meta.get("n_sites")
        return int(v) if v is not None else None

    def summary(self) -> dict[str, Any]:
        """A small JSON-able description (file, model, window, sites, min_count, rows held)."""
        return {"file": None if self.path is None else str(self.path), "model": self.meta.get("model"),
                "window": self.window, "n_sites": self.n_sites(), "min_count": self.min_count,
                "seed": self.meta.get("seed"), "keys": [f"{m}/rc={int(r)}" for m, r in self.keys()],
                "weights_sha256": self.meta.get("weights_sha256")}

    # -- backoff -----------------------------------------------------------------------------------------
    def resolved(self, mode: str, rc: bool) -> tuple[np.ndarray, np.ndarray]:
        """(1024, 4) background mean after backoff and the level used (5, 3, 1; 0 = none, NaN mean)."""
        self.require(mode, rc)
        key = (mode, _norm_rc(rc), self.min_count)
        if key not in self._resolved:
            n5, mean5 = self.cells[(mode, _norm_rc(rc))]
            s5 = np.where(n5 > 0, n5 * np.nan_to_num(mean5), 0.0)
            ctx = np.arange(N_CONTEXTS)
            k3 = (ctx // 4) % 64  # middle three bases
            k1 = (ctx // 16) % 4  # the centre (REF)
            n3, s3 = np.zeros((64, 4), np.int64), np.zeros((64, 4))
            np.add.at(n3, k3, n5)
            np.add.at(s3, k3, s5)
            n1, s1 = np.zeros((4, 4), np.int64), np.zeros((4, 4))
            np.add.at(n1, k1, n5)
            np.add.at(s1, k1, s5)
            with np.errstate(invalid="ignore", divide="ignore"):
                m3, m1 = s3 / n3, s1 / n1
            mean = np.full((N_CONTEXTS, 4), np.nan)
            level = np.zeros((N_CONTEXTS, 4), np.int8)
            use1 = n1[k1] > 0
            mean[use1], level[use1] = m1[k1][use1], 1
            use3 = n3[k3] >= self.min_count
            mean[use3], level[use3] = m3[k3][use3], 3
            use5 = n5 >= self.min_count
            mean[use5], level[use5] = mean5[use5], 5
            ref = k1
            mean[ctx, ref], level[ctx, ref] = np.nan, 0  # ALT == REF is not a variant
            self._resolved[key] = (mean, level)
        return self._resolved[key]

    def _cells_of(self, contexts: Sequence[str], alts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ci = np.array([context_index(c.upper()) if isinstance(c, str) else -1 for c in contexts], dtype=np.int64)
        ai = np.array([BASES.find(a.upper()) if isinstance(a, str) and len(a) == 1 else -1 for a in alts],
                      dtype=np.int64)
        if len(ci) != len(ai):
            raise ConfigError(f"contexts ({len(ci)}) and alts ({len(ai)}) differ in length")
        good = (ci >= 0) & (ai >= 0)
        return ci, ai, good

    def lookup(self, mode: str, rc: bool, contexts: Sequence[str], alts: Sequence[str]) -> np.ndarray:
        """Background mean (after backoff) per (5-mer context, ALT); NaN for N contexts and non-SNVs."""
        mean, _ = self.resolved(mode, rc)
        ci, ai, good = self._cells_of(contexts, alts)
        out = np.full(len(ci), np.nan)
        out[good] = mean[ci[good], ai[good]]
        return out

    def levels(self, mode: str, rc: bool, contexts: Sequence[str], alts: Sequence[str]) -> np.ndarray:
        """Backoff level used per lookup: 5, 3, 1, or 0 (not calibrated)."""
        _, level = self.resolved(mode, rc)
        ci, ai, good = self._cells_of(contexts, alts)
        out = np.zeros(len(ci), np.int8)
        out[good] = level[ci[good], ai[good]]
        return out

    def apply(self, mode: str, rc: bool, contexts: Sequence[str], alts: Sequence[str], raw: Any) -> np.ndarray:
        """Calibrated scores ``raw - lookup(...)`` (``raw``: the mode's score, ``SCORE_OF_MODE``)."""
        raw = np.asarray(raw, dtype=np.float64)
        return raw - self.lookup(mode, rc, contexts, alts)

    # -- file ----------------------------------------------------------------------------------------------
    def rows(self) -> Iterator[tuple[str, int, str, str, int, float]]:
        """Non-empty cells as ``(mode, rc, context, alt, n, mean)``, sorted."""
        for mode, rc in self.keys():
            n, mean = self.cells[(mode, rc)]
            for ci, ai in zip(*np.nonzero(n > 0)):
                yield mode, int(rc), context_string(int(ci)), BASES[ai], int(n[ci, ai]), float(mean[ci, ai])

    def to_text(self) -> str:
        """The calibration.tsv content (header comment, column line, rows)."""
        meta = dict(self.meta)
        meta.setdefault("format", FORMAT)
        meta.setdefault("format_version", FORMAT_VERSION)
        meta["min_count"] = self.min_count
        lines = [HEADER_PREFIX + json.dumps(meta, sort_keys=False), "\t".join(COLUMNS)]
        lines += [f"{m}\t{r}\t{c}\t{a}\t{n}\t{mean!r}" for m, r, c, a, n, mean in self.rows()]
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table atomically to ``path`` (a folder means ``path/calibration.tsv``); returns the file."""
        from genomod.utils import atomic_path

        path = Path(path)
        if path.is_dir():
            path = path / TABLE_NAME
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_text())
        self.path = path
        return path


def read_calibration(path: str | os.PathLike, min_count: int | None = None) -> CalibrationTable:
    """Parse a calibration.tsv; malformed content is an InputError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: calibration table not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read calibration table ({exc})") from None
    lines = text.splitlines()
    meta = _read_header(path, lines)
    cells: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]] = {}
    for lineno, line in enumerate(lines[2:], start=3):
        if not line.strip() or line.startswith("#"):
            continue
        key, ci, ai, n, mean = _parse_row(path, lineno, line)
        if key not in cells:
            cells[key] = (np.zeros((N_CONTEXTS, 4), np.int64), np.full((N_CONTEXTS, 4), np.nan))
        if cells[key][0][ci, ai]:
            mode, rc = key
            raise InputError(f"{path}: line {lineno}: duplicate cell {mode} rc={int(rc)} "
                             f"{context_string(ci)}>{BASES[ai]}")
        cells[key][0][ci, ai] = n
        cells[key][1][ci, ai] = mean
    if not cells:
        raise InputError(f"{path}: calibration table has no rows")
    mc = min_count if min_count is not None else int(meta.get("min_count", DEFAULT_MIN_COUNT))
    return CalibrationTable(cells, meta, mc, path)


def _read_header(path: Path, lines: list[str]) -> dict[str, Any]:
    """The JSON metadata of line 1, checked, and the column header of line 2."""
    if not lines or not lines[0].startswith(HEADER_PREFIX):
        raise InputError(f"{path}: line 1: not a genomod calibration table (expected a line starting with "
                         f"{HEADER_PREFIX.strip()!r})")
    try:
        meta = json.loads(lines[0][len(HEADER_PREFIX):])
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line 1: corrupt header JSON ({exc.msg})") from None
    if not isinstance(meta, dict) or meta.get("format", FORMAT) != FORMAT:
        raise InputError(f"{path}: line 1: not a genomod calibration table header")
    if int(meta.get("format_version", 1)) > FORMAT_VERSION:
        raise InputError(f"{path}: line 1: written by a newer genomod (format {meta.get('format_version')}); "
                         "upgrade genomod to read it")
    if meta.get("window") is not None and not (isinstance(meta["window"], int) and meta["window"] >= 1):
        raise InputError(f"{path}: line 1: window must be a positive integer, got {meta['window']!r}")
    if len(lines) < 2 or tuple(lines[1].split("\t")) != COLUMNS:
        raise InputError(f"{path}: line 2: expected the column header {' '.join(COLUMNS)} (tab-separated)")
    return meta


def _parse_row(path: Path, lineno: int, line: str) -> tuple[tuple[str, bool], int, int, int, float]:
    """One table row -> ((mode, rc), context index, ALT index, n, mean); InputError naming the line."""
    f = line.split("\t")
    if len(f) != len(COLUMNS):
        raise InputError(f"{path}: line {lineno}: expected {len(COLUMNS)} tab-separated fields, got {len(f)}")
    mode, rc_s, ctx, alt, n_s, mean_s = f
    if mode not in MODES:
        raise InputError(f"{path}: line {lineno}: unknown mode {mode!r} (expected {' or '.join(MODES)})")
    if rc_s.lower() not in ("0", "1", "false", "true"):
        raise InputError(f"{path}: line {lineno}: rc must be 0 or 1, got {rc_s!r}")
    rc = rc_s.lower() in ("1", "true")
    ci = context_index(ctx) if ctx.isupper() else -1
    if ci < 0:
        raise InputError(f"{path}: line {lineno}: context must be 5 bases of ACGT, got {ctx!r}")
    if len(alt) != 1 or alt not in BASES or alt == ctx[FLANK]:
        raise InputError(f"{path}: line {lineno}: alt must be one of ACGT other than the context's "
                         f"centre {ctx[FLANK]}, got {alt!r}")
    try:
        n = int(n_s)
    except ValueError:
        n = -1
    if n < 1:
        raise InputError(f"{path}: line {lineno}: n must be a positive integer, got {n_s!r}")
    try:
        mean = float(mean_s)
    except ValueError:
        mean = math.nan
    if not math.isfinite(mean):
        raise InputError(f"{path}: line {lineno}: mean must be a finite number, got {mean_s!r}")
    return (mode, rc), ci, BASES.index(alt), n, mean


# -- finding a model's table -------------------------------------------------------------------------------
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (weights, sources and BED provenance of a table)."""
    from genomod.utils import file_digest

    return file_digest(path)


def calibration_path(model: str | os.PathLike) -> Path:
    """Where ``--calibrate`` looks for a model's table: ``calibration.tsv`` beside its ``model.safetensors``.

    ``model`` may be a shipped model name (``genomod/data/models/<name>/calibration.tsv``), a checkpoint
    folder, or its ``model.safetensors``.
    """
    from genomod.checkpoint import WEIGHTS, resolve_checkpoint

    p = Path(model)
    if p.is_file() and p.name == WEIGHTS:
        return p.parent / TABLE_NAME
    if p.is_dir():
        return p / TABLE_NAME
    return resolve_checkpoint(model) / TABLE_NAME


def check_weights(table: CalibrationTable, checkpoint_dir: str | os.PathLike | None) -> None:
    """ModelError when the table records other weights than the checkpoint's model.safetensors."""
    from genomod.checkpoint import WEIGHTS

    want = table.meta.get("weights_sha256")
    if not want or checkpoint_dir is None:
        return
    weights = Path(checkpoint_dir) / WEIGHTS
    if not weights.is_file():
        return
    have = file_sha256(weights)
    if have != want:
        raise ModelError(
            f"{table.source}: calibration table was built for other weights (sha256 {want[:12]}...) than "
            f"{weights} (sha256 {have[:12]}...); rebuild it with `genomod calibrate --model {checkpoint_dir} ...`"
        )


def load_calibration(model_dir_or_path: str | os.PathLike, min_count: int | None = None) -> CalibrationTable:
    """Load a model's calibration table.

    A file other than ``model.safetensors`` is read as the table itself; otherwise (shipped model name,
    checkpoint folder, or its ``model.safetensors``) ``calibration.tsv`` beside the weights is read and
    checked against the weights' sha256. A missing table is a ConfigError naming the file looked for and
    the command that builds it.
    """
    from genomod.checkpoint import WEIGHTS

    p = Path(model_dir_or_path)
    if p.is_file() and p.name != WEIGHTS:
        return read_calibration(p, min_count)
    path = calibration_path(model_dir_or_path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no calibration table for model {str(model_dir_or_path)!r} (--calibrate reads "
            f"{TABLE_NAME} beside the model's weights); build one with `genomod calibrate --model "
            f"{model_dir_or_path} --reference GENOME.fa --sites 100000 --mode fast [--mode exact] [--rc] --out {path}`"
        )
    table = read_calibration(path, min_count)
    check_weights(table, path.parent)
    return table


# -- sources and sampling ----------------------------------------------------------------------------------
@dataclass
class _Source:
    label: str
    fetch: FetchFn
    lengths: dict[str, int]
    info: dict[str, Any]


def _sources(reference: Any, hash_files: bool = True) -> list[_Source]:
    """Normalise a path, ReferenceGenome, {name: sequence} dict or a list of those."""
    from genomod.io import ReferenceGenome

    if isinstance(reference, (str, os.PathLike, ReferenceGenome, Mapping)):
        items = [reference]
    else:
        items = list(reference)
    if not items:
        raise ConfigError("build_calibration_table needs at least one reference (FASTA path or sequences)")
    out = []
    for item in items:
        if isinstance(item, Mapping):
            seqs = {str(k): str(v) for k, v in item.items()}
            h = hashlib.sha256()
            for name, seq in seqs.items():
                h.update(f">{name}\n".encode())
                h.update(seq.upper().encode("ascii", "replace"))
            out.append(_Source("<in-memory>", lambda c, s, e, _q=seqs: _q[c][s:e],
                               {k: len(v) for k, v in seqs.items()},
                               {"in_memory": True, "contigs": len(seqs), "bases": sum(map(len, seqs.values())),
                                "sha256_uppercase": h.hexdigest()}))
            continue
        ref = item if isinstance(item, ReferenceGenome) else ReferenceGenome(item)
        info: dict[str, Any] = {"path": str(ref.path), "contigs": len(ref.contigs),
                                "bases": int(sum(ref.lengths.values()))}
        if hash_files:
            info["sha256"] = file_sha256(ref.path)
        out.append(_Source(str(ref.path), ref.fetch, dict(ref.lengths), info))
    return out


def _exclusion(exclude_bed: Any):
    from genomod.io import Interval, IntervalIndex, read_bed

    if exclude_bed is None:
        return None, None
    if isinstance(exclude_bed, IntervalIndex):
        return exclude_bed, {"intervals": len(exclude_bed)}
    if isinstance(exclude_bed, (str, os.PathLike)):
        ivs = read_bed(exclude_bed)
        return IntervalIndex(ivs), {"path": str(exclude_bed), "sha256": file_sha256(exclude_bed),
                                    "intervals": len(ivs)}
    ivs = [iv if isinstance(iv, Interval) else Interval(*iv) for iv in exclude_bed]
    return IntervalIndex(ivs), {"intervals": len(ivs)}


def _chunk_sites(src: _Source, contig: str, start: int, end: int, index) -> tuple[np.ndarray, np.ndarray]:
    """Eligible 0-based positions in [start, end) (full ACGT 5-mer, not excluded) and their context index."""
    seq = Window.read(src.fetch, contig, start - FLANK, end + FLANK, src.lengths[contig]).seq
    ok, ctx = _contexts_of_chunk(seq)
    pos = np.flatnonzero(ok)
    if index is not None and len(pos):
        keep = ~index.overlaps(contig, pos + start, 1)
        pos = pos[keep]
    return pos + start, ctx[pos]


def _choose(total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct sorted integers from [0, total), uniformly (deterministic given the generator)."""
    if n >= total:
        return np.arange(total, dtype=np.int64)
    if n > total // 3:
        return np.sort(rng.permutation(total)[:n]).astype(np.int64)
    seen: set[int] = set()
    picked: list[int] = []
    while len(picked) < n:  # rejection of repeats; n <= total / 3, so few redraws
        for x in rng.integers(0, total, size=n - len(picked) + 16, dtype=np.int64).tolist():
            if x not in seen:
                seen.add(x)
                picked.append(x)
                if len(picked) == n:
                    break
    return np.sort(np.asarray(picked, dtype=np.int64))


@dataclass
class SampledSites:
    """Sampled background sites of one contig: 0-based positions (sorted) and their 5-mer context index."""

    source: int
    contig: str
    positions: np.ndarray
    contexts: np.ndarray


def sample_sites(reference: Any, n_sites: int, seed: int = 0, exclude_bed: Any = None,
                 cluster: int = 1) -> list[SampledSites]:
    """Sample ``n_sites`` positions uniformly (without replacement) over the positions of ``reference``
    whose 5-base context is all ACGT (any case) and that lie outside every ``exclude_bed`` interval.

    ``cluster > 1`` samples ``ceil(n_sites / cluster)`` anchors uniformly and takes the eligible positions of
    ``[anchor, anchor + cluster)`` (same 1 Mb chunk): fast mode then scores a whole tile per forward.

    Two streaming passes of 1 Mb chunks (count, then pick), so a whole genome is never held in memory.
    Deterministic for a given seed and input. Fewer sites come back when fewer are eligible.
    """
    return _sample(_sources(reference, hash_files=False), _exclusion(exclude_bed)[0], n_sites, seed,
                   cluster=cluster)


def _sample(sources: list[_Source], index: Any, n_sites: int, seed: int,
            advance: Callable[[int], None] | None = None, cluster: int = 1) -> list[SampledSites]:
    if n_sites < 1 or cluster < 1:
        raise ConfigError(f"n_sites and cluster must be >= 1, got {n_sites} and {cluster}")
    chunks: list[tuple[int, str, int, int]] = []
    counts: list[int] = []
    for si, src in enumerate(sources):
        for contig, length in src.lengths.items():
            for start in range(0, length, CHUNK):
                check_terminated()
                end = min(length, start + CHUNK)
                pos, _ = _chunk_sites(src, contig, start, end, index)
                chunks.append((si, contig, start, end))
                counts.append(len(pos))
                if advance is not None:
                    advance(end - start)
    offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    total = int(offsets[-1])
    if total == 0:
        raise InputError("no position with a full ACGT 5-base context in the given sequences"
                         + (" outside the excluded intervals" if index is not None else ""))
    picks = _choose(total, -(-int(n_sites) // cluster), np.random.default_rng(seed))
    which = np.searchsorted(offsets, picks, side="right") - 1
    by_contig: dict[tuple[int, str], tuple[list, list]] = {}
    for c in np.unique(which):
        si, contig, start, end = chunks[c]
        pos, ctx = _chunk_sites(sources[si], contig, start, end, index)
        local = picks[which == c] - offsets[c]
        if cluster > 1:  # every eligible position within ``cluster`` bases from an anchor
            lo = np.searchsorted(pos, pos[local])
            hi = np.searchsorted(pos, pos[local] + cluster)
            local = np.unique(np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]))
        acc = by_contig.setdefault((si, contig), ([], []))
        acc[0].append(pos[local])
        acc[1].append(ctx[local])
    return [SampledSites(si, contig, np.concatenate(p), np.concatenate(x)) for (si, contig), (p, x) in
            by_contig.items()]


# -- building ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    from genomod.utils import progress_bar

    with progress_bar("{task.description}", enabled=enabled) as prog:

        def task(description: str, total: int | None) -> Callable[[int], None]:
            t = prog.add_task(description, total=total)
            return lambda n: prog.advance(t, n)

        yield task


def _model_info(model: Any) -> tuple[str, str | None, str | None]:
    """(label, checkpoint folder or None, weights sha256 or None) of a loaded model."""
    from genomod.checkpoint import WEIGHTS

    label = getattr(model.config, "name", "custom")
    path = (getattr(model, "checkpoint_info", None) or {}).get("path")
    sha = None
    if path is not None and (Path(path) / WEIGHTS).is_file():
        sha = file_sha256(Path(path) / WEIGHTS)
    return label, path, sha


def build_calibration_table(
    model: Any,
    reference: Any,
    n_sites: int,
    modes: Sequence[str] = ("fast",),
    window: int | None = None,
    rc: bool = False,
    exclude_bed: Any = None,
    seed: int = 0,
    batch_size: int = 8,
    device: str = "auto",
    min_count: int = DEFAULT_MIN_COUNT,
    progress: bool = True,
    cluster: int = 1,
) -> CalibrationTable:
    """Score all 3 SNVs at ``n_sites`` uniformly sampled background positions and tabulate mean raw scores.

    ``model``: a HybridModel, a shipped model name or a checkpoint folder. ``reference``: a FASTA path, a
    ReferenceGenome, a ``{name: sequence}`` dict, or a list of those. ``modes``: any of ``fast``, ``exact``
    and ``embed``, scored exactly as VariantScorer does (fast: ``site_logprobs`` + ``snv_score`` on the fixed
    tile grid, every sampled site of a tile from one forward; exact and embed: ``build_site`` +
    ``exact_deltas``, one site and its three ALTs per prefix, both from the same forwards). ``rc=False``
    gives the forward-only rows (rc=0); ``rc=True`` adds the strand-averaged rows (rc=1) as well, the
    forward ones coming for free. ``exclude_bed``: BED path or
    intervals whose positions are never sampled. ``window`` defaults to the model's default scoring window.
    ``cluster``: sample runs of up to ``cluster`` consecutive positions (see ``sample_sites``); with
    ``cluster = window // 2`` fast mode scores a whole tile per forward (many more sites for the same cost).
    """
    import torch

    from genomod.model.hybrid import HybridModel
    from genomod.scoring.scorer import default_window

    modes = tuple(dict.fromkeys(modes))
    if not modes:
        raise ConfigError("at least one mode (fast, exact, embed) is needed")
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"unknown scoring mode {m!r}; use one of {', '.join(MODES)}")
    if window is not None and window < 16:
        raise ConfigError(f"window must be >= 16 bases, got {window}")
    if batch_size < 1 or n_sites < 1 or min_count < 1:
        raise ConfigError("batch_size, n_sites and min_count must be >= 1")
    if not isinstance(model, HybridModel):
        from genomod.checkpoint import load_model

        model = load_model(model, device=device)
    model = model.eval()
    window = int(window) if window is not None else default_window(model)
    sources = _sources(reference)
    index, exclude_info = _exclusion(exclude_bed)
    rcs = (False, True) if rc else (False,)
    sums = {(m, r): (np.zeros((N_CONTEXTS, 4), np.int64), np.zeros((N_CONTEXTS, 4))) for m in modes for r in rcs}
    t0 = time.perf_counter()
    total_bases = sum(sum(s.lengths.values()) for s in sources)
    with _progress(progress) as task, torch.no_grad():
        sampled = _sample(sources, index, n_sites, seed, task("scanning", total_bases), cluster=cluster)
        n_found = int(sum(len(s.positions) for s in sampled))
        passes = [("fast",)] if "fast" in modes else []
        exact = tuple(m for m in modes if m != "fast")
        if exact:  # exact and embed rows come from the same forwards
            passes.append(exact)
        for pass_modes in passes:
            advance = task(f"scoring {'/'.join(pass_modes)}", n_found)
            for group in sampled:
                src = sources[group.source]
                if pass_modes == ("fast",):
                    _score_fast(model, src, group, window, rc, batch_size, sums, advance)
                else:
                    _score_exact(model, src, group, window, rc, batch_size, sums, advance, pass_modes)
    label, ckpt, sha = _model_info(model)
    from genomod import __version__

    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "genomod_version": __version__,
        "model": label, "checkpoint": ckpt, "weights_sha256": sha, "window": window,
        "n_sites": n_found, "n_sites_requested": int(n_sites), "cluster": int(cluster), "seed": int(seed),
        "modes": list(modes),
        "rc": [int(r) for r in rcs], "sources": [s.info for s in sources], "exclude": exclude_info,
        "context": "5 reference bases pos-2..pos+2, forward strand, REF in the middle",
        "score": {m: SCORE_OF_MODE[m] for m in modes}, "min_count": int(min_count),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_seconds": round(time.perf_counter() - t0, 1),
    }
    return CalibrationTable.from_sums(sums, meta, min_count)


def _ref_code(contexts: np.ndarray) -> np.ndarray:
    return (contexts // 16) % 4


def _accumulate(sums, key, ctx: int, alt: int, value: float) -> None:
    if math.isfinite(value):
        n, s = sums[key]
        n[ctx, alt] += 1
        s[ctx, alt] += value


def _score_fast(model, src: _Source, group: SampledSites, window: int, rc: bool, batch_size: int, sums,
                advance) -> None:
    from genomod.scoring.fast import site_logprobs, snv_score

    half = max(1, window // 2)
    length = src.lengths[group.contig]
    tiles = group.positions // half
    bounds = np.flatnonzero(np.diff(tiles)) + 1
    starts = np.concatenate([[0], bounds])  # first site of each tile (positions are sorted)
    per_call = max(1, 8 * batch_size)  # tiles per site_logprobs call (it batches them by batch_size)
    refs = _ref_code(group.contexts)
    for t0 in range(0, len(starts), per_call):
        check_terminated()
        lo = starts[t0]
        hi = starts[t0 + per_call] if t0 + per_call < len(starts) else len(group.positions)
        pos = group.positions[lo:hi]
        lps = site_logprobs(model, src.fetch, group.contig, length, pos.tolist(), window, rc, batch_size)
        for j, p in enumerate(pos.tolist()):
            ctx, ri = int(group.contexts[lo + j]), int(refs[lo + j])
            f, r = lps[p]
            for ai in range(4):
                if ai == ri:
                    continue
                _accumulate(sums, ("fast", False), ctx, ai, snv_score((f, None), BASES[ri], BASES[ai]))
                if rc:
                    _accumulate(sums, ("fast", True), ctx, ai, snv_score((f, r), BASES[ri], BASES[ai]))
        advance(len(pos))


def _score_exact(model, src: _Source, group: SampledSites, window: int, rc: bool, batch_size: int, sums,
                 advance, modes: Sequence[str] = ("exact",)) -> None:
    from genomod.scoring.exact import build_site, exact_deltas, rc_deltas

    length = src.lengths[group.contig]
    refs = _ref_code(group.contexts)
    per_call = max(1, 4 * batch_size)
    for lo in range(0, len(group.positions), per_call):
        check_terminated()
        hi = min(len(group.positions), lo + per_call)
        sites, alts = [], []
        for j in range(lo, hi):
            ri = int(refs[j])
            a = [ai for ai in range(4) if ai != ri]
            alts.append(a)
            sites.append(build_site(src.fetch, group.contig, int(group.positions[j]),
                                    [(BASES[ri], BASES[ai]) for ai in a], window, length))
        # (forward, reverse or None) per mode: delta LL sums, and delta_embed from the same forwards
        fwd = exact_deltas(model, sites, batch_size, embed=True)
        back = rc_deltas(model, sites, batch_size, embed=True) if rc else (None, None)
        scores = {"exact": (fwd[0], back[0]), "embed": (fwd[1], back[1])}
        for mode in modes:
            f, b = scores[mode]
            for k, j in enumerate(range(lo, hi)):
                ctx = int(group.contexts[j])
                for m, ai in enumerate(alts[k]):
                    _accumulate(sums, (mode, False), ctx, ai, float(f[k][m]))
                    if b is not None:
                        _accumulate(sums, (mode, True), ctx, ai, float(0.5 * (f[k][m] + b[k][m])))
        advance(hi - lo)
