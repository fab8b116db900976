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
from genomod.io.fasta import ReferenceGenome, _capture_stderr_fd
from genomod.utils import check_readable, open_decompressed

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


def reference_build_check(
    mismatch_rate: float, n_checked: int | None = None, threshold: float = 0.05
) -> str | None:
    """A warning when the REF mismatch rate suggests the wrong genome build, else None."""
    if n_checked is not None and n_checked < 20:
        return None
    if mismatch_rate > threshold:
        return (
            f"{mismatch_rate:.1%} of REF alleles do not match the reference"
            + (f" ({n_checked} checked)" if n_checked is not None else "")
            + ": is the VCF on another genome build (hg19 vs hg38) than the FASTA?"
        )
    return None


class _Checker:
    """Validates one allele against the reference (shared by VCF and tuple input)."""

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
        def skip(alt: str | None, idx: int, reason: str) -> SkippedVariant:
            return SkippedVariant(chrom, pos, ref, alt, reason, vid, rec, idx)

        ref = (ref or "").upper()
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
            size = self.reference.lengths[contig]
            if pos < 1:
                ref_problem = f"POS {pos} is not a valid 1-based position"
            elif pos > size:
                ref_problem = f"position {pos} is beyond the end of {contig} (length {size})"
            elif pos - 1 + len(ref) > size:
                ref_problem = f"REF of {len(ref)} bases at {contig}:{pos} runs past the end of {contig} (length {size})"
            elif _ACGT.match(ref):
                expected = self.reference.fetch(contig, pos - 1, pos - 1 + len(ref)).upper()
                if expected != ref:
                    ref_problem = f"REF {ref!r} does not match reference {expected!r} at {contig}:{pos}"
            if ref_problem is not None and self.strict:
                raise InputError(f"{self.source}: {where}: {ref_problem}")
        for i, alt in enumerate(alts, start=1):
            alt_u = (alt or ".").upper()
            if alt_u == "*":
                yield skip(alt, i, "spanning deletion allele '*'")
            elif alt_u in (".", ""):
                yield skip(alt, i, "missing ALT allele ('.')")
            elif _SYMBOLIC.search(alt_u):
                yield skip(alt, i, f"symbolic/breakend ALT {alt!r} cannot be scored")
            elif not ref or not _ACGT.match(ref):
                yield skip(alt, i, f"REF {ref!r} contains non-ACGT bases (N or IUPAC)")
            elif not _ACGT.match(alt_u):
                yield skip(alt, i, f"ALT {alt!r} contains non-ACGT bases (N or IUPAC)")
            elif alt_u == ref:
                yield skip(alt, i, "ALT equals REF")
            elif ref_problem is not None:
                yield skip(alt, i, ref_problem)
            else:
                yield Variant(chrom, pos, ref, alt_u, vid, rec, i, variant_kind(ref, alt_u), contig)


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
    with _capture_stderr_fd() as log:
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
        while True:
            with _capture_stderr_fd() as log:
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
        checker = _Checker(reference, strict, str(reader.path))
        for rec_index, rec in enumerate(reader):
            where = f"{reader.where(rec_index)} {rec.chrom}:{rec.pos}"
            yield from checker.check(rec.chrom, rec.pos, rec.ref, rec.alts, rec.id, rec_index, where)


def variants_from_tuples(
    tuples: Iterable[tuple[str, int, str, str]],
    reference: ReferenceGenome | None = None,
    strict: bool = False,
    source: str = "<variants>",
) -> Iterator[Variant | SkippedVariant]:
    """Same checks as :func:`read_variants` for ``(chrom, pos 1-based, ref, alt)`` tuples (alt may be 'A,T')."""
    checker = _Checker(reference, strict, source)
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
