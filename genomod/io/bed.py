"""BED intervals (0-based half-open) for exclusion lists, validation intervals and ``--regions``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from genomod.errors import InputError
from genomod.io.contigs import canonical_key
from genomod.utils import check_readable, open_decompressed


@dataclass(frozen=True, order=True)
class Interval:
    """One BED interval: contig, 0-based start, exclusive end, optional name."""

    contig: str
    start: int
    end: int
    name: str | None = None


def read_bed(path: str | os.PathLike) -> list[Interval]:
    """Read a BED file (plain or gzip); header/track/browser/comment lines are skipped; errors name file+line."""
    path = check_readable(path, "BED", allow_empty=True)
    intervals: list[Interval] = []
    lineno = 0
    try:
        with open_decompressed(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                stripped = raw.decode("utf-8").strip()
                if not stripped or stripped.startswith(("#", "track", "browser")):
                    continue
                fields = stripped.split("\t") if "\t" in stripped else stripped.split()
                if len(fields) < 3:
                    raise InputError(f"{path}: line {lineno}: expected at least 3 columns (chrom start end)")
                try:
                    start, end = int(fields[1]), int(fields[2])
                except ValueError:
                    raise InputError(
                        f"{path}: line {lineno}: start/end must be integers, got {fields[1]!r} {fields[2]!r}"
                    ) from None
                if start < 0 or end < start:
                    raise InputError(
                        f"{path}: line {lineno}: invalid interval {start}-{end} (0-based, end >= start)"
                    )
                intervals.append(Interval(fields[0], start, end, fields[3] if len(fields) > 3 else None))
    except UnicodeDecodeError:
        raise InputError(f"{path}: line {lineno}: not a text BED file (undecodable bytes)") from None
    except (EOFError, OSError) as exc:
        raise InputError(f"{path}: cannot read BED file ({exc})") from None
    return intervals


def parse_region(text: str) -> Interval:
    """Parse ``chr17:41196312-41277500`` (1-based inclusive, commas allowed) into a 0-based Interval."""
    try:
        contig, rng = text.strip().rsplit(":", 1)
        a, b = rng.replace(",", "").split("-")
        start, end = int(a) - 1, int(b)
    except ValueError:
        raise InputError(f"invalid region {text!r}: expected CONTIG:START-END (1-based, inclusive)") from None
    if start < 0 or end <= start:
        raise InputError(f"invalid region {text!r}: START must be >= 1 and END >= START")
    return Interval(contig, start, end)


def _key(contig: str) -> str:
    key = canonical_key(contig)
    return f"#{key}" if key is not None else contig


class IntervalIndex:
    """Merged intervals per contig (aliases unified) with vectorised overlap queries."""

    def __init__(self, intervals: Iterable[Interval] = ()) -> None:
        by_contig: dict[str, list[tuple[int, int]]] = {}
        for iv in intervals:
            if iv.end > iv.start:
                by_contig.setdefault(_key(iv.contig), []).append((iv.start, iv.end))
        self._starts: dict[str, np.ndarray] = {}
        self._ends: dict[str, np.ndarray] = {}
        for key, ivs in by_contig.items():
            ivs.sort()
            merged: list[list[int]] = []
            for s, e in ivs:
                if merged and s <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], e)
                else:
                    merged.append([s, e])
            arr = np.asarray(merged, dtype=np.int64)
            self._starts[key], self._ends[key] = arr[:, 0], arr[:, 1]

    def __len__(self) -> int:
        return sum(len(v) for v in self._starts.values())

    def has_contig(self, contig: str) -> bool:
        """True when any interval lies on ``contig`` (alias-aware)."""
        return _key(contig) in self._starts

    def overlaps(self, contig: str, starts: np.ndarray | int, width: int) -> np.ndarray:
        """Boolean mask: does [start, start + width) overlap any interval on ``contig``?"""
        starts = np.atleast_1d(np.asarray(starts, dtype=np.int64))
        key = _key(contig)
        if key not in self._starts:
            return np.zeros(starts.shape, dtype=bool)
        ivs, ive = self._starts[key], self._ends[key]
        idx = np.searchsorted(ive, starts, side="right")  # first interval ending after the window start
        hit = idx < len(ive)
        hit[hit] = ivs[idx[hit]] < starts[hit] + width
        return hit
