"""BED reading (errors name file + line) and alias-aware interval overlap."""

import gzip

import numpy as np
import pytest

from genomod.errors import InputError
from genomod.io.bed import Interval, IntervalIndex, parse_region, read_bed


def test_read_bed_plain_and_gzip(tmp_path):
    text = "track name=x\n# comment\n\nchr1\t10\t20\tfoo\nchr2 5 6\n"
    plain = tmp_path / "a.bed"
    plain.write_text(text)
    gz = tmp_path / "a.bed.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    expected = [Interval("chr1", 10, 20, "foo"), Interval("chr2", 5, 6)]
    assert read_bed(plain) == expected and read_bed(gz) == expected


@pytest.mark.parametrize(
    "line,expected",
    [("chr1\t10", "at least 3 columns"), ("chr1\tx\t20", "integers"), ("chr1\t30\t20", "invalid interval"),
     ("chr1\t-1\t20", "invalid interval")],
)  # fmt: skip
def test_bad_bed_lines(tmp_path, line, expected):
    path = tmp_path / "b.bed"
    path.write_text(f"chr1\t1\t2\n{line}\n")
    with pytest.raises(InputError) as err:
        read_bed(path)
    msg = str(err.value)
    assert str(path) in msg and "line 2" in msg and expected in msg and "\n" not in msg


def test_missing_bed(tmp_path):
    with pytest.raises(InputError) as err:
        read_bed(tmp_path / "none.bed")
    assert "not found" in str(err.value)


def test_interval_index_overlaps_with_aliases():
    idx = IntervalIndex([Interval("chr17", 100, 200), Interval("17", 150, 300), Interval("chrX", 0, 10)])
    assert len(idx) == 2  # chr17 and 17 merged
    starts = np.array([0, 50, 51, 299, 300, 1000])
    assert idx.overlaps("NC_000017.10", starts, 50).tolist() == [False, False, True, True, False, False]
    assert idx.overlaps("chr1", starts, 50).tolist() == [False] * 6
    assert idx.has_contig("X") and not idx.has_contig("chr1")


def test_parse_region():
    assert parse_region("chr17:41,196,312-41,277,500") == Interval("chr17", 41196311, 41277500)
    with pytest.raises(InputError):
        parse_region("chr17:100")
