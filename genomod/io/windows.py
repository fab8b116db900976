"""Fixed-length sequence windows: the :class:`Window` record and tiling helpers (0-based half-open)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    @property
    def length(self) -> int:
        """Window length (including padding)."""
        return self.end - self.start

    @property
    def padded(self) -> bool:
        """True when the window runs past a contig edge."""
        return self.pad_left > 0 or self.pad_right > 0

    def offset(self, pos0: int) -> int:
        """Index into ``seq`` of the 0-based contig position ``pos0``."""
        return pos0 - self.start


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
