"""Variants from VCF/VCF.gz/BCF (pysam) or tuples: one :class:`Variant` per ALT allele, checked against a FASTA.

Records that cannot be scored are never dropped silently: they are yielded as :class:`SkippedVariant`
with a one-line ``reason``. Positions are 1-based here (as in the VCF); everything downstream is 0-based.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pysam

from genomod.errors import InputError
from genomod.io.fasta import ReferenceGenome
from genomod.utils import StderrCapture, capture_stderr_fd, check_readable, open_decompressed

_ACGT = re.compile(r"^[ACGT]+$")
_SYMBOLIC = re.compile(r"^<.*>$|[\[\]]|^\.[A-Za-z]+$|^[A-Za-z]+\.$")

KINDS = ("snv", "mnv", "insertion", "deletion", "complex")


@dataclass(frozen=True)
class Variant:
    """One REF>ALT allele (1-based ``pos``); ``contig`` is the reference's name for ``chrom`` when checked."""

    chrom: str
    pos: int
    ref: str
    alt: str
    id: str | None = None
    record_index: int = 0
    allele_index: int = 1
    kind: str = "snv"
    contig: str | None = None

    status = "ok"  # class attributes (not fields): same interface as SkippedVariant
    reason = None

    @property
    def start(self) -> int:
        """0-based start of REF."""
        return self.pos - 1

    @property
    def end(self) -> int:
        """0-based exclusive end of REF."""
        return self.pos - 1 + len(self.ref)


@dataclass(frozen=True)
class SkippedVariant:
    """A record/allele that was not turned into a Variant, with the reason (never dropped silently)."""

    chrom: str
    pos: int
    ref: str | None
    alt: str | None
    reason: str
    id: str | None = None
    record_index: int = 0
    allele_index: int = 0

    status = "skipped"


def variant_kind(ref: str, alt: str) -> str:
    """'snv', 'mnv' (same length > 1), 'insertion', 'deletion' (after trimming shared bases) or 'complex'."""
    if len(ref) == len(alt):
        return "snv" if len(ref) == 1 else "mnv"
    i = 0
    while i < min(len(ref), len(alt)) and ref[i] == alt[i]:
        i += 1
    r, a = ref[i:], alt[i:]
    j = 0
    while j < min(len(r), len(a)) and r[-1 - j] == a[-1 - j]:
        j += 1
    r, a = r[: len(r) - j], a[: len(a) - j]
    if not r:
        return "insertion"
    if not a:
        return "deletion"
    return "complex"


# Genome-build policy: the REF alleles of the first BUILD_SAMPLE records are compared with the reference.
BUILD_SAMPLE = 200
BUILD_MIN_CHECKED = 20  # below this many alleles a high mismatch rate only warns (too few to judge the build)
BUILD_ERROR, BUILD_WARN = 0.10, 0.01  # mismatch rates above which the build is refused / warned about


@dataclass(frozen=True)
class BuildCheck:
    """REF mismatches among checked alleles of a VCF's first records: the one genome-build policy.

    More than ``BUILD_ERROR`` mismatching (with at least ``BUILD_MIN_CHECKED`` alleles checked) means the
    VCF is on another build than the FASTA (an error); more than ``BUILD_WARN`` is a warning.
    """

    checked: int = 0
    mismatched: int = 0
    sample: int = BUILD_SAMPLE

    @classmethod
    def of(cls, items: Iterable[Variant | SkippedVariant], sample: int = BUILD_SAMPLE) -> BuildCheck:
        """Count the checked and mismatching alleles among ``items`` (non-strict checker output)."""
        checked = mismatched = 0
        for item in items:
            if item.status == "ok":
                checked += 1
            elif item.reason and "does not match reference" in item.reason:
                checked += 1
                mismatched += 1
        return cls(checked, mismatched, sample)

    @property
    def rate(self) -> float:
        """Fraction of checked REF alleles that do not match the reference."""
        return self.mismatched / self.checked if self.checked else 0.0

    @property
    def wrong_build(self) -> bool:
        """True when the mismatch rate says the VCF is on another genome build (an error)."""
        return self.checked >= BUILD_MIN_CHECKED and self.rate > BUILD_ERROR

    def raise_if_wrong(self, vcf: str | os.PathLike, reference: str | os.PathLike) -> None:
        """InputError naming both files when :attr:`wrong_build`."""
        if self.wrong_build:
            raise InputError(
                f"{vcf}: {self.rate:.1%} of REF alleles ({self.mismatched}/{self.checked} in the first {self.sample} "
                f"records) do not match reference {reference}: is the VCF on another genome build?"
            )

    def warning(self, reference: str | os.PathLike) -> str | None:
        """A one-line warning when some REF alleles mismatch (also when too few to be an error), else None."""
        if self.wrong_build or not self.checked or self.rate <= BUILD_WARN:
            return None
        return (f"{self.rate:.1%} of REF alleles ({self.mismatched}/{self.checked}) do not match reference "
                f"{reference}: check the genome build; mismatching alleles are skipped")


class AlleleChecker:
    """Turns one record's alleles into Variants or SkippedVariants checked against the reference (shared by
    VCF, tuple and DataFrame input); ``strict`` raises on a REF mismatch or an unknown contig instead."""

    def __init__(self, reference: ReferenceGenome | None, strict: bool, source: str) -> None:
        self.reference = reference
        self.strict = strict
        self.source = source

    def check(
        self,
        chrom: str,
        pos: int,
        ref: str,
        alts: tuple[str, ...] | None,
        vid: str | None,
        rec: int,
        where: str,
    ) -> Iterator[Variant | SkippedVariant]:
        """One Variant or SkippedVariant per ALT of a record (``where`` names it in strict-mode errors)."""
        ref = (ref or "").upper()

        def skip(alt: str | None, idx: int, reason: str) -> SkippedVariant:
            return SkippedVariant(chrom, pos, ref, alt, reason, vid, rec, idx)

        if not alts:
            yield skip(None, 0, "no ALT allele ('.')")
            return
        contig = None
        ref_problem = None
        if self.reference is not None:
            contig = self.reference.contig_map.get(chrom)
            if contig is None:
                close = self.reference.contig_map.suggest(chrom)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                if self.strict:
                    raise InputError(
                        f"{self.source}: {where}: contig {chrom!r} is not in reference {self.reference.path}{hint}"
                    )
                for i, alt in enumerate(alts, start=1):
                    yield skip(alt, i, f"contig {chrom!r} not in reference{hint}")
                return
            ref_problem = self._ref_problem(contig, pos, ref)
            if ref_problem is not None and self.strict:
                raise InputError(f"{self.source}: {where}: {ref_problem}")
        for i, alt in enumerate(alts, start=1):
            alt_u = (alt or ".").upper()
            reason = _allele_problem(ref, alt, alt_u) or ref_problem
            if reason is not None:
                yield skip(alt, i, reason)
            else:
                yield Variant(chrom, pos, ref, alt_u, vid, rec, i, variant_kind(ref, alt_u), contig)

    def _ref_problem(self, contig: str, pos: int, ref: str) -> str | None:
        """Why REF (uppercase) at 1-based ``pos`` cannot be used with the reference, or None."""
        size = self.reference.lengths[contig]
        if pos < 1:
            return f"POS {pos} is not a valid 1-based position"
        if pos > size:
            return f"position {pos} is beyond the end of {contig} (length {size})"
        if pos - 1 + len(ref) > size:
            return f"REF of {len(ref)} bases at {contig}:{pos} runs past the end of {contig} (length {size})"
        if _ACGT.match(ref):
            expected = self.reference.fetch(contig, pos - 1, pos - 1 + len(ref)).upper()
            if expected != ref:
                return f"REF {ref!r} does not match reference {expected!r} at {contig}:{pos}"
        return None


def _allele_problem(ref: str, alt: str | None, alt_u: str) -> str | None:
    """Why a REF>ALT pair cannot be scored whatever the reference says (first reason that applies), or None."""
    if alt_u == "*":
        return "spanning deletion allele '*'"
    if alt_u in (".", ""):
        return "missing ALT allele ('.')"
    if _SYMBOLIC.search(alt_u):
        return f"symbolic/breakend ALT {alt!r} cannot be scored"
    if not ref or not _ACGT.match(ref):
        return f"REF {ref!r} contains non-ACGT bases (N or IUPAC)"
    if not _ACGT.match(alt_u):
        return f"ALT {alt!r} contains non-ACGT bases (N or IUPAC)"
    if alt_u == ref:
        return "ALT equals REF"
    return None


def _open_vcf(path: Path) -> tuple[pysam.VariantFile, int | None]:
    """Open a VCF/BCF with pysam; returns the handle and the number of header lines (text VCF only)."""
    check_readable(path, "VCF")
    n_header: int | None = None
    try:
        with open_decompressed(path) as fh:
            first = fh.read(5)
            if first[:3] == b"BCF":
                n_header = None
            elif not first:
                raise InputError(f"{path}: VCF file is empty")
            elif not first.startswith(b"##") and not first.startswith(b"#CHR"):
                raise InputError(f"{path}: not a VCF file (no '##fileformat' header line)")
            else:
                fh.seek(0)
                n_header = 0
                chrom_line = False
                for line in fh:
                    if not line.startswith(b"#"):
                        break
                    n_header += 1
                    chrom_line = line.startswith(b"#CHROM")
                if not chrom_line:
                    raise InputError(f"{path}: line {n_header + 1}: no '#CHROM' header line before the records")
    except EOFError:
        raise InputError(f"{path}: truncated gzip file (unexpected end of data)") from None
    except (OSError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt compressed VCF ({exc})") from None
    with capture_stderr_fd() as log:
        try:
            vf = pysam.VariantFile(str(path))
        except (OSError, ValueError) as exc:
            vf = None
            error = exc
    if vf is None:
        detail = " ".join("".join(log).split())[:160] or str(error)
        raise InputError(f"{path}: not a valid VCF/BCF file ({detail})")
    return vf, n_header


def _diagnose_line(path: Path, line_no: int) -> str | None:
    """Why text VCF line ``line_no`` cannot be parsed (column count, POS), or None when it looks fine."""
    try:
        with open_decompressed(path) as fh:
            raw = next(islice(fh, line_no - 1, None), None)
        if raw is None:
            return None
    except (OSError, EOFError, zlib.error):
        return None
    fields = raw.decode("utf-8", "replace").rstrip("\r\n").split("\t")
    if len(fields) < 8:
        hint = "; columns must be separated by tabs, not spaces" if " " in fields[0] else ""
        return f"{len(fields)} tab-separated columns, a VCF record needs at least 8{hint}"
    if not fields[1].isdigit():
        return f"POS {fields[1]!r} is not a positive integer"
    return None


class VcfReader:
    """Records of a VCF/VCF.gz/BCF through pysam; a record htslib cannot parse becomes an InputError that
    names the file, the record number and (text VCF) the line, with the reason when it can be told."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._vf, self._n_header = _open_vcf(self.path)

    @property
    def header(self) -> pysam.VariantHeader:
        return self._vf.header

    def where(self, rec_index: int) -> str:
        """'record K (line L)' for 0-based record index ``rec_index``."""
        line = f" (line {self._n_header + rec_index + 1})" if self._n_header else ""
        return f"record {rec_index + 1}{line}"

    def __iter__(self) -> Iterator[pysam.VariantRecord]:
        it = iter(self._vf)
        rec_index = 0
        capture = StderrCapture()  # one temporary file for the whole iteration
        try:
            while True:
                with capture() as log:
                    try:
                        rec = next(it)
                        error = None
                    except StopIteration:
                        return
                    except (OSError, ValueError) as exc:
                        error = exc
                if error is not None:
                    why = _diagnose_line(self.path, self._n_header + rec_index + 1) if self._n_header else None
                    detail = why or " ".join("".join(log).split())[:160] or str(error)
                    raise InputError(f"{self.path}: {self.where(rec_index)}: malformed VCF record ({detail})")
                try:
                    str(rec)  # pysam decodes fields lazily: fail here, naming the record, not later
                except UnicodeDecodeError as exc:
                    raise InputError(f"{self.path}: {self.where(rec_index)}: malformed VCF record "
                                     f"(bytes that are not UTF-8 text: {exc.object[exc.start:exc.end]!r})") from None
                yield rec
                rec_index += 1
        finally:
            capture.close()

    def variants(self, checker: AlleleChecker, rec_index: int, rec: pysam.VariantRecord
                 ) -> Iterator[Variant | SkippedVariant]:
        """The checked alleles of record ``rec`` (0-based ``rec_index``), errors naming the record and line."""
        where = f"{self.where(rec_index)} {rec.chrom}:{rec.pos}"
        return checker.check(rec.chrom, rec.pos, rec.ref, rec.alts, rec.id, rec_index, where)

    def close(self) -> None:
        self._vf.close()

    def __enter__(self) -> VcfReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_variants(
    vcf_path: str | os.PathLike, reference: ReferenceGenome | None = None, strict: bool = False
) -> Iterator[Variant | SkippedVariant]:
    """Yield one Variant per ALT allele (or a SkippedVariant with its reason) from a VCF/VCF.gz/BCF."""
    with VcfReader(vcf_path) as reader:
        checker = AlleleChecker(reference, strict, str(reader.path))
        for rec_index, rec in enumerate(reader):
            yield from reader.variants(checker, rec_index, rec)


def variants_from_tuples(
    tuples: Iterable[tuple[str, int, str, str]],
    reference: ReferenceGenome | None = None,
    strict: bool = False,
    source: str = "<variants>",
) -> Iterator[Variant | SkippedVariant]:
    """Same checks as :func:`read_variants` for ``(chrom, pos 1-based, ref, alt)`` tuples (alt may be 'A,T')."""
    checker = AlleleChecker(reference, strict, source)
    for i, item in enumerate(tuples):
        try:
            chrom, pos, ref, alt = item
            pos = int(pos)
        except (TypeError, ValueError):
            raise InputError(
                f"{source}: item {i + 1}: expected (chrom, pos, ref, alt), got {item!r}"
            ) from None
        alts = tuple(str(alt).split(",")) if alt not in (None, "", ".") else None
        yield from checker.check(str(chrom), pos, str(ref), alts, None, i, f"item {i + 1} {chrom}:{pos}")


def split_variants(
    items: Iterable[Variant | SkippedVariant],
) -> tuple[list[Variant], list[SkippedVariant]]:
    """Separate the output of :func:`read_variants` into (variants, skipped)."""
    ok: list[Variant] = []
    skipped: list[SkippedVariant] = []
    for item in items:
        (ok if isinstance(item, Variant) else skipped).append(item)  # type: ignore[arg-type]
    return ok, skipped
