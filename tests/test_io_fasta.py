"""ReferenceGenome: plain/gzip/bgzip, indexing (also from read-only folders), windows and bad input."""

import gzip
import logging
import os
from pathlib import Path

import pytest

import genomod.io.fasta as fasta_mod
from genomod.errors import InputError
from genomod.io.fasta import ReferenceGenome, detect_compression
from genomod.io.windows import Window


def _one_line_error(excinfo, path) -> str:
    msg = str(excinfo.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("compression", ["plain", "gzip", "bgzip"])
def test_read_all_compressions(make_fasta, tiny_records, tmp_path, compression):
    path = make_fasta(tiny_records, name=f"ref_{compression}.fa", compression=compression)
    assert detect_compression(path) == compression
    ref = ReferenceGenome(path, cache_dir=tmp_path / "cache")
    assert ref.contigs == ("chr1", "chr2", "chrM")
    assert ref.length("1") == 1000 and ref.length("MT") == 120
    assert ref.fetch("chr1", 95, 160) == tiny_records["chr1"][95:160]  # case kept
    assert ref.fetch("NC_000001.11", 0, 0) == ""
    assert ref.resolve("M") == "chrM"
    if compression == "gzip":  # bgzip copy lives in the cache, the source folder is untouched
        assert not Path(str(path) + ".fai").exists()
        assert list((tmp_path / "cache" / "bgzip").rglob("*.fai"))
    else:
        assert Path(str(path) + ".fai").exists()
    ref2 = ReferenceGenome(path, cache_dir=tmp_path / "cache")  # reuses index / bgzip copy
    assert ref2.fetch("chr2", 45, 55) == tiny_records["chr2"][45:55]


def test_read_only_folder_indexes_into_cache(make_fasta, tiny_records, tmp_path, monkeypatch):
    path = make_fasta(tiny_records, compression="bgzip", name="ro.fa.gz")
    data_dir = path.parent
    real = fasta_mod._dir_writable
    monkeypatch.setattr(fasta_mod, "_dir_writable", lambda d: False if Path(d) == data_dir else real(d))
    ref = ReferenceGenome(path, cache_dir=tmp_path / "cache")
    assert ref.fetch("chr1", 0, 10) == tiny_records["chr1"][:10]
    assert not Path(str(path) + ".fai").exists()
    assert list((tmp_path / "cache" / "index").rglob("ro.fa.gz.fai"))


def test_read_only_folder_really_chmod(make_fasta, tiny_records, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    path = fasta_mod.Path(ro / "x.fa")
    path.write_text(">chr1\nACGTACGT\n")
    os.chmod(ro, 0o555)
    try:
        ref = ReferenceGenome(path, cache_dir=tmp_path / "cache")
        assert ref.fetch("chr1", 2, 6) == "GTAC"
        assert not (ro / "x.fa.fai").exists()
    finally:
        os.chmod(ro, 0o755)


def test_read_only_folder_and_cache_unwritable(make_fasta, tiny_records, tmp_path, monkeypatch):
    path = make_fasta(tiny_records, name="x.fa")
    monkeypatch.setattr(fasta_mod, "_dir_writable", lambda d: False)
    with pytest.raises(InputError) as err:
        ReferenceGenome(path, cache_dir=tmp_path / "cache")
    assert "read-only" in _one_line_error(err, path)


def test_windows_with_padding(tiny_fasta, tiny_records):
    ref = ReferenceGenome(tiny_fasta)
    seq = tiny_records["chr1"]
    w = ref.window("chr1", 500, 11)
    assert (w.start, w.end, w.pad_left, w.pad_right) == (495, 506, 0, 0)
    assert w.seq == seq[495:506] and w.seq[w.offset(500)] == seq[500] and not w.padded
    w = ref.window("chr1", 2, 10)
    assert (w.start, w.pad_left, w.pad_right) == (-3, 3, 0)
    assert w.seq == "NNN" + seq[:7] and w.seq[w.offset(2)] == seq[2] and w.length == 10
    w = ref.window("chrM", 118, 8)
    assert (w.pad_left, w.pad_right) == (0, 2) and w.seq == tiny_records["chrM"][114:] + "NN"
    w = ref.window("MT", 60, 200)
    assert (w.pad_left, w.pad_right) == (40, 40) and len(w.seq) == 200 and w.contig == "chrM"


def test_window_read_pads_past_contig_edges():
    seq = "ACGTACGT"
    fetch = lambda c, s, e: seq[s:e]  # noqa: E731
    w = Window.read(fetch, "c", -3, 2, 8)
    assert (w.seq, w.pad_left, w.pad_right, w.pad, w.length) == ("NNNAC", 3, 0, 3, 5)
    assert Window.read(fetch, "c", 6, 11, 8).seq == "GTNNN"
    assert Window.read(fetch, "c", -5, -2, 8).seq == "NNN"
    assert Window.read(fetch, "c", 9, 12, 8).seq == "NNN"
    w = Window.read(fetch, "c", 4, 12, 8)  # head: the padding of the first bases only
    assert (w.pad_right, w.head(6).pad_right, w.head(3).pad_right, w.head(3).seq) == (4, 2, 0, "ACG")
    w = Window.around(fetch, "c", 1, 6, 8)
    assert (w.start, w.seq, w.pad_left, w.head(2).pad_left, w.head(1).pad_left) == (-2, "NNACGT", 2, 2, 1)


def test_position_beyond_end(tiny_fasta):
    ref = ReferenceGenome(tiny_fasta)
    with pytest.raises(InputError) as err:
        ref.window("chr1", 1000, 10)
    assert "beyond the end" in _one_line_error(err, tiny_fasta)
    with pytest.raises(InputError) as err:
        ref.fetch("chr1", 990, 1001)
    _one_line_error(err, tiny_fasta)


def test_unknown_contig_suggests(tiny_fasta):
    ref = ReferenceGenome(tiny_fasta)
    with pytest.raises(InputError) as err:
        ref.fetch("chr11", 0, 5)
    assert "did you mean" in _one_line_error(err, tiny_fasta)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.fa"
    with pytest.raises(InputError) as err:
        ReferenceGenome(path)
    assert "not found" in _one_line_error(err, path)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.fa"
    path.write_text(">a\nACGT\n")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if str(p) == str(path) else real(p, m))
    with pytest.raises(InputError) as err:
        ReferenceGenome(path)
    assert "not readable" in _one_line_error(err, path)


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"hello world\nACGT\n", "not a FASTA"),
        (b"\x00\x01\x02binary", "not a FASTA"),
    ],
)
def test_bad_content(tmp_path, content, expected):
    path = tmp_path / "bad.fa"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        ReferenceGenome(path)
    assert expected in _one_line_error(err, path)


def test_not_fasta_gzip(tmp_path):
    path = tmp_path / "bad.fa.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"##fileformat=VCFv4.2\n")
    with pytest.raises(InputError) as err:
        ReferenceGenome(path, cache_dir=tmp_path / "c")
    assert "not a FASTA" in _one_line_error(err, path)


@pytest.mark.parametrize("compression", ["gzip", "bgzip"])
def test_truncated_gzip(make_fasta, tmp_path, compression):
    import random

    rng = random.Random(1)
    seq = "".join(rng.choice("ACGT") for _ in range(300_000))
    path = make_fasta({"chr1": seq}, name=f"t_{compression}.fa.gz", compression=compression)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        ReferenceGenome(path, cache_dir=tmp_path / "cache")
    assert "truncated" in _one_line_error(err, path) or "corrupt" in str(err.value)


def test_duplicate_contigs(make_fasta):
    path = make_fasta({"chr1": "ACGT"}, name="dup.fa")
    path.write_text(">chr1\nACGT\n>chr2\nGG\n>chr1\nTTTT\n")
    with pytest.raises(InputError) as err:
        ReferenceGenome(path)
    assert "duplicate contig name 'chr1'" in _one_line_error(err, path)
    assert not Path(str(path) + ".fai").exists()


def test_pickle_roundtrip(tiny_fasta):
    import pickle

    ref = ReferenceGenome(tiny_fasta)
    ref.fetch("chr1", 0, 3)
    clone = pickle.loads(pickle.dumps(ref))
    assert clone.fetch("chr1", 0, 3) == ref.fetch("chr1", 0, 3)


@pytest.mark.shared
def test_shared_plain_gzip_slice(shared_dir, tmp_path):
    path = shared_dir / "data/reference/chr17_hg19_40577018-41677368.fa.gz"
    ref = ReferenceGenome(path, cache_dir=tmp_path / "cache")
    assert ref.compression == "gzip"
    assert ref.contigs == ("chr17:40577018-41677368",) and ref.lengths[ref.contigs[0]] == 1_100_351


def test_empty_record_is_reported_not_silently_dropped(tmp_path, caplog):
    """htslib leaves a record without sequence out of the index; genomod says so, naming line and name."""
    path = tmp_path / "empty_record.fa"
    path.write_text(">chr1\n>chr2\nACGTACGT\nACG\n>chr3\n>chr4\nAC\n")
    with caplog.at_level(logging.WARNING, logger="genomod.io.fasta"):
        ref = ReferenceGenome(path)
    assert ref.contigs == ("chr2", "chr4")
    warnings = [r.getMessage() for r in caplog.records]
    assert any("line 1: record 'chr1' has no sequence" in w for w in warnings), warnings
    assert any("line 5: record 'chr3' has no sequence" in w for w in warnings), warnings


def test_sequence_line_with_digit_names_its_line(tmp_path):
    path = tmp_path / "digit.fa"
    path.write_text(">chr1\nACGTACGT\nACG7ACGT\nAC\n")
    with pytest.raises(InputError, match=r"digit.fa: line 3: invalid character '7' in the sequence of chr1"):
        ReferenceGenome(path)
    assert not (tmp_path / "digit.fa.fai").exists(), "a rejected FASTA must not keep a half-trusted index"


def test_io_does_not_import_torch():
    """Pure I/O stays light: genomod.io (and genomod.utils, which it imports) never pull in torch."""
    import subprocess
    import sys

    code = "import sys, genomod.io, genomod.utils; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
