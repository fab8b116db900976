"""`genomod score` / `genomod mutagenesis`: every record kept, atomic output, errors, shards."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pysam
import pytest

from genomod.checkpoint import save_model
from genomod.cli.main import main
from tests.model_helpers import tiny_test_model

HEADER = (
    "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=600>\n##contig=<ID=chr2,length=120>\n"
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    save_model(tiny_test_model(0), d / "model")
    rng = random.Random(5)
    genome = {
        "chr1": "".join(rng.choice("ACGT") for _ in range(600)),
        "chr2": "N" * 20 + "".join(rng.choice("ACGT") for _ in range(100)),
    }
    (d / "ref.fa").write_text("".join(f">{k}\n{v}\n" for k, v in genome.items()))
    s = genome["chr1"]

    def alt(b: str) -> str:
        return "A" if b != "A" else "C"

    rows = [
        ("chr1", 1, "edge", s[0], alt(s[0])),
        ("chr1", 40, "multi", s[39], ",".join(b for b in "ACGT" if b != s[39])),
        ("chr1", 80, "del", s[79:83], s[79]),
        ("chr1", 120, "ins", s[119], s[119] + "TG"),
        ("chr1", 160, "mism", alt(s[159]), s[159]),
        ("chr1", 200, "sym", s[199], "<DEL>"),
        ("chr9", 5, "unk", "A", "C"),
        ("chr2", 5, "nref", "N", "A"),
        ("chr2", 60, "noalt", "A", "."),
        ("chr1", 600, "end", s[599], alt(s[599])),
    ]
    rows += [("chr1", p, f"s{p}", s[p - 1], alt(s[p - 1])) for p in range(250, 500, 12)]
    body = "".join(f"{c}\t{p}\t{i}\t{r}\t{a}\t50\tPASS\tDP={p}\n" for c, p, i, r, a in rows)
    (d / "in.vcf").write_text(HEADER + body)
    return {"dir": d, "genome": genome, "rows": rows}


def _model_args(env) -> list[str]:
    """The tiny test model, a 64-base window, on the CPU (shared by score and mutagenesis)."""
    return ["--model", str(env["dir"] / "model"), "--window", "64", "--device", "cpu"]


def _args(env, out, *extra):
    d = env["dir"]
    return ["score", "-i", str(d / "in.vcf"), "-r", str(d / "ref.fa"), "-o", str(out), *_model_args(env), *extra]


def _records(path):
    with pysam.VariantFile(str(path)) as vf:
        return [(r.chrom, r.pos, r.id, r.ref, r.alts, dict(r.info)) for r in vf]


def test_score_vcf_gz_keeps_every_record(env, tmp_path, capsys):
    out = tmp_path / "out.vcf.gz"
    assert main(_args(env, out, "--tsv", str(tmp_path / "out.tsv"))) == 0
    recs = _records(out)
    assert [r[2] for r in recs] == [r[2] for r in env["rows"]]  # every record, in order
    info = {r[2]: r[5] for r in recs}
    assert (
        info["multi"]["GENOMOD_STATUS"] == ("ok", "ok", "ok") and len(info["multi"]["GENOMOD_DLL_SUM"]) == 3
    )
    assert info["edge"]["GENOMOD_PAD"] == (32,) and info["del"]["GENOMOD_STATUS"] == ("ok",)
    # the embedding distance beside the deltas (SNVs; a deletion has none)
    assert len(info["multi"]["GENOMOD_EMBED"]) == 3 and all(x < 0 for x in info["multi"]["GENOMOD_EMBED"])
    assert info["del"].get("GENOMOD_EMBED") in (None, (None,))
    assert info["mism"]["GENOMOD_STATUS"] == ("skipped",) and "match" in info["mism"]["GENOMOD_REASON"][0]
    assert (
        "symbolic" in info["sym"]["GENOMOD_REASON"][0]
        and "not_in_reference" in info["unk"]["GENOMOD_REASON"][0]
    )
    assert "non-ACGT" in info["nref"]["GENOMOD_REASON"][0] and "GENOMOD_NOTE" in info["noalt"]
    assert info["s250"]["DP"] == 250  # original fields kept
    with gzip.open(out, "rt") as fh:
        text = fh.read()
    assert "##genomod_score=<Model=" in text and 'Mode="exact",Window=64' in text
    tsv = (tmp_path / "out.tsv").read_text().splitlines()
    assert tsv[0].startswith("chrom\tpos\tid") and len(tsv) == 1 + len(env["rows"]) + 2
    err = capsys.readouterr().err
    assert "scored" in err and "skipped" in err
    # fast mode, plain VCF
    assert main(_args(env, tmp_path / "fast.vcf", "--mode", "fast")) == 0
    fast = {r[2]: r[5] for r in _records(tmp_path / "fast.vcf")}
    assert "GENOMOD_FAST" in fast["s250"] and fast["del"]["GENOMOD_STATUS"] == ("skipped",)


def test_shards_and_regions_gather_to_single_run(env, tmp_path):
    full = tmp_path / "full.vcf"
    assert main(_args(env, full)) == 0
    parts = []
    for k in (1, 2, 3):
        part = tmp_path / f"p{k}.vcf"
        assert main(_args(env, part, "--shard", f"{k}/3")) == 0
        parts += _records(part)
    assert parts == _records(full)
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t100\t300\n")
    assert main(_args(env, tmp_path / "reg.vcf", "--regions", str(bed))) == 0
    assert {r[2] for r in _records(tmp_path / "reg.vcf")} == {"ins", "mism", "sym"} | {
        f"s{p}" for p in range(250, 300, 12)
    }


def test_interrupted_run_leaves_no_file(env, tmp_path, monkeypatch):
    import genomod.scoring.vcf_out as vcf_out

    calls = {"n": 0}
    real = vcf_out.annotate

    def boom(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(vcf_out, "annotate", boom)
    out = tmp_path / "o.vcf.gz"
    assert main(_args(env, out, "--tsv", str(tmp_path / "o.tsv"))) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_errors_exit_2(env, tmp_path, capsys):
    d = env["dir"]
    nohead = tmp_path / "nohead.vcf"
    nohead.write_text("chr1\t5\t.\tA\tC\t.\t.\t.\n")
    args = _args(env, tmp_path / "o.vcf")
    args[2] = str(nohead)
    assert main(args) == 2
    assert "not a VCF" in capsys.readouterr().err
    # reference of another build: most REF alleles mismatch
    s = env["genome"]["chr1"]
    wrong = tmp_path / "wrong.vcf"
    wrong.write_text(
        HEADER
        + "".join(f"chr1\t{p}\t.\t{'A' if s[p - 1] != 'A' else 'C'}\tG\t.\t.\t.\n" for p in range(1, 200, 5))
    )
    args[2] = str(wrong)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "do not match reference" in err and "%" in err and err.count("\n") == 1
    bad_model = tmp_path / "badmodel"
    bad_model.mkdir()
    (bad_model / "config.json").write_text("{not json")
    (bad_model / "model.safetensors").write_bytes(b"xx")
    assert main(_args(env, tmp_path / "o.vcf") + ["--model", str(bad_model)]) == 2
    assert "corrupt JSON" in capsys.readouterr().err
    assert main(_args(env, tmp_path / "missing_dir" / "o.vcf")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(_args(env, tmp_path / "o.vcf", "--shard", "3/2")) == 2
    assert main(_args(env, tmp_path / "o.vcf", "--head", str(d / "nohead.pt"))) == 2
    assert not (tmp_path / "o.vcf").exists()


def test_mutagenesis_tsv_and_png(env, tmp_path):
    d = env["dir"]
    out, png = tmp_path / "m.tsv", tmp_path / "m.png"
    args = ["mutagenesis", "-r", str(d / "ref.fa"), "--region", "chr1:101-140", "-o", str(out), "--png", str(png)]
    assert main(args + _model_args(env)) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "chrom\tpos\tref\talt\tdelta_fast" and len(lines) == 1 + 40 * 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(
    shutil.which("snakemake") is None and not (Path(sys.executable).parent / "snakemake").exists(),
    reason="snakemake not installed",
)
def test_snakemake_scatter_gather(env, tmp_path):
    d = env["dir"]
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    repo = Path(__file__).resolve().parents[1]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"vcf: {d / 'in.vcf'}\nreference: {d / 'ref.fa'}\noutdir: {tmp_path / 'wf'}\nshards: 2\n"
        f"model: {d / 'model'}\nwindow: 64\ngenomod: {sys.executable} -m genomod\n"
    )
    proc = subprocess.run(
        [
            snakemake,
            "-s",
            str(repo / "workflows" / "Snakefile"),
            "--configfile",
            str(cfg),
            "--cores",
            "1",
            "--quiet",
            "--directory",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    single = tmp_path / "single.vcf"
    assert main(_args(env, single)) == 0
    assert _records(tmp_path / "wf" / "scored.vcf.gz") == _records(single)


def test_head_option(env, tmp_path):
    import numpy as np

    heads = pytest.importorskip("genomod.heads.base")
    head = heads.new_head("logistic", layer="norm")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3 * 32))
    head.fit(X, (X[:, 0] > 0).astype(float))
    head.save(tmp_path / "head")
    out = tmp_path / "h.vcf"
    assert main(_args(env, out, "--head", str(tmp_path / "head"))) == 0
    info = {r[2]: r[5] for r in _records(out)}
    assert 0.0 <= info["s250"]["GENOMOD_HEAD"][0] <= 1.0
