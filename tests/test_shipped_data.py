"""Shipped benchmark data: the Findlay 2018 SNV table and the full-coordinate chr17 references."""

import gzip
from pathlib import Path

import pandas as pd
import pytest

from genomod.io.contigs import parse_region_name
from genomod.io.fasta import ReferenceGenome
from genomod.io.vcf import Variant, variants_from_tuples

DATA = Path(__file__).resolve().parents[1] / "genomod" / "data"
TSV = DATA / "brca1" / "findlay2018_brca1_snvs.tsv"
HG19 = DATA / "reference" / "hg19_chr17_brca1.fa.gz"
HG38 = DATA / "reference" / "hg38_chr17_brca1.fa.gz"
COLUMNS = ["chrom", "pos", "ref", "alt", "consequence", "region", "func_class", "function_score",
           "p_nonfunctional", "cadd", "phylop", "polyphen2", "sift", "agvgd_class", "transcript_variant",
           "protein_variant"]  # fmt: skip
HG38_OFFSET = 1_847_983  # hg38 = hg19 + offset across BRCA1 (shared/data/reference/PROVENANCE.md)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.read_csv(TSV, sep="\t")


def test_table_shape_and_columns(table):
    assert list(table.columns) == COLUMNS
    assert len(table) == 3893 and table["pos"].nunique() == 1326
    assert (table["chrom"] == "chr17").all()
    assert table["func_class"].value_counts().to_dict() == {"FUNC": 2821, "LOF": 823, "INT": 249}
    counts = table["consequence"].value_counts().to_dict()
    assert counts == {"Missense": 2086, "Synonymous": 544, "Intronic": 489, "Splice region": 446,
                      "Canonical splice": 143, "Nonsense": 138, "5' UTR": 47}  # fmt: skip
    coding = table["consequence"].isin(["Missense", "Synonymous", "Nonsense"])
    assert ((table["region"] == "coding") == coding).all()
    assert table[["pos", "alt"]].equals(
        table.sort_values(["pos", "alt"])[["pos", "alt"]].reset_index(drop=True)
    )
    assert (table["ref"] != table["alt"]).all() and set(table["ref"]) | set(table["alt"]) <= set("ACGT")
    assert table[["function_score", "cadd", "phylop"]].notna().all().all()


def test_fasta_full_coordinates():
    for path, length in ((HG19, 81_195_210), (HG38, 83_257_441)):
        ref = ReferenceGenome(path)
        assert (
            ref.contigs == ("chr17",) and ref.length("17") == length and ref.length("NC_000017.10") == length
        )
        assert ref.fetch("chr17", 0, 100) == "N" * 100 and ref.fetch("chr17", length - 10, length) == "N" * 10
        assert Path(str(path) + ".fai").exists() and Path(str(path) + ".gzi").exists()
    total = sum(p.stat().st_size for p in (DATA / "reference").iterdir()) + TSV.stat().st_size
    assert total < 2_200_000


def test_hg19_ref_matches_table_at_all_positions(table):
    ref = ReferenceGenome(HG19)
    positions = table.drop_duplicates("pos")
    assert len(positions) == 1326
    seq = ref.fetch("chr17", int(positions["pos"].min()) - 1, int(positions["pos"].max()))
    lo = int(positions["pos"].min())
    bad = [(p, r) for p, r in zip(positions["pos"], positions["ref"]) if seq[p - lo].upper() != r]
    assert not bad


def test_hg38_ref_matches_table_with_offset(table):
    ref = ReferenceGenome(HG38)
    bad = [
        p
        for p, r in zip(table["pos"], table["ref"])
        if ref.fetch("17", p - 1 + HG38_OFFSET, p + HG38_OFFSET) != r
    ]
    assert not bad


def test_table_variants_all_pass_vcf_checks(table):
    ref = ReferenceGenome(HG19)
    items = list(
        variants_from_tuples(table[["chrom", "pos", "ref", "alt"]].itertuples(index=False), ref, strict=True)
    )
    assert len(items) == 3893 and all(isinstance(v, Variant) and v.kind == "snv" for v in items)


@pytest.mark.shared
def test_shipped_fasta_equals_shared_slices(shared_dir):
    for shipped, rel in (
        (HG19, "chr17_hg19_40577018-41677368.fa.gz"),
        (HG38, "chr17_hg38_42425000-43600000.fa.gz"),
    ):
        with gzip.open(shared_dir / "data" / "reference" / rel, "rt") as fh:
            name = fh.readline()[1:].split()[0]
            seq = "".join(line.strip() for line in fh)
        contig, start, end = parse_region_name(name)
        ref = ReferenceGenome(shipped)
        assert ref.fetch(contig, start, end) == seq
        assert set(ref.fetch(contig, start - 5000, start)) == {"N"} and set(
            ref.fetch(contig, end, end + 5000)
        ) == {"N"}


@pytest.mark.shared
def test_table_equals_xlsx(shared_dir, table):
    raw = pd.read_excel(shared_dir / "data" / "brca1" / "findlay2018_sge_brca1.xlsx", header=2)
    raw = raw.sort_values(["position (hg19)", "alt"], kind="stable").reset_index(drop=True)
    assert (raw["position (hg19)"].to_numpy() == table["pos"].to_numpy()).all()
    assert (raw["func.class"].to_numpy() == table["func_class"].to_numpy()).all()
    pd.testing.assert_series_equal(raw["function.score.mean"], table["function_score"], check_names=False)
    pd.testing.assert_series_equal(raw["CADD.score"], table["cadd"], check_names=False)


def test_shipped_probe_folder_is_well_formed():
    """genomod/data/probes: canonical splice sites, whole-codon ORFs, Markov counts of every order."""
    from genomod.eval.probes import load_markov_counts, read_heldout, read_orfs, read_splice

    probes = DATA / "probes"
    orfs = read_orfs(probes / "orfs.fa.gz")
    assert len(orfs) > 100
    for o in orfs:
        cds = o.seq[o.cds_start : o.cds_end]
        assert len(cds) % 3 == 0 and cds[:3] == "ATG" and cds[-3:] in ("TAA", "TAG", "TGA")
    splice = read_splice(probes / "splice.fa.gz")
    assert len(splice) > 500
    for r in splice:
        assert r.donor is not None or r.acceptor is not None
        if r.donor is not None:
            assert r.seq[r.donor : r.donor + 2] == "GT"
        if r.acceptor is not None:
            assert r.seq[r.acceptor - 1 : r.acceptor + 1] == "AG"
    assert sum(len(r.seq) for r in read_heldout(probes / "heldout.fa.gz")) > 100_000
    counts = load_markov_counts(probes / "markov_counts.npz")
    assert sorted(counts) == list(range(10))
    totals = {int(c.sum()) for k, c in counts.items()}
    assert min(totals) > 10**8  # fitted on the whole training mixture
    assert (probes / "PROVENANCE.md").is_file()


def test_shipped_default_model_has_a_matching_calibration_table():
    from genomod.scoring.calibration import check_weights, load_calibration

    table = load_calibration("default")
    check_weights(table, DATA / "models" / "default")
    for key in (("fast", False), ("fast", True), ("exact", False), ("exact", True), ("embed", False), ("embed", True)):
        assert table.has(*key)
    assert table.window == 256
