"""Long inputs: chunked inference (carried state) equals one pass for embeddings and scores; `genomod embed`.

Fresh tiny models only (init LI poles are negative, so chunked and one-pass forwards agree at any length);
lengths of a few kb with chunk sizes that do not divide them.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from genomod.checkpoint import save_model
from genomod.cli.main import main
from genomod.errors import ConfigError
from genomod.scoring import VariantScorer
from genomod.scoring.embed import embed_sequence, resolve_layer
from genomod.tokenizer import encode, reverse_complement
from tests.model_helpers import tiny_test_model

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
LENGTH = 3001  # chunk sizes below do not divide it
SCORE_TOL = 1e-4  # abs, on delta sums over ~1,000 positions (float32; FFT sizes differ between chunkings)


@pytest.fixture(scope="module")
def model():
    return tiny_test_model(0)


@pytest.fixture(scope="module")
def env(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("long")
    rng = random.Random(17)
    genome = {"chrA": "".join(rng.choice("ACGT") for _ in range(LENGTH)),
              "chrB": "".join(rng.choice("ACGTacgt") for _ in range(700))}
    (d / "ref.fa").write_text("".join(f">{k}\n" + "\n".join(v[i : i + 60] for i in range(0, len(v), 60)) + "\n"
                                      for k, v in genome.items()))
    save_model(model, d / "model")
    return {"dir": d, "genome": genome, "fasta": d / "ref.fa", "model": d / "model"}


def _one_pass(model, seq: str, layer: str, rc: bool = False) -> np.ndarray:
    """Reference: one forward over the whole sequence (and its RC, flipped back and averaged)."""
    x = torch.from_numpy(encode(seq))[None]
    with torch.no_grad():
        h = model(x, return_hidden=[layer]).hidden[layer][0].numpy()
        if rc:
            back = model(reverse_complement(x), return_hidden=[layer]).hidden[layer][0].numpy()[::-1]
            h = 0.5 * (h + back)
    return h


# -- model level -------------------------------------------------------------------------------------------
def test_cli_default_chunk_matches_model():
    from genomod.cli import DEFAULT_CHUNK as CLI_CHUNK
    from genomod.model.hybrid import DEFAULT_CHUNK

    assert CLI_CHUNK == DEFAULT_CHUNK


def test_iter_chunks_continues_a_cache_and_rejects_bad_chunk(model):
    x = torch.from_numpy(encode("ACGT" * 100))[None]
    with torch.no_grad():
        full = model(x).logits
        prefix = model(x[:, :150], use_cache=True)
        parts = [out.logits for _, out in model.iter_chunks(x[:, 150:], 47, cache=prefix.cache)]
    assert torch.allclose(torch.cat(parts, 1), full[:, 150:], atol=2e-4)
    with pytest.raises(ConfigError, match="chunk_size"):
        next(model.iter_chunks(x, 0))


def test_cpu_attention_mask_blocks_shrink_with_key_length(monkeypatch):
    """The CPU K/V-cache path cuts queries into blocks whose boolean mask fits MASK_BYTES."""
    import genomod.ops.attention as attn
    from tests.model_helpers import tiny_test_model as make

    monkeypatch.setattr(attn, "MASK_BYTES", 64)  # at most 64 mask bytes: blocks of 1 query near the end
    m = make(3, layer_types=("MHA", "SE", "MHA"))
    x = torch.from_numpy(encode("".join(random.Random(2).choice("ACGT") for _ in range(300))))[None]
    with torch.no_grad():
        full = m(x).logits
        chunked = m.forward_chunked(x, chunk_size=110).logits
    assert torch.allclose(full, chunked, atol=2e-4)


# -- embeddings --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rc", [False, True])
def test_embed_chunked_equals_one_pass(model, env, rc):
    seq = env["genome"]["chrA"]
    want = _one_pass(model, seq, "norm", rc)
    got = embed_sequence(model, seq, layer="norm", chunk_size=700, rc=rc)
    assert got.shape == (LENGTH, 32) and got.dtype == np.float32
    assert np.abs(want).max() > 0.5  # normalised layer: a meaningful scale for the tolerance
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)
    pooled = embed_sequence(model, seq, layer="norm", chunk_size=1000, rc=rc, pool="mean")
    np.testing.assert_allclose(pooled, want.mean(0), atol=1e-5)


def test_resolve_layer(model):
    assert resolve_layer(model) == "blocks.3"
    assert resolve_layer(model, -1) == "blocks.3" and resolve_layer(model, "1") == "blocks.1"
    assert resolve_layer(model, "blocks.2.mlp.l3") == "blocks.2.mlp.l3"
    for bad in ("blocks.9", "4", "-5", ""):
        with pytest.raises(ConfigError):
            resolve_layer(model, bad)


# -- scores ------------------------------------------------------------------------------------------------
def _variants(genome: dict[str, str]) -> list[tuple]:
    s = genome["chrA"]
    alt = lambda b: "A" if b != "A" else "C"  # noqa: E731
    return [("chrA", 1500, s[1499], ",".join(b for b in "ACGT" if b != s[1499])),
            ("chrA", 1700, s[1699:1703], s[1699]),           # deletion
            ("chrA", 2990, s[2989], alt(s[2989])),           # window past the contig end
            ("chrA", 2000, s[1999], s[1999] + "GT")]          # insertion


@pytest.mark.parametrize("rc", [False, True])
def test_exact_scores_chunked_equal_one_pass(model, env, rc):
    kw = dict(window=2048, rc=rc, batch_size=4)
    one = VariantScorer(model, env["fasta"], chunk_tokens=None, **kw).score(_variants(env["genome"]), "exact")
    chunked = VariantScorer(model, env["fasta"], chunk_tokens=450, **kw).score(_variants(env["genome"]), "exact")
    assert (one.status == "ok").all() and len(one) == 6
    np.testing.assert_allclose(chunked.delta_ll_sum, one.delta_ll_sum, atol=SCORE_TOL)
    assert np.abs(one.delta_ll_sum).max() > 10 * SCORE_TOL  # the scores are not all ~0
    np.testing.assert_allclose(chunked.delta_embed, one.delta_embed, atol=SCORE_TOL)  # NaN (indels) in both
    assert np.isfinite(one.delta_embed).sum() == 4


@pytest.mark.parametrize("rc", [False, True])
def test_fast_scores_chunked_equal_one_pass(model, env, rc):
    s = env["genome"]["chrA"]
    snvs = [("chrA", p, s[p - 1], b) for p in (3, 900, 1024, 1025, 2500, 3001) for b in "ACGT" if b != s[p - 1]]
    kw = dict(window=2048, rc=rc)
    one = VariantScorer(model, env["fasta"], chunk_tokens=None, **kw).score(snvs, "fast")
    chunked = VariantScorer(model, env["fasta"], chunk_tokens=333, **kw).score(snvs, "fast")
    np.testing.assert_allclose(chunked.delta_fast, one.delta_fast, atol=1e-4)
    assert np.isfinite(one.delta_fast).all()


def test_score_cli_chunk_size(env, tmp_path):
    s = env["genome"]["chrA"]
    vcf = tmp_path / "in.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chrA,length=3001>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\t"
                   f"INFO\nchrA\t1500\tv1\t{s[1499]}\t{'A' if s[1499] != 'A' else 'C'}\t.\tPASS\t.\n")
    rows = {}
    for chunk in ("0", "500"):
        tsv = tmp_path / f"out{chunk}.tsv"
        args = ["score", "-i", str(vcf), "-r", str(env["fasta"]), "-o", str(tmp_path / f"o{chunk}.vcf"), "--model",
                str(env["model"]), "--window", "2048", "--device", "cpu", "--chunk-size", chunk, "--tsv", str(tsv)]
        assert main(args) == 0
        header, row = tsv.read_text().splitlines()[:2]
        rows[chunk] = float(dict(zip(header.split("\t"), row.split("\t")))["delta_ll_sum"])
    assert abs(rows["0"] - rows["500"]) < SCORE_TOL
    assert main(["score", "-i", str(vcf), "-r", str(env["fasta"]), "-o", str(tmp_path / "x.vcf"), "--model",
                 str(env["model"]), "--chunk-size", "-1"]) == 2


# -- genomod embed -----------------------------------------------------------------------------------------
def _embed_args(env, out, *extra) -> list[str]:
    return ["embed", "-i", str(env["fasta"]), "-o", str(out), "--model", str(env["model"]), "--device", "cpu",
            "--chunk-size", "600", *extra]


def test_embed_cli_h5_regions_and_rc(model, env, tmp_path, capsys):
    out = tmp_path / "emb.h5"
    assert main(_embed_args(env, out, "--region", "chrA:101-2900", "--region", "chrB:1-700", "--rc",
                            "--layer", "norm")) == 0
    assert "2 region(s)" in capsys.readouterr().err
    seq = env["genome"]["chrA"]
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["chrA:101-2900", "chrB:1-700"]
        ds = f["chrA:101-2900"]
        assert ds.shape == (2800, 32) and ds.dtype == np.float32
        assert (ds.attrs["contig"], ds.attrs["start"], ds.attrs["end"]) == ("chrA", 100, 2900)
        np.testing.assert_allclose(ds[:], _one_pass(model, seq[100:2900], "norm", rc=True), atol=2e-4, rtol=1e-4)
        np.testing.assert_allclose(f["chrB:1-700"][:], _one_pass(model, env["genome"]["chrB"], "norm", rc=True),
                                   atol=2e-4, rtol=1e-4)
        meta = json.loads(f.attrs["genomod_meta"])
    assert meta["layer"] == "norm" and meta["rc"] and meta["chunk_size"] == 600 and meta["pool"] == "none"
    assert [r["name"] for r in meta["regions"]] == ["chrA:101-2900", "chrB:1-700"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_embed_cli_npz_bed_names_default_layer_float16(model, env, tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\nchrA\t0\t3001\twhole_A\nchrB\t10\t20\n")
    out = tmp_path / "emb.npz"
    assert main(_embed_args(env, out, "--regions", str(bed), "--float16")) == 0
    with np.load(out) as z:
        assert sorted(z.files) == ["_meta", "chrB:11-20", "whole_A"]
        assert z["whole_A"].shape == (LENGTH, 32) and z["whole_A"].dtype == np.float16
        want = _one_pass(model, env["genome"]["chrA"], "blocks.3")  # default: the last block
        np.testing.assert_allclose(z["whole_A"].astype(np.float32), want, atol=1e-3, rtol=2e-3)
        meta = json.loads(str(z["_meta"]))
    assert meta["layer"] == "blocks.3" and meta["dtype"] == "float16"
    assert meta["regions"][1] == {"name": "chrB:11-20", "contig": "chrB", "start": 10, "end": 20}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_embed_cli_mean_pool_all_contigs(model, env, tmp_path):
    out = tmp_path / "pooled.npz"
    assert main(_embed_args(env, out, "--pool", "mean", "--layer", "-1")) == 0
    with np.load(out) as z:
        assert sorted(z.files) == ["_meta", "chrA", "chrB"]
        assert z["chrA"].shape == (32,)
        np.testing.assert_allclose(z["chrA"], _one_pass(model, env["genome"]["chrA"], "blocks.3").mean(0), atol=1e-5)


@pytest.mark.parametrize(("extra", "message"), [
    (["--region", "chrZ:1-10"], "unknown contig 'chrZ'"),
    (["--region", "chrA:10-5000"], "region chrA:10-5000: end 5000 is beyond chrA (length 3001)"),
    (["--region", "chrA:0-5"], "invalid region 'chrA:0-5'"),
    (["--region", "chrA:1-5", "--region", "chrA:1-5"], "given twice"),
    (["--layer", "blocks.42"], "unknown layer 'blocks.42'"),
    (["--chunk-size", "0"], "--chunk-size must be >= 1"),
])
def test_embed_cli_errors_name_the_problem(env, tmp_path, capsys, extra, message):
    out = tmp_path / "e.h5"
    assert main(_embed_args(env, out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("genomod: error:")
    assert not list(tmp_path.iterdir())


def test_embed_cli_file_errors(env, tmp_path, capsys):
    assert main(_embed_args(env, tmp_path / "e.txt")) == 2
    assert "must end in .h5, .hdf5, .npz" in capsys.readouterr().err
    empty = tmp_path / "empty.bed"
    empty.write_text("")
    assert main(_embed_args(env, tmp_path / "e.h5", "--bed", str(empty))) == 2
    assert f"{empty}: BED file has no intervals" in capsys.readouterr().err
    missing = tmp_path / "nope.fa"
    assert main(["embed", "-i", str(missing), "-o", str(tmp_path / "e.h5")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(_embed_args(env, tmp_path / "no_dir" / "e.h5")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_embed_interrupted_leaves_no_file(env, tmp_path, monkeypatch):
    import genomod.scoring.embed as emb

    calls = []

    def boom() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(emb, "check_terminated", boom)
    for name in ("x.h5", "x.npz"):
        calls.clear()
        assert main(_embed_args(env, tmp_path / name)) == 130
    assert not list(tmp_path.iterdir())


# -- benchmark script --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_long_inputs_script_tiny(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_long_inputs.py"), "--tiny", "--length", "1024",
                          "--chunk-sizes", "300", "--threads", "1", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=540,
                         env={**os.environ, "PYTHONPATH": str(REPO)})  # this checkout's genomod, not an installed one
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(out.read_text())
    cases = {(r["case"], r["chunk_size"]) for r in doc["results"]}
    assert cases == {("embed", 300), ("score_exact", 300), ("score_fast", 300)}
    for r in doc["results"]:
        assert r["ok"] and r["length"] == 1024 and r["peak_rss_mib"] > 0 and r["tokens_per_s"] > 0
        assert r["nonfinite_values"] == 0 if r["case"] == "embed" else r["score_finite"]
    assert doc["model"] == "tiny" and "torch" in doc["versions"] and doc["device"] == "cpu"
