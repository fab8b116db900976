"""Cut FASTA files into fixed-length token windows and write train/val HDF5 shards plus a JSON manifest.

    python -m data_prep.make_shards --fasta A.fa.gz [--fasta B.fa ...] --out DIR --window 1024 \
        [--stride N] [--val-contigs chr21,...] [--val-intervals BED] [--exclude BED] [--max-n-frac 0.1]

Output (format described in docs/io.md): ``DIR/train.h5``, ``DIR/val.h5`` (datasets ``tokens`` (N, window)
uint8 and ``index`` (N, 3) int64 = source file, contig, start) and ``DIR/manifest.json``. Contigs are streamed
in chunks (never a whole genome in memory); the output folder appears only when the run completes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from genomod import __version__
from genomod.errors import GenomodError, InputError, Terminated, check_terminated, raise_on_sigterm
from genomod.io.bed import IntervalIndex, read_bed
from genomod.io.contigs import aliases, parse_region_name, same_contig
from genomod.io.fasta import ReferenceGenome
from genomod.io.windows import window_starts
from genomod.tokenizer import N_ID, TOKENIZER_VERSION, encode
from genomod.utils import file_digest, writable_parent

FORMAT = "genomod-shards-1"
SPLITS = ("train", "val")
INDEX_COLUMNS = ("source", "contig", "start")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed."""
    return file_digest(path)


def _block_in_val(seed: int, chrom: str, block: int, frac: float) -> bool:
    digest = hashlib.blake2b(f"{seed}|{chrom}|{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < frac


class _ShardWriter:
    """Appends (tokens, index) rows to a chunked, gzip-compressed HDF5 file."""

    def __init__(self, path: Path, window: int, split: str, attrs: dict, flush_rows: int = 4096) -> None:
        self.h5 = h5py.File(path, "w")
        rows = max(1, min(1024, (1 << 18) // window))
        self.tokens = self.h5.create_dataset(
            "tokens", shape=(0, window), maxshape=(None, window), dtype="uint8",
            chunks=(rows, window), compression="gzip", compression_opts=4, shuffle=False,
        )  # fmt: skip
        self.index = self.h5.create_dataset(
            "index", shape=(0, 3), maxshape=(None, 3), dtype="int64", chunks=(4096, 3), compression="gzip"
        )
        self.h5.attrs.update({"split": split, **attrs})
        self.flush_rows = flush_rows
        self._tok: list[np.ndarray] = []
        self._idx: list[np.ndarray] = []
        self._pending = 0
        self.count = 0

    def add(self, tokens: np.ndarray, index: np.ndarray) -> None:
        if len(tokens) == 0:
            return
        self._tok.append(tokens)
        self._idx.append(index)
        self._pending += len(tokens)
        if self._pending >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        tok = np.concatenate(self._tok)
        idx = np.concatenate(self._idx)
        n0 = self.count
        self.tokens.resize(n0 + len(tok), axis=0)
        self.index.resize(n0 + len(idx), axis=0)
        self.tokens[n0:] = tok
        self.index[n0:] = idx
        self.count += len(tok)
        self._tok, self._idx, self._pending = [], [], 0

    def close(self) -> None:
        self.flush()
        self.h5.close()


def _progress(enabled: bool, total: int):
    if not enabled:
        return contextlib.nullcontext(None), None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
        TimeRemainingColumn(), transient=False,
    )  # fmt: skip
    task = prog.add_task("shards", total=total)
    return prog, task


def _check_settings(fastas: Sequence[str | os.PathLike], out: Path, window: int, stride: int, max_n_frac: float,
                    val_frac: float, overwrite: bool) -> Path:
    """InputError for a bad setting or an output that cannot be written; returns the output's parent folder."""
    if window <= 0 or stride <= 0:
        raise InputError(f"window ({window}) and stride ({stride}) must be positive")
    if not 0.0 <= max_n_frac <= 1.0:
        raise InputError(f"--max-n-frac must be in [0, 1], got {max_n_frac}")
    if not 0.0 <= val_frac < 1.0:
        raise InputError(f"--val-frac must be in [0, 1), got {val_frac}")
    if not fastas:
        raise InputError("no --fasta given")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: output already exists (use --overwrite to replace it)")
    return writable_parent(out)


def make_shards(
    fastas: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    window: int = 1024,
    stride: int | None = None,
    val_contigs: Sequence[str] = (),
    val_intervals: str | os.PathLike | None = None,
    exclude: str | os.PathLike | None = None,
    max_n_frac: float = 0.1,
    seed: int = 0,
    val_frac: float = 0.0,
    val_block: int = 1_000_000,
    chunk_bases: int = 4_000_000,
    overwrite: bool = False,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> dict:
    """Write ``out/train.h5``, ``out/val.h5`` and ``out/manifest.json``; returns the manifest dict."""
    out = Path(out)
    stride = window if stride is None else stride
    parent = _check_settings(fastas, out, window, stride, max_n_frac, val_frac, overwrite)
    refs = [ReferenceGenome(p, cache_dir=cache_dir) for p in fastas]
    excl_ivs = read_bed(exclude) if exclude else []
    val_ivs = read_bed(val_intervals) if val_intervals else []
    excl_index, val_index = IntervalIndex(excl_ivs), IntervalIndex(val_ivs)
    max_n = int(np.floor(max_n_frac * window + 1e-9))

    manifest: dict = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "genomod_version": __version__,
        "tokenizer_version": TOKENIZER_VERSION,
        "window": window,
        "stride": stride,
        "dtype": "uint8",
        "files": {s: f"{s}.h5" for s in SPLITS},
        "datasets": {"tokens": "(N, window) uint8 token ids", "index": "(N, 3) int64"},
        "index_columns": list(INDEX_COLUMNS),
        "sources": [],
        "contigs": [],
        "split": {
            "rule": "val if the contig is in val_contigs, or the window overlaps a val interval, or its "
            "val_block-sized block hashes below val_frac (seeded); else train",
            "val_contigs": list(val_contigs),
            "val_intervals": None,
            "val_frac": val_frac,
            "val_block": val_block,
            "seed": seed,
        },
        "exclusions": None,
        "max_n_frac": max_n_frac,
        "counts": {"train": 0, "val": 0, "dropped_n": 0, "dropped_excluded": 0, "contigs_too_short": 0},
    }
    if val_intervals:
        manifest["split"]["val_intervals"] = {
            "path": str(Path(val_intervals).resolve()), "sha256": file_sha256(val_intervals),
            "intervals": len(val_ivs),
        }  # fmt: skip
    if exclude:
        manifest["exclusions"] = {
            "path": str(Path(exclude).resolve()), "sha256": file_sha256(exclude), "intervals": len(excl_ivs),
            "rule": "windows overlapping any interval (contig matched by alias) are dropped",
        }  # fmt: skip

    attrs = {"window": window, "stride": stride, "tokenizer_version": TOKENIZER_VERSION, "format": FORMAT}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        writers = {s: _ShardWriter(tmp / f"{s}.h5", window, s, attrs) for s in SPLITS}
        try:
            total = sum(sum(r.lengths.values()) for r in refs)
            prog, task = _progress(progress, total)
            with prog:
                for si, ref in enumerate(refs):
                    manifest["sources"].append(
                        {
                            "index": si, "path": str(Path(fastas[si]).resolve()), "name": Path(fastas[si]).name,
                            "sha256": file_sha256(fastas[si]), "size": Path(fastas[si]).stat().st_size,
                            "compression": ref.compression, "contigs": len(ref.contigs),
                        }
                    )  # fmt: skip
                    for name in ref.contigs:
                        check_terminated()
                        entry = _shard_contig(
                            ref, si, name, len(manifest["contigs"]), writers, window, stride, max_n,
                            val_contigs, val_index, excl_index, val_frac, val_block, seed, chunk_bases,
                            manifest["counts"], (lambda n: prog.advance(task, n)) if task is not None else None,
                        )  # fmt: skip
                        manifest["contigs"].append(entry)
        finally:
            for w in writers.values():
                w.close()
        for s in SPLITS:
            manifest["counts"][s] = writers[s].count
        with open(tmp / "manifest.json", "w") as fh:
            json.dump(manifest, fh, indent=2)
            fh.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the final folder the usual permissions
        check_terminated()
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _shard_contig(
    ref, si, name, ci, writers, window, stride, max_n, val_contigs, val_index, excl_index,
    val_frac, val_block, seed, chunk_bases, counts, advance,
) -> dict:  # fmt: skip
    """Stream one contig in chunks, route each window to train/val or drop it; returns its manifest entry."""
    length = ref.lengths[name]
    parsed = parse_region_name(name)
    chrom, offset = (parsed[0], parsed[1]) if parsed else (name, 0)
    contig_val = any(v == name or same_contig(chrom, v) for v in val_contigs)
    entry = {
        "index": ci, "source": si, "name": name, "length": length, "aliases": list(aliases(chrom)),
        "chrom": chrom, "offset": offset,
        "windows": {"train": 0, "val": 0, "dropped_n": 0, "dropped_excluded": 0},
    }  # fmt: skip
    starts = window_starts(length, window, stride)
    if len(starts) == 0:
        counts["contigs_too_short"] += 1
        if advance:
            advance(length)
        return entry
    per_chunk = max(1, (max(chunk_bases, window) - window) // stride + 1)
    per_chunk = min(per_chunk, max(1, (1 << 26) // window))  # <= 64 MB of window copies per chunk
    done = 0
    for k in range(0, len(starts), per_chunk):
        check_terminated()
        st = starts[k : k + per_chunk]
        lo, hi = int(st[0]), int(st[-1]) + window
        tokens = encode(ref.fetch(name, lo, hi)).astype(np.uint8)
        n_cum = np.concatenate([[0], np.cumsum(tokens == N_ID, dtype=np.int64)])
        rel = st - lo
        n_count = n_cum[rel + window] - n_cum[rel]
        gpos = st + offset
        excluded = excl_index.overlaps(chrom, gpos, window)
        too_many_n = (n_count > max_n) & ~excluded
        keep = ~excluded & ~too_many_n
        if contig_val:
            is_val = np.ones(len(st), dtype=bool)
        else:
            is_val = val_index.overlaps(chrom, gpos, window)
            if val_frac > 0:
                blocks = gpos // val_block
                for b in np.unique(blocks):
                    if _block_in_val(seed, chrom, int(b), val_frac):
                        is_val |= blocks == b
        views = np.lib.stride_tricks.sliding_window_view(tokens, window)
        for split, mask in (("train", keep & ~is_val), ("val", keep & is_val)):
            if mask.any():
                idx = np.empty((int(mask.sum()), 3), dtype=np.int64)
                idx[:, 0], idx[:, 1], idx[:, 2] = si, ci, st[mask]
                writers[split].add(np.ascontiguousarray(views[rel[mask]]), idx)
                entry["windows"][split] += int(mask.sum())
        entry["windows"]["dropped_n"] += int(too_many_n.sum())
        entry["windows"]["dropped_excluded"] += int(excluded.sum())
        counts["dropped_n"] += int(too_many_n.sum())
        counts["dropped_excluded"] += int(excluded.sum())
        if advance:
            new_done = hi if k + per_chunk >= len(starts) else int(st[-1]) + stride
            advance(new_done - done)
            done = new_done
    if advance and done < length:
        advance(length - done)
    return entry


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (errors -> one line on stderr, exit code 2)."""
    ap = argparse.ArgumentParser(
        prog="python -m data_prep.make_shards", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ap.add_argument("--fasta", action="append", required=True, help="FASTA (plain/gzip/bgzip); repeatable")
    ap.add_argument("--out", required=True, help="output folder (created atomically)")
    ap.add_argument("--window", type=int, default=1024, help="window length in bases (default 1024)")
    ap.add_argument("--stride", type=int, default=None, help="step between window starts (default: window)")
    ap.add_argument("--val-contigs", default="", help="comma-separated contigs (any alias) for validation")
    ap.add_argument("--val-intervals", default=None, help="BED: windows overlapping these go to validation")
    ap.add_argument("--val-frac", type=float, default=0.0, help="fraction of val-block blocks sent to val")
    ap.add_argument("--val-block", type=int, default=1_000_000, help="block size for --val-frac (bases)")
    ap.add_argument("--exclude", default=None, help="BED: windows overlapping these are dropped")
    ap.add_argument("--max-n-frac", type=float, default=0.1, help="drop windows with a larger N fraction")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --val-frac block hash")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--cache-dir", default=None, help="where plain-gzip FASTAs are re-compressed/indexed")
    args = ap.parse_args(argv)
    if argv is None:
        raise_on_sigterm()
    try:
        manifest = make_shards(
            args.fasta, args.out, window=args.window, stride=args.stride,
            val_contigs=[c for c in args.val_contigs.split(",") if c.strip()], val_intervals=args.val_intervals,
            exclude=args.exclude, max_n_frac=args.max_n_frac, seed=args.seed, val_frac=args.val_frac,
            val_block=args.val_block, overwrite=args.overwrite, progress=not args.no_progress,
            cache_dir=args.cache_dir,
        )  # fmt: skip
    except GenomodError as exc:
        print(f"make_shards: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("make_shards: terminated (SIGTERM); no partial output was kept", file=sys.stderr)
        return 143
    c = manifest["counts"]
    print(
        f"{args.out}: train {c['train']}, val {c['val']} windows of {args.window}; dropped {c['dropped_n']} "
        f"(N > {args.max_n_frac}) and {c['dropped_excluded']} (excluded)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
