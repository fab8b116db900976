"""Task data for fine-tuning: read sequences or variants with labels, encode them, and split them.

Sequence tasks read a FASTA (label in the header as ``key=value``, e.g. ``>seq1|label=donor``) or a TSV (a
sequence column and a label column). Sequences longer than ``data.max_length`` are cropped (centre by default)
before anything else, so the duplicate check below compares exactly what the model sees. Splits are by record:
``column`` (a train/val/test column or header key), ``random`` (a seeded hash of the record id) or ``folds``
(K folds from the same hash). A sequence that occurs in two splits is an error (``split.duplicates: error``,
the default) or is dropped from the later split (``drop``: train keeps it, then val, then test; for folds the
lowest fold keeps it); the count goes into the task card.

Variant tasks read a TSV (chrom, pos, ref, alt + a label or score column) or a VCF (label/score from an INFO
key) and a reference FASTA; REF alleles that do not match the reference are dropped and counted. Folds group
variants by genomic block (chrom, ``pos // split.block_size``) with ``genomod.heads.grouped_folds``, so no block
is ever in two folds; a given split column is checked for the same property.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomod.errors import ConfigError, InputError
from genomod.finetuning.config import FinetuneConfig, SplitArgs, resolve_data_path
from genomod.tokenizer import encode
from genomod.utils import file_digest

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test"}
SPLIT_ORDER = ("train", "val", "test")
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz")
VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")


@dataclass
class TaskData:
    """Encoded rows of a task with labels and their split (``split`` names or ``fold`` indices)."""

    kind: str  # sequence-classification | sequence-regression | variant-effect
    target: str  # classification | regression
    ids: list[str]
    y: np.ndarray  # class index (int64) or target value (float64)
    classes: list[str] | None
    split: np.ndarray  # per row: 'train' / 'val' / 'test', or 'fold<K>' (method folds)
    folds: np.ndarray | None  # method folds: fold index per row
    groups: np.ndarray  # sequence digest (sequences) or genomic block (variants)
    tokens: list[np.ndarray] = field(default_factory=list)  # sequence tasks (cropped)
    ref_tokens: np.ndarray | None = None  # variant tasks (N, window)
    alt_tokens: np.ndarray | None = None
    variants: pd.DataFrame | None = None  # variant tasks: chrom, pos, ref, alt
    files: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    label_map: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, *names: str) -> np.ndarray:
        """Row indices whose split is one of ``names``."""
        return np.flatnonzero(np.isin(self.split, list(names)))


def _record_unit(seed: int, rid: str) -> float:
    digest = hashlib.blake2b(f"{seed}|{rid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def _format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    name = path.name.lower()
    if name.endswith(FASTA_SUFFIXES):
        return "fasta"
    if name.endswith(VCF_SUFFIXES):
        return "vcf"
    return "tsv"


def _read_tsv(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable TSV ({str(exc).splitlines()[0]})") from None
    if df.empty:
        raise InputError(f"{path}: no rows")
    return df


def _need_column(df: pd.DataFrame, path: Path, column: str, key: str) -> None:
    if column not in df.columns:
        raise InputError(f"{path}: no column {column!r} ({key}; columns: {', '.join(map(str, df.columns))})")


def _header_value(header: str, key: str) -> str | None:
    m = re.search(rf"(?:^|[|\s;,]){re.escape(key)}=([^|\s;,]+)", header)
    return m.group(1) if m else None


def _read_fasta_records(path: Path, label_key: str, split_key: str | None) -> pd.DataFrame:
    import pysam

    rows = []
    try:
        with pysam.FastxFile(str(path)) as fh:
            for i, rec in enumerate(fh):
                header = rec.name + (" " + rec.comment if rec.comment else "")
                rows.append({"id": rec.name, "sequence": rec.sequence or "",
                             "label": _header_value(header, label_key),
                             "split": _header_value(header, split_key) if split_key else None, "line": i})
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable FASTA ({exc})") from None
    if not rows:
        raise InputError(f"{path}: no FASTA records")
    df = pd.DataFrame(rows)
    missing = df["label"].isna()
    if missing.all():
        raise InputError(f"{path}: no record header carries the label key {label_key!r} (data.label_column; "
                         f"expected e.g. '>{rows[0]['id']}|{label_key}=VALUE')")
    return df


def _labels(values: pd.Series, cfg: FinetuneConfig, path: Path, key: str
            ) -> tuple[np.ndarray, list[str] | None, str, dict[str, Any]]:
    """(y, classes, target kind, label map); rows outside the task get y = NaN (class tasks: -1)."""
    d = cfg.data
    if cfg.task == "sequence-regression" or (cfg.is_variant and d.score_column is not None):
        y = pd.to_numeric(values, errors="coerce")
        bad = y.isna() & values.notna()
        if bad.any():
            raise InputError(f"{path}: {key} value {values[bad].iloc[0]!r} is not a number")
        return y.to_numpy(dtype=np.float64), None, "regression", {}
    v = values.astype("string").str.strip()
    if d.positive:
        pos = set(d.positive)
        neg = set(d.negative) if d.negative else None
        y = np.full(len(v), -1, dtype=np.int64)
        present = v.notna().to_numpy()
        is_pos = v.isin(pos).fillna(False).to_numpy(dtype=bool)
        is_neg = (v.isin(neg).fillna(False).to_numpy(dtype=bool) if neg is not None else present & ~is_pos)
        y[is_neg] = 0
        y[is_pos] = 1
        if not is_pos.any():
            raise InputError(f"{path}: no row has a positive label {sorted(pos)} in {key} "
                             f"(values: {', '.join(sorted(map(str, v.dropna().unique()))[:10])})")
        return y, ["negative", "positive"], "classification", {"positive": sorted(pos),
                                                               "negative": sorted(neg) if neg else "all other"}
    classes = list(d.classes) if d.classes else sorted(map(str, v.dropna().unique()))
    if len(classes) < 2:
        raise InputError(f"{path}: {key} has fewer than two label values ({classes})")
    if cfg.is_variant and len(classes) != 2:
        raise InputError(f"{path}: variant-effect labels must be binary; {key} has {len(classes)} values: set "
                         "data.positive (and data.negative)")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(str(x), -1) if x is not pd.NA else -1 for x in v], dtype=np.int64)
    return y, classes, "classification", {"classes": classes}


def _digest(tokens: np.ndarray) -> str:
    return hashlib.blake2b(tokens.astype(np.uint8).tobytes(), digest_size=12).hexdigest()


def _crop(tokens: np.ndarray, max_length: int, how: str) -> np.ndarray:
    if len(tokens) <= max_length:
        return tokens
    start = (len(tokens) - max_length) // 2 if how == "center" else 0
    return tokens[start : start + max_length]


def _dedupe(split: np.ndarray, groups: np.ndarray, order: list[str], mode: str, ids: list[str]) -> np.ndarray:
    """Rows to drop so that no group (sequence digest) is in two splits (``order``: who keeps it first)."""
    rank = {s: i for i, s in enumerate(order)}
    best: dict[str, int] = {}
    first_id: dict[str, str] = {}
    for i, (s, g) in enumerate(zip(split, groups)):
        r = rank[s]
        if g not in best or r < best[g]:
            best[g] = r
            first_id[g] = ids[i]
    drop = np.array([rank[s] != best[g] for s, g in zip(split, groups)], dtype=bool)
    if drop.any() and mode == "error":
        i = int(np.flatnonzero(drop)[0])
        raise InputError(f"record {ids[i]!r} ({split[i]}) has the same sequence as {first_id[groups[i]]!r} "
                         f"({order[best[groups[i]]]}); set split.duplicates: drop to drop such copies from the "
                         "later split")
    return drop


def _read_sequences(cfg: FinetuneConfig, path: Path, fmt: str) -> tuple[pd.DataFrame, str]:
    """A frame with id, sequence, label, split from a FASTA (labels in headers) or TSV; the label key for messages."""
    d, s = cfg.data, cfg.split
    split_key = s.column if s.method == "column" else None
    if fmt == "fasta":
        return (_read_fasta_records(path, d.label_column, split_key),
                f"header key {d.label_column!r} (data.label_column)")
    df = _read_tsv(path)
    _need_column(df, path, d.sequence_column, "data.sequence_column")
    _need_column(df, path, d.label_column, "data.label_column")
    if split_key:
        _need_column(df, path, split_key, "split.column")
    ids = df[d.id_column] if d.id_column else pd.Series([f"row{i + 1}" for i in range(len(df))])
    if d.id_column:
        _need_column(df, path, d.id_column, "data.id_column")
    df = pd.DataFrame({"id": ids.astype(str).to_numpy(), "sequence": df[d.sequence_column].fillna(""),
                       "label": df[d.label_column], "split": df[split_key] if split_key else None})
    return df, f"column {d.label_column!r} (data.label_column)"


def _split_column(df: pd.DataFrame, path: Path, column: str, name: Any) -> np.ndarray:
    """The train / val / test split of each row from the split column (``name(i)`` names row i in errors)."""
    raw = df["split"].astype("string").str.strip().str.lower()
    bad = ~raw.isin(list(SPLIT_NAMES)).fillna(False)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}: {name(i)}: split {df['split'].iloc[i]!r} (split.column "
                         f"{column!r}) is not one of train, val, test")
    return np.array([SPLIT_NAMES[x] for x in raw], dtype=object)


def _sequence_split(s: SplitArgs, df: pd.DataFrame, ids: list[str], path: Path
                    ) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Split name per record, the split order (for de-duplication) and the folds (method folds only)."""
    if s.method == "column":
        return _split_column(df, path, s.column, lambda i: f"record {ids[i]!r}"), list(SPLIT_ORDER), None
    u = np.array([_record_unit(int(s.seed), rid) for rid in ids])
    if s.method == "random":
        split = np.where(u < s.test_fraction, "test",
                         np.where(u < s.test_fraction + s.val_fraction, "val", "train")).astype(object)
        return split, list(SPLIT_ORDER), None
    folds = np.minimum((u * int(s.n_folds)).astype(np.int64), int(s.n_folds) - 1)
    split = np.array([f"fold{k}" for k in folds], dtype=object)
    return split, [f"fold{k}" for k in range(int(s.n_folds))], folds


def load_sequence_task(cfg: FinetuneConfig, max_seqlen: int) -> TaskData:
    """Read, label, crop, encode and split a sequence task."""
    d, s = cfg.data, cfg.split
    path = cfg.data_path
    fmt = _format(path, d.format)
    if fmt == "vcf":
        raise ConfigError(f"data.path: {path} is a VCF, but task {cfg.task} reads sequences (FASTA or TSV); use "
                          "task: variant-effect for variants")
    df, label_key = _read_sequences(cfg, path, fmt)
    y, classes, target, label_map = _labels(df["label"], cfg, path, label_key)
    max_length = int(d.max_length or max_seqlen)
    if max_length > max_seqlen:
        raise ConfigError(f"data.max_length: {max_length} exceeds the base model's max_seqlen {max_seqlen}")
    counts: dict[str, Any] = {"records": len(df)}
    keep = (y >= 0) if target == "classification" else np.isfinite(y)
    empty = df["sequence"].str.len().to_numpy() == 0
    counts["dropped_no_label"] = int((~keep).sum())
    counts["dropped_empty"] = int((keep & empty).sum())
    keep &= ~empty
    df, y = df[keep].reset_index(drop=True), y[keep]
    tokens = [_crop(encode(seq), max_length, d.crop) for seq in df["sequence"]]
    groups = np.array([_digest(t) for t in tokens], dtype=object)
    ids = df["id"].astype(str).tolist()
    split, order, folds = _sequence_split(s, df, ids, path)
    drop = _dedupe(split, groups, order, s.duplicates, ids)
    counts["dropped_duplicates"] = int(drop.sum())
    within = pd.Series(groups[~drop]).duplicated().sum()
    counts["duplicates_within_splits"] = int(within)
    sel = ~drop
    tokens = [t for t, k in zip(tokens, sel) if k]
    data = TaskData(cfg.task, target, [i for i, k in zip(ids, sel) if k], y[sel], classes, split[sel],
                    None if folds is None else folds[sel], groups[sel], tokens=tokens, label_map=label_map)
    data.files = [{"path": str(path), "sha256": file_digest(path), "format": fmt}]
    data.counts = {**counts, "used": len(data), "max_length": max_length,
                   "by_split": {str(k): int(v) for k, v in zip(*np.unique(data.split, return_counts=True))}}
    _check_splits(data, cfg)
    return data


def _read_variants(cfg: FinetuneConfig, path: Path, fmt: str, with_split: bool = True
                   ) -> tuple[pd.DataFrame, str, str]:
    """A frame with chrom, pos, ref, alt, label (and split, unless ``with_split`` is off); the label column key
    for messages."""
    d, s = cfg.data, cfg.split
    col = d.score_column or d.label_column
    key = "data.score_column" if d.score_column else "data.label_column"
    split_key = s.column if s.method == "column" and with_split else None
    if fmt == "vcf":
        import pysam

        rows = []
        try:
            with pysam.VariantFile(str(path)) as vf:
                if col not in vf.header.info:
                    raise InputError(f"{path}: no INFO field {col!r} ({key}; INFO: {', '.join(vf.header.info)})")
                for rec in vf:
                    for j, alt in enumerate(rec.alts or ()):
                        val = rec.info.get(col)
                        if isinstance(val, tuple):
                            val = val[j] if j < len(val) else None
                        sp = rec.info.get(split_key) if split_key else None
                        rows.append({"chrom": rec.chrom, "pos": rec.pos, "ref": rec.ref, "alt": alt,
                                     "label": None if val is None else str(val), "split": sp,
                                     "id": rec.id or f"{rec.chrom}:{rec.pos}:{rec.ref}>{alt}"})
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable VCF ({exc})") from None
        if not rows:
            raise InputError(f"{path}: no variant records")
        return pd.DataFrame(rows), f"INFO {col!r} ({key})", col
    df = _read_tsv(path)
    df.columns = [c.lstrip("#").lower() if c.lstrip("#").lower() in ("chrom", "pos", "ref", "alt") else c
                  for c in df.columns]
    missing = [c for c in ("chrom", "pos", "ref", "alt") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (variant-effect TSVs need chrom, pos, "
                         f"ref, alt)")
    _need_column(df, path, col, key)
    if split_key:
        _need_column(df, path, split_key, "split.column")
    pos = pd.to_numeric(df["pos"], errors="coerce")
    if pos.isna().any():
        raise InputError(f"{path}: row {int(np.flatnonzero(pos.isna().to_numpy())[0]) + 2}: pos is not a number")
    out = pd.DataFrame({"chrom": df["chrom"].astype(str), "pos": pos.astype(np.int64), "ref": df["ref"].astype(str),
                        "alt": df["alt"].astype(str), "label": df[col],
                        "split": df[split_key] if split_key else None})
    out["id"] = out["chrom"] + ":" + out["pos"].astype(str) + ":" + out["ref"] + ">" + out["alt"]
    return out, f"column {col!r} ({key})", col


def _variant_windows(ref: Any, df: pd.DataFrame, contigs: list[str], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference and alternative token windows (N, window) around each variant."""
    from genomod.scoring.exact import build_site

    ref_tok = np.empty((len(df), window), dtype=np.int64)
    alt_tok = np.empty((len(df), window), dtype=np.int64)
    for i, (row, contig) in enumerate(zip(df.itertuples(index=False), contigs)):
        site = build_site(ref.fetch, contig, int(row.pos) - 1, [(row.ref.upper(), row.alt.upper())], window,
                          ref.lengths[contig])
        ref_tok[i], alt_tok[i] = site.ref_tokens, site.alt_tokens[0]
    return ref_tok, alt_tok


def _variant_split(s: SplitArgs, df: pd.DataFrame, groups: np.ndarray, ids: list[str], path: Path
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Split name per variant and the folds (method folds: grouped by genomic block); a column split must keep
    each block in one split."""
    if s.method == "folds":
        from genomod.heads.cv import grouped_folds

        folds = grouped_folds(groups, int(s.n_folds), int(s.seed))
        return np.array([f"fold{k}" for k in folds], dtype=object), folds
    split = _split_column(df, path, s.column, lambda i: f"variant {ids[i]}")
    for g, sub in pd.DataFrame({"g": groups, "s": split}).groupby("g")["s"]:
        if sub.nunique() > 1:
            raise InputError(f"{path}: genomic block {g} (split.block_size {s.block_size}) has variants in "
                             f"{', '.join(sorted(sub.unique()))}: neighbouring variants share their context, "
                             "so keep each block in one split")
    return split, None


@dataclass
class _VariantRows:
    """One variant file read, labelled, checked against its reference and windowed."""

    df: pd.DataFrame
    y: np.ndarray
    classes: list[str] | None
    target: str
    label_map: dict[str, Any]
    contigs: list[str]
    ref_tokens: np.ndarray
    alt_tokens: np.ndarray
    files: list[dict[str, Any]]
    counts: dict[str, Any]


def _load_variant_rows(cfg: FinetuneConfig, path: Path, ref_path: Path, window: int,
                       with_split: bool = True) -> _VariantRows:
    """Read, label and window the variants of ``path`` on ``ref_path`` (rows without a label or whose REF does not
    match the reference are dropped and counted; ``with_split``: read the split column of method column)."""
    from genomod.io import ReferenceGenome

    fmt = _format(path, cfg.data.format)
    if fmt == "fasta":
        raise ConfigError(f"data.path: {path} is a FASTA, but variant-effect reads variants (VCF or TSV with "
                          "chrom, pos, ref, alt); use task: sequence-classification for labelled sequences")
    df, label_key, _ = _read_variants(cfg, path, fmt, with_split)
    y, classes, target, label_map = _labels(df["label"], cfg, path, label_key)
    ref = ReferenceGenome(ref_path)
    counts: dict[str, Any] = {"records": len(df)}
    keep = (y >= 0) if target == "classification" else np.isfinite(y)
    counts["dropped_no_label"] = int((~keep).sum())
    contigs, ok_ref = [], np.zeros(len(df), dtype=bool)
    for i, row in enumerate(df.itertuples(index=False)):
        try:
            contig = ref.resolve(row.chrom)
        except Exception:  # noqa: BLE001 - unknown contig: counted below
            contigs.append(None)
            continue
        contigs.append(contig)
        start = int(row.pos) - 1
        ok_ref[i] = (set(row.alt.upper()) <= set("ACGTN") and len(row.ref) <= window - window // 2
                     and ref.fetch(contig, start, start + len(row.ref)).upper() == row.ref.upper())
    counts["dropped_ref_mismatch_or_unknown_contig"] = int((keep & ~ok_ref).sum())
    keep &= ok_ref
    if not keep.any():
        raise InputError(f"{path}: no labelled variant matches reference {ref_path} (wrong genome build?)")
    df = df[keep].reset_index(drop=True)
    contigs = [c for c, k in zip(contigs, keep) if k]
    ref_tok, alt_tok = _variant_windows(ref, df, contigs, window)
    files = [{"path": str(path), "sha256": file_digest(path), "format": fmt},
             {"path": str(ref_path), "sha256": file_digest(ref_path), "format": "fasta", "role": "reference"}]
    return _VariantRows(df, y[keep], classes, target, label_map, contigs, ref_tok, alt_tok, files, counts)


def load_variant_task(cfg: FinetuneConfig, max_seqlen: int) -> TaskData:
    """Read, label, window, encode and split (by genomic block) a variant-effect task; ``data.auxiliary`` rows
    join with split ``aux`` (fold -1): in the training rows of every fit, never evaluated."""
    d, s = cfg.data, cfg.split
    path = cfg.data_path
    window = int(d.window or min(max_seqlen, 8192))
    if window > max_seqlen:
        raise ConfigError(f"data.window: {window} exceeds the base model's max_seqlen {max_seqlen}")
    main = _load_variant_rows(cfg, path, cfg.reference_path, window)
    df, contigs = main.df, main.contigs
    block = int(s.block_size)
    if len(set(contigs)) == 1:  # one contig: the block ids of genomod.heads (pos // block), hence its folds
        from genomod.heads.cv import genomic_blocks

        groups = genomic_blocks(df["pos"].to_numpy(np.int64), block).astype(object)
    else:
        groups = np.array([f"{c}:{p // block}" for c, p in zip(contigs, df["pos"].to_numpy())], dtype=object)
    ids = df["id"].astype(str).tolist()
    split, folds = _variant_split(s, df, groups, ids, path)
    y, ref_tok, alt_tok, files = main.y, main.ref_tokens, main.alt_tokens, list(main.files)
    counts: dict[str, Any] = dict(main.counts)
    variants = df[["chrom", "pos", "ref", "alt"]]
    if d.auxiliary is not None:
        aux_path = resolve_data_path(d.auxiliary["path"], "data.auxiliary.path")
        aux = _load_variant_rows(cfg, aux_path, resolve_data_path(d.auxiliary["reference"],
                                                                  "data.auxiliary.reference"), window,
                                 with_split=False)
        if aux.target != main.target or aux.classes != main.classes:
            raise InputError(f"{aux_path}: auxiliary labels give classes {aux.classes} ({aux.target}), the task "
                             f"{main.classes} ({main.target})")
        n = len(aux.df)
        ids += [f"aux:{i}" for i in aux.df["id"].astype(str)]
        y = np.concatenate([y, aux.y])
        split = np.concatenate([split, np.full(n, "aux", dtype=object)])
        folds = None if folds is None else np.concatenate([folds, np.full(n, -1, dtype=folds.dtype)])
        groups = np.concatenate([groups, np.array([f"aux:{c}" for c in aux.contigs], dtype=object)])
        ref_tok, alt_tok = np.concatenate([ref_tok, aux.ref_tokens]), np.concatenate([alt_tok, aux.alt_tokens])
        variants = pd.concat([variants, aux.df[["chrom", "pos", "ref", "alt"]]], ignore_index=True)
        files += [{**f, "role": "auxiliary" if f.get("role") is None else "auxiliary reference"} for f in aux.files]
        counts["auxiliary"] = {**aux.counts, "used": n}
    data = TaskData(cfg.task, main.target, ids, y, main.classes, split, folds, groups, ref_tokens=ref_tok,
                    alt_tokens=alt_tok, variants=variants.copy(), label_map=main.label_map)
    data.files = files
    data.counts = {**counts, "used": len(data), "window": window, "blocks": int(len(set(groups))),
                   "block_size": block,
                   "by_split": {str(k): int(v) for k, v in zip(*np.unique(data.split, return_counts=True))}}
    _check_splits(data, cfg)
    return data


def _check_splits(data: TaskData, cfg: FinetuneConfig) -> None:
    if cfg.split.method == "folds":
        if len(np.unique(data.folds[data.folds >= 0])) < int(cfg.split.n_folds):
            raise InputError(f"{cfg.data.path}: too few rows for {cfg.split.n_folds} folds")
        return
    if not len(data.rows("train", "aux")):
        raise InputError(f"{cfg.data.path}: no training rows after splitting ({data.counts['by_split']})")
    if data.target == "classification" and len(np.unique(data.y[data.rows("train", "aux")])) < 2:
        raise InputError(f"{cfg.data.path}: the training rows hold a single class")


def load_task(cfg: FinetuneConfig, max_seqlen: int) -> TaskData:
    """Task data for ``cfg`` (the base model's ``max_seqlen`` bounds lengths and windows)."""
    if cfg.is_variant:
        return load_variant_task(cfg, max_seqlen)
    return load_sequence_task(cfg, max_seqlen)


__all__ = ["TaskData", "load_sequence_task", "load_task", "load_variant_task"]
