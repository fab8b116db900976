"""VCF reading: multi-allelic split, REF checks, symbolic/N alleles, unknown contigs and bad input."""

import gzip
import os

import pytest

from genomod.errors import InputError
from genomod.io.fasta import ReferenceGenome
from genomod.io.vcf import (
    BuildCheck,
    SkippedVariant,
    Variant,
    read_variants,
    split_variants,
    variant_kind,
    variants_from_tuples,
)
from genomod.utils import StderrCapture


@pytest.fixture
def ref(tiny_fasta):
    return ReferenceGenome(tiny_fasta)


def _base(records, contig, pos, n=1):
    return records[contig][pos - 1 : pos - 1 + n].upper()


@pytest.mark.parametrize("compression", ["plain", "bgzip", "bcf"])
def test_multiallelic_split(make_vcf, ref, tiny_records, compression):
    r = _base(tiny_records, "chr1", 10)
    alts = [b for b in "ACGT" if b != r]
    path = make_vcf([("chr1", 10, "rs1", r, ",".join(alts)), ("chr1", 20, ".", _base(tiny_records, "chr1", 20), "T")],
                    compression=compression)  # fmt: skip
    items = list(read_variants(path, ref))
    ok, skipped = split_variants(items)
    first = [v for v in ok if v.record_index == 0]
    assert [v.alt for v in first] == alts and [v.allele_index for v in first] == [1, 2, 3]
    assert all(v.id == "rs1" and v.kind == "snv" and v.contig == "chr1" and v.pos == 10 for v in first)
    assert first[0].start == 9 and first[0].end == 10
    assert len(items) == 4  # 3 ALTs + 1 (a Variant, or skipped as "ALT equals REF")


def test_kinds(make_vcf, ref, tiny_records):
    r3 = _base(tiny_records, "chr1", 30, 3)
    path = make_vcf(
        [("chr1", 30, ".", r3, ",".join(["TTT" if r3 != "TTT" else "GGG", r3[0], r3 + "AC", "G"]))]
    )
    ok, skipped = split_variants(read_variants(path, ref))
    assert [v.kind for v in ok] == ["mnv", "deletion", "insertion", "complex" if r3[0] != "G" else "deletion"]
    assert variant_kind("A", "AT") == "insertion" and variant_kind("AT", "A") == "deletion"
    assert variant_kind("ACG", "TCA") == "mnv" and variant_kind("AC", "GTT") == "complex"


def test_ref_mismatch_skip_vs_strict(make_vcf, ref, tiny_records):
    r = _base(tiny_records, "chr1", 10)
    wrong = "A" if r != "A" else "C"
    path = make_vcf(
        [("chr1", 5, ".", _base(tiny_records, "chr1", 5), "N"), ("chr1", 10, "bad", wrong, "G,T")]
    )
    items = list(read_variants(path, ref))
    mism = [s for s in items if isinstance(s, SkippedVariant) and s.record_index == 1]
    assert len(mism) == 2 and all("does not match reference" in s.reason for s in mism)
    assert [s.allele_index for s in mism] == [1, 2] and mism[0].status == "skipped"
    with pytest.raises(InputError) as err:
        list(read_variants(path, ref, strict=True))
    msg = str(err.value)
    assert str(path) in msg and "record 2" in msg and "line 8" in msg and "chr1:10" in msg and "\n" not in msg


def test_symbolic_and_missing_alleles(make_vcf, ref, tiny_records):
    r = _base(tiny_records, "chr1", 50)
    rows = [
        ("chr1", 50, "sv", r, "<DEL>"),
        ("chr1", 50, "bnd", r, f"{r}[chr2:100["),
        ("chr1", 50, "star", r, f"*,{'T' if r != 'T' else 'A'}"),
        ("chr1", 50, "miss", r, "."),
    ]
    items = list(read_variants(make_vcf(rows), ref))
    reasons = {(s.id, s.allele_index): s.reason for s in items if isinstance(s, SkippedVariant)}
    assert "symbolic" in reasons[("sv", 1)] and "symbolic" in reasons[("bnd", 1)]
    assert "spanning deletion" in reasons[("star", 1)] and "no ALT" in reasons[("miss", 0)]
    ok = [v for v in items if isinstance(v, Variant)]
    assert len(ok) == 1 and ok[0].id == "star" and ok[0].allele_index == 2
    assert len(items) == 5  # nothing dropped silently


def test_n_alleles(make_vcf, ref, tiny_records):
    # chr2 starts with 50 N: REF N there matches the reference but cannot be scored
    path = make_vcf(
        [("chr2", 10, "refN", "N", "A"), ("chr1", 5, "altN", _base(tiny_records, "chr1", 5), "N")]
    )
    items = list(read_variants(path, ref))
    assert all(isinstance(s, SkippedVariant) for s in items)
    assert "REF 'N'" in items[0].reason and "ALT 'N'" in items[1].reason


def test_unknown_contig_skip_and_strict(make_vcf, ref):
    header = "##fileformat=VCFv4.2\n##contig=<ID=chr11>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    path = make_vcf([("chr11", 5, ".", "A", "G")], header=header)
    (item,) = list(read_variants(path, ref))
    assert isinstance(item, SkippedVariant) and "chr11" in item.reason and "did you mean" in item.reason
    with pytest.raises(InputError) as err:
        list(read_variants(path, ref, strict=True))
    assert str(path) in str(err.value) and "chr11" in str(err.value)


def test_alias_contig_and_no_reference(make_vcf, ref, tiny_records):
    header = "##fileformat=VCFv4.2\n##contig=<ID=1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    r = _base(tiny_records, "chr1", 7)
    path = make_vcf([("1", 7, ".", r, "A" if r != "A" else "C")], header=header)
    (v,) = list(read_variants(path, ref))
    assert isinstance(v, Variant) and v.chrom == "1" and v.contig == "chr1"
    (v,) = list(read_variants(path))  # no reference: no check, no contig
    assert isinstance(v, Variant) and v.contig is None


def test_position_beyond_contig_end(make_vcf, ref):
    path = make_vcf([("chrM", 121, ".", "A", "G")])
    (s,) = list(read_variants(path, ref))
    assert isinstance(s, SkippedVariant) and "beyond the end" in s.reason
    with pytest.raises(InputError) as err:
        list(read_variants(path, ref, strict=True))
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "content,expected",
    [(b"", "empty"), (b"chr1\t10\t.\tA\tG\t.\t.\t.\n", "not a VCF"), (b">chr1\nACGT\n", "not a VCF"),
     (b"##fileformat=VCFv4.2\n", "no '#CHROM' header line")],
)  # fmt: skip
def test_bad_vcf_files(tmp_path, content, expected):
    path = tmp_path / "bad.vcf"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        list(read_variants(path))
    assert expected in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_and_truncated_vcf(tmp_path, make_vcf):
    with pytest.raises(InputError) as err:
        list(read_variants(tmp_path / "none.vcf"))
    assert "not found" in str(err.value)
    path = tmp_path / "t.vcf.gz"
    body = "".join(f"chr1\t{i}\t.\tA\tG\t.\t.\t.\n" for i in range(1, 5000))
    path.write_bytes(
        gzip.compress(
            ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + body).encode()
        )[:500]
    )
    with pytest.raises(InputError) as err:
        list(read_variants(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_malformed_record_names_line(make_vcf):
    path = make_vcf(["chr1\t10\t.\tA\tG\t.\t.\t.", "chr1\tabc\t.\tA\tG\t.\t.\t."])
    with pytest.raises(InputError) as err:
        list(read_variants(path))
    assert str(path) in str(err.value) and "record 2" in str(err.value)


def test_variants_from_tuples(ref, tiny_records):
    r = _base(tiny_records, "chr1", 100)
    alt = "A" if r != "A" else "C"
    items = list(
        variants_from_tuples(
            [("chr1", 100, r, alt), ("17", 5, "A", "G"), ("chr1", 100, r, f"{alt},<DEL>")], ref
        )
    )
    assert isinstance(items[0], Variant) and items[0].record_index == 0
    assert isinstance(items[1], SkippedVariant) and "not in reference" in items[1].reason
    assert (
        isinstance(items[2], Variant) and isinstance(items[3], SkippedVariant) and items[3].allele_index == 2
    )
    with pytest.raises(InputError):
        list(variants_from_tuples([("chr1", 100)], ref))


def test_build_check_policy():
    """One policy: > 10% mismatching REF alleles (of >= 20 checked) is an error, > 1% a warning."""
    mism = SkippedVariant("chr1", 1, "A", "C", "REF 'A' does not match reference 'G' at chr1:1")
    ok = Variant("chr1", 2, "A", "C")
    clean = BuildCheck.of([ok] * 1000)
    assert clean.rate == 0.0 and not clean.wrong_build and clean.warning("ref.fa") is None
    wrong = BuildCheck.of([mism] * 70 + [ok] * 30)
    assert wrong.wrong_build and wrong.warning("ref.fa") is None
    with pytest.raises(InputError, match="another genome build"):
        wrong.raise_if_wrong("in.vcf", "ref.fa")
    few = BuildCheck.of([mism] * 4 + [ok])  # too few alleles to refuse, but loud
    assert not few.wrong_build and "check the genome build" in few.warning("ref.fa")
    few.raise_if_wrong("in.vcf", "ref.fa")
    assert "2.0%" in BuildCheck.of([mism] + [ok] * 49).warning("ref.fa")
    assert BuildCheck.of([mism] + [ok] * 199).warning("ref.fa") is None  # 0.5%: no warning


def test_stderr_capture_reuses_one_file_and_keeps_blocks_apart(capfd):
    # VcfReader captures htslib's stderr around every record with one temporary file: each block gets only
    # its own text, file descriptor 2 is restored after each, and what is written outside a block is not taken
    capture = StderrCapture()
    with capture() as first:
        os.write(2, b"htslib: first")
    os.write(2, b"outside")
    with capture() as empty:
        pass
    with capture() as third:
        os.write(2, b"third")
    capture.close()
    assert first == ["htslib: first"] and empty == [""] and third == ["third"]
    assert capfd.readouterr().err == "outside"
