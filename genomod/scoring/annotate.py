"""Annotate a VCF with variant-effect scores in one streamed pass (what ``genomod score`` runs).

:class:`VcfSource` opens the input once, keeps a copy of its header for the output, reads the first
``BUILD_SAMPLE`` records ahead and applies the genome-build policy to them (``io.vcf.BuildCheck``: an
error or a warning before any model is loaded). :func:`annotate_vcf` then reads every selected record once
(``--shard`` range, ``--regions``), checks its alleles against the reference, scores them in input order
(``VariantScorer.iter_scores``, plus a supervised-head column when asked) and writes the record back with
its GENOMOD_* INFO fields (``vcf_out``) and, optionally, one TSV row per allele. Every selected record is
written, scored or not; the outputs appear atomically or not at all. Only ``--shard`` reads the file once
more beforehand, to count the records it splits into contiguous blocks.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, groupby, islice
from operator import itemgetter
from pathlib import Path
from typing import Any

import pysam

from genomod.errors import check_terminated
from genomod.io import AlleleChecker, BuildCheck, IntervalIndex, ReferenceGenome, VcfReader
from genomod.io.vcf import BUILD_SAMPLE
from genomod.scoring import vcf_out
from genomod.scoring.scorer import ROW_FIELDS, VariantScorer
from genomod.utils import atomic_path


def shard_range(k: int, n: int, total: int) -> tuple[int, int]:
    """Record-index range [lo, hi) of shard k (1-based) of n: contiguous blocks, so gathering keeps order."""
    return (k - 1) * total // n, k * total // n


def reason_key(reason: str | None) -> str:
    """Group skip reasons for the summary (drop quoted alleles and positions)."""
    text = re.sub(r"'[^']*'", "X", reason or "unknown")
    text = re.sub(r"\S+:\d+", "<pos>", text)
    return re.sub(r"\d+", "N", text)


@dataclass
class AnnotationSummary:
    """What one annotation run did: records written, alleles per outcome, time, and the tabix index."""

    records: int = 0
    counts: Counter = field(default_factory=Counter)  # 'scored' or a reason_key -> alleles
    seconds: float = 0.0
    indexed: bool | None = None  # bgzipped output: whether it could be tabix-indexed (None: plain output)

    @property
    def alleles(self) -> int:
        """Alleles written (scored or skipped)."""
        return sum(self.counts.values())

    @property
    def scored(self) -> int:
        """Alleles with scores."""
        return self.counts.get("scored", 0)

    def skipped(self) -> list[tuple[str, int]]:
        """(grouped reason, alleles) of the skipped alleles, most frequent first."""
        return [(k, n) for k, n in sorted(self.counts.items(), key=lambda kv: -kv[1]) if k != "scored"]


class VcfSource:
    """An input VCF opened once for annotation: build checked on its first records, records selected.

    ``shard=(k, n)`` keeps the k-th of n contiguous blocks of records, ``regions`` the records overlapping
    its intervals; ``strict`` stops at the first REF mismatch or unknown contig. Raises InputError when the
    VCF is on another genome build than ``reference`` (see ``build.warning`` for the milder case).
    """

    def __init__(self, path: str | os.PathLike, reference: ReferenceGenome, strict: bool = False,
                 shard: tuple[int, int] | None = None, regions: IntervalIndex | None = None,
                 sample: int = BUILD_SAMPLE) -> None:
        self.path = Path(path)
        self.reference = reference
        self.strict = strict
        self.regions = regions
        self._reader = VcfReader(self.path)
        # the header written out is copied before any record is read: htslib adds entries (undeclared contigs,
        # INFO fields) to the reader's header while parsing, and those must not reach the output
        self.header: pysam.VariantHeader = self._reader.header.copy()
        try:
            self._records = enumerate(self._reader)
            self._ahead = list(islice(self._records, sample))
            lenient = AlleleChecker(reference, False, str(self.path))
            self.build = BuildCheck.of(
                (item for i, rec in self._ahead for item in self._reader.variants(lenient, i, rec)), sample)
            self.build.raise_if_wrong(self.path, reference.path)
            self.lo, self.hi = 0, math.inf
            if shard is not None:
                with VcfReader(self.path) as reader:
                    self.lo, self.hi = shard_range(*shard, sum(1 for _ in reader))
        except BaseException:
            self.close()
            raise

    @property
    def total(self) -> int | None:
        """Records selected by the shard range (None without ``shard``: not known before reading)."""
        return None if self.hi == math.inf else int(self.hi - self.lo)

    def selected(self, rec_index: int, rec: pysam.VariantRecord) -> bool:
        """Whether record ``rec_index`` is in the shard range and overlaps the regions (when given)."""
        if not self.lo <= rec_index < self.hi:
            return False
        if self.regions is not None:
            return bool(self.regions.overlaps(rec.chrom, rec.pos - 1, max(1, len(rec.ref or "")))[0])
        return True

    def add_header(self, columns: tuple[str, ...], scorer: VariantScorer, mode: str) -> None:
        """Declare the GENOMOD_* fields: in the output header, and in the reader's (records are set through it)."""
        for header in (self.header, self._reader.header):
            vcf_out.add_header(header, columns, scorer.model_name, mode, scorer.window, scorer.rc,
                               scorer.calibration)

    def scored_records(self, scorer: VariantScorer, mode: str, head: Any = None
                       ) -> Iterator[tuple[pysam.VariantRecord, list[dict]]]:
        """Selected records in input order, each with its score rows (one per ALT, or one skip row).

        Records are read once: their alleles stream into ``scorer.iter_scores`` while the records wait in a
        queue until their rows come back (rows keep input order, so they group by ``record_index``).
        """
        checker = AlleleChecker(self.reference, self.strict, str(self.path))
        waiting: deque[tuple[int, pysam.VariantRecord]] = deque()

        def alleles() -> Iterator[Any]:
            for rec_index, rec in chain(self._ahead, self._records):
                if rec_index >= self.hi:
                    return
                if self.selected(rec_index, rec):
                    waiting.append((rec_index, rec))
                    yield from self._reader.variants(checker, rec_index, rec)

        rows = scorer.iter_scores(alleles(), mode)
        if head is not None:
            from genomod.heads.apply import head_column

            rows = head_column(head, scorer, rows, mode)
        for rec_index, group in groupby(rows, key=itemgetter("record_index")):
            index, rec = waiting.popleft()
            if index != rec_index:  # pragma: no cover - every selected record yields at least one row
                raise RuntimeError(f"score rows out of step with records ({rec_index} != {index})")
            yield rec, list(group)

    def close(self) -> None:
        """Close the input."""
        self._reader.close()

    def __enter__(self) -> VcfSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def annotate_vcf(source: VcfSource, scorer: VariantScorer, output: str | os.PathLike, mode: str = "exact",
                 tsv: str | os.PathLike | None = None, head: Any = None,
                 progress: Callable[[int], None] | None = None) -> AnnotationSummary:
    """Write ``output`` (.vcf, or .vcf.gz bgzipped + tabix-indexed) with every selected record of ``source``
    annotated, and ``tsv`` (one row per allele) when given; ``progress(1)`` after each record."""
    output = Path(output)
    gz = vcf_out.vcf_write_mode(output) == "wz"
    columns = scorer.score_columns(mode) + (("head",) if head is not None else ())
    source.add_header(columns, scorer, mode)
    summary = AnnotationSummary()
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp_vcf = stack.enter_context(atomic_path(output, suffix=".vcf.gz" if gz else ""))
        table = None
        if tsv is not None:
            fh = stack.enter_context(open(stack.enter_context(atomic_path(tsv)), "w", newline=""))
            table = csv.DictWriter(fh, [*ROW_FIELDS, *columns, "pad", "status", "reason"], delimiter="\t",
                                   extrasaction="ignore", restval="")
            table.writeheader()
        out = stack.enter_context(vcf_out.VcfTextWriter(tmp_vcf, str(source.header), bgzip=gz))
        for rec, rows in source.scored_records(scorer, mode, head):
            check_terminated()
            vcf_out.annotate(rec, rows, columns)
            out.write(rec)
            for r in rows:
                summary.counts["scored" if r["status"] == "ok" else reason_key(r["reason"])] += 1
                if table is not None:
                    table.writerow(r)
            summary.records += 1
            if progress is not None:
                progress(1)
        out.close()
    if gz:
        summary.indexed = vcf_out.index_vcf(output) is not None
    summary.seconds = time.perf_counter() - start
    return summary
