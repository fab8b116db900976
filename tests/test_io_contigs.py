"""Contig alias table and resolution against the names present in a file."""

import pytest

from genomod.errors import InputError
from genomod.io.contigs import ContigMap, aliases, canonical_key, parse_region_name, same_contig


@pytest.mark.parametrize(
    "name,key",
    [("chr17", "17"), ("17", "17"), ("NC_000017.10", "17"), ("NC_000017.11", "17"), ("chrX", "X"),
     ("NC_000023.11", "X"), ("Y", "Y"), ("NC_000001.10", "1"), ("NC_000001.11", "1"), ("chrM", "MT"),
     ("MT", "MT"), ("M", "MT"), ("NC_012920.1", "MT"), ("CHR5", "5"), ("chrUn_gl000220", None)],
)  # fmt: skip
def test_canonical_key(name, key):
    assert canonical_key(name) == key


@pytest.mark.parametrize("names", [["chr17", "chrM"], ["17", "MT"], ["NC_000017.11", "NC_012920.1"]])
def test_resolve_to_present_names(names):
    cmap = ContigMap(names, source="ref.fa")
    for query in ("chr17", "17", "NC_000017.10", "NC_000017.11"):
        assert cmap.resolve(query) == names[0]
    for query in ("chrM", "MT", "M"):
        assert cmap.resolve(query) == names[1]


def test_exact_name_wins_and_unknown_names():
    cmap = ContigMap(["chr1", "chr1_random", "HLA-A*01:01"], source="ref.fa")
    assert cmap.resolve("chr1_random") == "chr1_random"
    assert cmap.resolve("HLA-A*01:01") == "HLA-A*01:01"
    assert "1" in cmap and "chr2" not in cmap


def test_unknown_contig_error_suggests():
    cmap = ContigMap([f"chr{i}" for i in range(1, 23)], source="/data/ref.fa")
    with pytest.raises(InputError) as err:
        cmap.resolve("chr99")
    msg = str(err.value)
    assert "/data/ref.fa" in msg and "chr99" in msg and "did you mean" in msg and "\n" not in msg


def test_aliases_and_same_contig():
    assert aliases("chr17")[:2] == ("chr17", "17")
    assert "NC_000017.11" in aliases("17")
    assert aliases("scaffold_1") == ("scaffold_1",)
    assert same_contig("chr2", "NC_000002.12") and not same_contig("chr2", "chr20")


def test_parse_region_name():
    assert parse_region_name("chr17:40577018-41677368") == ("chr17", 40577017, 41677368)
    assert parse_region_name("chr17:1,000-2,000") == ("chr17", 999, 2000)
    assert parse_region_name("chr17") is None
    assert parse_region_name("chr1:5-2") is None
