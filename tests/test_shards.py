"""make_shards: windows read back equal to the source bases; splits, exclusions, N filter, atomic output."""

import json
import random
from pathlib import Path

import h5py
import numpy as np
import pytest

import data_prep.make_shards as ms
from genomod.errors import InputError
from genomod.io.fasta import ReferenceGenome
from genomod.tokenizer import N_ID, TOKENIZER_VERSION, decode, encode

SHIPPED_HG19 = (
    Path(__file__).resolve().parents[1] / "genomod" / "data" / "reference" / "hg19_chr17_brca1.fa.gz"
)


def _rand(rng, n):
    return "".join(rng.choice("ACGTacgt") for _ in range(n))


@pytest.fixture
def sources(make_fasta):
    rng = random.Random(3)
    a = make_fasta(
        {"chr1": _rand(rng, 5000), "chr2": _rand(rng, 3000), "chr3": "N" * 1200 + _rand(rng, 800), "tiny": "ACGT"},
        name="a.fa.gz", compression="bgzip",
    )  # fmt: skip
    b = make_fasta({"chr5:1001-3000": _rand(rng, 2000)}, name="b.fa.gz", compression="gzip")
    return [a, b]


def _read(out: Path, split: str):
    with h5py.File(out / f"{split}.h5", "r") as h5:
        assert h5["tokens"].dtype == np.uint8 and h5["index"].dtype == np.int64
        return h5["tokens"][:], h5["index"][:]


def _check_against_source(out: Path, manifest: dict, split: str):
    tokens, index = _read(out, split)
    refs = [ReferenceGenome(s["path"]) for s in manifest["sources"]]
    w = manifest["window"]
    for row, (si, ci, start) in zip(tokens, index):
        contig = manifest["contigs"][ci]
        assert contig["source"] == si
        src = refs[si].fetch(contig["name"], int(start), int(start) + w)
        assert np.array_equal(row, encode(src).astype(np.uint8))
    return tokens, index


def test_shards_roundtrip_split_exclusion(sources, tmp_path):
    excl = tmp_path / "excl.bed"
    excl.write_text("1\t1000\t1100\nchr5\t1500\t1600\n")  # alias '1' for chr1; chr5 in chromosome coordinates
    out = tmp_path / "shards"
    m = ms.make_shards(sources, out, window=200, stride=100, val_contigs=["2"], exclude=excl, progress=False,
                       chunk_bases=700)  # fmt: skip
    assert json.loads((out / "manifest.json").read_text()) == m
    assert m["tokenizer_version"] == TOKENIZER_VERSION and m["window"] == 200 and m["stride"] == 100
    assert [c["name"] for c in m["contigs"]] == ["chr1", "chr2", "chr3", "tiny", "chr5:1001-3000"]
    assert m["contigs"][4]["chrom"] == "chr5" and m["contigs"][4]["offset"] == 1000
    assert m["counts"]["contigs_too_short"] == 1 and len(m["sources"][0]["sha256"]) == 64

    train_tok, train_idx = _check_against_source(out, m, "train")
    val_tok, val_idx = _check_against_source(out, m, "val")
    assert len(train_tok) == m["counts"]["train"] and len(val_tok) == m["counts"]["val"]
    assert set(val_idx[:, 1]) == {1} and 1 not in set(train_idx[:, 1])  # chr2 -> val
    assert len(val_tok) == (3000 - 200) // 100 + 1
    # exclusions: chr1 windows overlapping [1000,1100) and chr5 record windows overlapping 1500-1000=[500,600)
    chr1_starts = set(train_idx[train_idx[:, 1] == 0, 2])
    assert chr1_starts == {s for s in range(0, 4801, 100) if not (s < 1100 and s + 200 > 1000)}
    chr5_starts = set(train_idx[train_idx[:, 1] == 4, 2])
    assert chr5_starts == {s for s in range(0, 1801, 100) if not (s < 600 and s + 200 > 500)}
    assert m["counts"]["dropped_excluded"] == 2 + 2  # starts 900, 1000 and 400, 500
    # N filter: chr3 = 1200 N then bases; windows with > 10% N dropped
    chr3 = train_tok[train_idx[:, 1] == 2]
    assert len(chr3) > 0 and ((chr3 == N_ID).mean(axis=1) <= 0.1).all()
    assert m["contigs"][2]["windows"]["dropped_n"] == sum(1 for s in range(0, 1801, 100) if 1200 - s > 20)
    # lowercase in the source becomes uppercase tokens
    assert decode(train_tok[0]).isupper()


def test_val_intervals_and_chunking_invariance(sources, tmp_path):
    val = tmp_path / "val.bed"
    val.write_text("chr1\t2000\t2500\n")
    m1 = ms.make_shards(
        sources[:1], tmp_path / "o1", window=128, stride=64, val_intervals=val, progress=False
    )
    m2 = ms.make_shards(sources[:1], tmp_path / "o2", window=128, stride=64, val_intervals=val, progress=False,
                        chunk_bases=300)  # fmt: skip
    for split in ("train", "val"):
        t1, i1 = _read(tmp_path / "o1", split)
        t2, i2 = _read(tmp_path / "o2", split)
        assert np.array_equal(t1, t2) and np.array_equal(i1, i2)
    _, vi = _read(tmp_path / "o1", "val")
    assert set(vi[:, 2]) == {s for s in range(0, 5000 - 128 + 1, 64) if s < 2500 and s + 128 > 2000}
    assert m1["counts"] == m2["counts"] and m1["split"]["val_intervals"]["intervals"] == 1


def test_val_frac_is_deterministic(sources, tmp_path):
    kw = dict(window=100, stride=100, val_frac=0.5, val_block=500, seed=11, progress=False)
    m1 = ms.make_shards(sources[:1], tmp_path / "o1", **kw)
    m2 = ms.make_shards(sources[:1], tmp_path / "o2", **kw)
    assert m1["counts"] == m2["counts"] and m1["counts"]["val"] > 0 and m1["counts"]["train"] > 0
    _, vi = _read(tmp_path / "o1", "val")
    blocks = {(c, s // 500) for _, c, s in vi}
    _, ti = _read(tmp_path / "o1", "train")
    assert not blocks & {(c, s // 500) for _, c, s in ti}  # whole blocks go to one split


def test_atomic_output_on_failure(sources, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = ms._shard_contig

    def boom(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ms, "_shard_contig", boom)
    with pytest.raises(KeyboardInterrupt):
        ms.make_shards(sources, tmp_path / "out", window=100, progress=False)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_existing_output_and_overwrite(sources, tmp_path):
    out = tmp_path / "out"
    ms.make_shards(sources[:1], out, window=100, progress=False)
    with pytest.raises(InputError) as err:
        ms.make_shards(sources[:1], out, window=100, progress=False)
    assert "already exists" in str(err.value)
    m = ms.make_shards(sources[:1], out, window=50, progress=False, overwrite=True)
    assert m["window"] == 50 and _read(out, "train")[0].shape[1] == 50


def test_cli_errors_and_success(sources, tmp_path, capsys):
    rc = ms.main(["--fasta", str(tmp_path / "missing.fa"), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "missing.fa" in err and err.count("\n") == 1
    rc = ms.main(
        ["--fasta", str(sources[0]), "--out", str(tmp_path / "o"), "--window", "256", "--no-progress"]
    )
    assert rc == 0 and (tmp_path / "o" / "manifest.json").exists()


def test_shipped_hg19_region(tmp_path):
    excl = tmp_path / "brca1.bed"
    excl.write_text("chr17\t41150000\t41330000\tBRCA1_locus\n")
    out = tmp_path / "hg19"
    m = ms.make_shards([SHIPPED_HG19], out, window=4096, stride=4096, exclude=excl, val_intervals=None,
                       val_contigs=[], progress=False)  # fmt: skip
    tokens, index = _check_against_source(out, m, "train")
    starts = index[:, 2]
    slice_lo, slice_hi = 40577017, 41677368
    assert (starts >= slice_lo - 409).all() and (starts + 4096 <= slice_hi + 409).all()
    assert not ((starts < 41330000) & (starts + 4096 > 41150000)).any()
    n_in_slice = sum(
        1 for s in range(0, 81195210 - 4096 + 1, 4096) if s >= slice_lo - 409 and s + 4096 <= slice_hi + 409
    )
    assert m["counts"]["dropped_excluded"] == sum(
        1 for s in range(0, 81195210, 4096) if s < 41330000 and s + 4096 > 41150000
    )
    assert len(tokens) >= n_in_slice - m["counts"]["dropped_excluded"] - 2
    assert m["counts"]["val"] == 0 and m["contigs"][0]["length"] == 81195210
