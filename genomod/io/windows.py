"""Fixed-length sequence windows: the one :class:`Window` type (0-based half-open) and tiling helpers.

Every model input cut from a reference goes through :meth:`Window.read`: exact scoring (one window per
site), fast scoring (runs of tiles), embeddings, calibration contexts and ``ReferenceGenome.window``.
Positions outside the contig read as N, so callers never special-case contig edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# fetch(contig, start, end) -> bases of [start, end) inside the contig (0-based half-open, case kept)
FetchFn = Callable[[str, int, int], str]


@dataclass(frozen=True)
class Window:
    """A fixed-length window of a contig; positions outside the contig are filled with N.

    ``start``/``end`` are the nominal window coordinates (0-based half-open, may run past either contig
    edge); ``pad_left``/``pad_right`` count the N bases added at the contig edges, so
    ``len(seq) == end - start`` always and the base at 0-based position ``p`` is ``seq[p - start]``.
    """

    seq: str
    start: int
    end: int
    pad_left: int = 0
    pad_right: int = 0
    contig: str = ""

    @classmethod
    def read(cls, fetch: FetchFn, contig: str, start: int, end: int, contig_length: int) -> Window:
        """Window ``[start, end)`` of ``contig`` through ``fetch``, N where it runs past a contig edge."""
        lo = min(max(0, start), end)
        hi = max(min(contig_length, end), lo)
        mid = fetch(contig, lo, hi) if hi > lo else ""
        seq = "N" * (lo - start) + mid + "N" * (end - hi)
        return cls(seq, start, end, lo - start, end - hi, contig)

    @classmethod
    def around(cls, fetch: FetchFn, contig: str, center: int, length: int, contig_length: int) -> Window:
        """Window of ``length`` bases whose base ``length // 2`` is 0-based ``center``."""
        start, end = centered_bounds(center, length)
        return cls.read(fetch, contig, start, end, contig_length)

    @property
    def length(self) -> int:
        """Window length (including padding)."""
        return self.end - self.start

    @property
    def padded(self) -> bool:
        """True when the window runs past a contig edge."""
        return self.pad_left > 0 or self.pad_right > 0

    @property
    def pad(self) -> int:
        """N bases added at the contig edges (both sides)."""
        return self.pad_left + self.pad_right

    def offset(self, pos0: int) -> int:
        """Index into ``seq`` of the 0-based contig position ``pos0``."""
        return pos0 - self.start

    def head(self, length: int) -> Window:
        """The first ``length`` bases of this window (its padding counts recomputed)."""
        length = max(0, min(length, self.length))
        cut = self.length - length
        return Window(self.seq[:length], self.start, self.start + length, min(self.pad_left, length),
                      max(0, self.pad_right - cut), self.contig)


def centered_bounds(center: int, length: int) -> tuple[int, int]:
    """Nominal (start, end) of a window of ``length`` whose base ``length // 2`` is ``center`` (0-based)."""
    start = center - length // 2
    return start, start + length


def window_starts(contig_length: int, window: int, stride: int) -> np.ndarray:
    """Start positions of all full windows of ``window`` bases every ``stride`` bases inside a contig."""
    if window <= 0 or stride <= 0:
        raise ValueError("window and stride must be positive")
    if contig_length < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, contig_length - window + 1, stride, dtype=np.int64)
