"""Background calibration: sampling, table build/save/load, backoff, VariantScorer, score/calibrate/eval CLIs."""

from __future__ import annotations

import gzip
import json
import random
import shutil

import numpy as np
import pandas as pd
import pysam
import pytest
import torch

from genomod.checkpoint import load_model, save_model
from genomod.cli.main import main
from genomod.errors import ConfigError, InputError, ModelError
from genomod.io import Interval
from genomod.scoring import VariantScorer
from genomod.scoring.calibration import (
    TABLE_NAME,
    CalibrationTable,
    build_calibration_table,
    context_index,
    context_string,
    file_sha256,
    load_calibration,
    read_calibration,
    sample_sites,
    site_context,
)
from tests.model_helpers import tiny_test_model

WINDOW = 64
EXCLUDE = (500, 900)  # chr1, 0-based half-open


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("calib")
    save_model(tiny_test_model(0), d / "model")
    rng = random.Random(11)
    chr1 = "".join(rng.choice("ACGT") for _ in range(1500))
    chr1 = chr1[:200] + chr1[200:260].lower() + chr1[260:1000] + "NNNNN" + chr1[1005:]
    chr2 = "".join(rng.choice("ACGT") for _ in range(300))
    genome = {"chr1": chr1, "chr2": chr2}
    (d / "ref.fa").write_text("".join(f">{k}\n{v}\n" for k, v in genome.items()))
    (d / "ex.bed").write_text(f"chr1\t{EXCLUDE[0]}\t{EXCLUDE[1]}\n")
    model = load_model(d / "model")  # from its folder: the table records the weights' sha256
    table = build_calibration_table(model, d / "ref.fa", 120, modes=("fast", "exact", "embed"), window=WINDOW, rc=True,
                                    exclude_bed=d / "ex.bed", seed=3, batch_size=8, progress=False)
    table.save(d / "model")  # -> model/calibration.tsv, where --calibrate looks
    torch.set_num_threads(threads)
    return {"dir": d, "genome": genome, "model": model, "table": table}


def _eligible(genome: dict[str, str]) -> set[tuple[str, int]]:
    out = set()
    for name, seq in genome.items():
        for p in range(2, len(seq) - 2):
            if all(b in "ACGT" for b in seq[p - 2 : p + 3].upper()):
                out.add((name, p))
    return out


def test_contexts():
    assert context_index("AAAAA") == 0 and context_index("TTTTT") == 1023
    assert context_string(context_index("ACGTA")) == "ACGTA" and context_index("acgta") == context_index("ACGTA")
    assert context_index("ACNTA") == -1 and context_index("ACG") == -1
    seq = "ACGTACGT"
    fetch = lambda c, s, e: seq[s:e]  # noqa: E731
    assert site_context(fetch, "c", 3, 8) == "CGTAC" and site_context(fetch, "c", 0, 8) == "NNACG"


def test_sampling_respects_exclusion_and_seed(env):
    genome = env["genome"]
    allowed = {(c, p) for c, p in _eligible(genome) if not (c == "chr1" and EXCLUDE[0] <= p < EXCLUDE[1])}
    bed = [Interval("chr1", *EXCLUDE)]
    every = sample_sites(genome, 10**6, seed=0, exclude_bed=bed)  # more than eligible: all of them
    got = {(g.contig, int(p)) for g in every for p in g.positions}
    assert got == allowed
    for g in every:  # the context index matches the sequence
        seq = genome[g.contig]
        assert all(context_string(int(c)) == seq[p - 2 : p + 3].upper() for p, c in zip(g.positions, g.contexts))
    a = sample_sites(genome, 50, seed=1, exclude_bed=bed)
    b = sample_sites(genome, 50, seed=1, exclude_bed=bed)
    c = sample_sites(genome, 50, seed=2, exclude_bed=bed)
    flat = lambda s: [(g.contig, int(p)) for g in s for p in g.positions]  # noqa: E731
    assert flat(a) == flat(b) != flat(c) and len(set(flat(a))) == 50 and set(flat(a)) <= allowed
    with pytest.raises(InputError, match="no position"):
        sample_sites({"x": "ACGNACGT"}, 5)
    # clustered sampling: runs of consecutive eligible positions around few anchors, still outside the BED
    runs = sample_sites(genome, 64, seed=1, exclude_bed=bed, cluster=16)
    pos = flat(runs)
    assert set(pos) <= allowed and len(set(pos)) == len(pos)
    assert 16 <= len(pos) <= 64  # 4 anchors, each up to 16 consecutive positions
    steps = [b[1] - a[1] for a, b in zip(pos, pos[1:]) if a[0] == b[0]]
    assert sum(1 for d in steps if d == 1) >= len(pos) - 8  # mostly consecutive


def test_table_build_matches_scorer(env):
    table, d = env["table"], env["dir"]
    assert table.keys() == [("embed", False), ("embed", True), ("exact", False), ("exact", True), ("fast", False),
                            ("fast", True)]
    for key in table.keys():
        assert int(table.counts(*key).sum()) == 3 * 120
    meta = table.meta
    assert meta["window"] == WINDOW and meta["n_sites"] == 120 and meta["seed"] == 3
    assert meta["sources"][0]["sha256"] == file_sha256(d / "ref.fa")
    assert meta["exclude"]["intervals"] == 1 and meta["weights_sha256"] == file_sha256(d / "model" / "model.safetensors")
    # the same sites scored by VariantScorer give the same per-cell means
    sites = sample_sites(d / "ref.fa", 120, seed=3, exclude_bed=d / "ex.bed")
    genome = env["genome"]
    rows = [(g.contig, int(p) + 1, genome[g.contig][p].upper(), a, int(c))
            for g in sites for p, c in zip(g.positions, g.contexts) for a in "ACGT" if a != genome[g.contig][p].upper()]
    assert not any(g.contig == "chr1" and EXCLUDE[0] <= p < EXCLUDE[1] for g in sites for p in g.positions)
    for mode, col in (("fast", "delta_fast"), ("exact", "delta_ll_sum"), ("embed", "delta_embed")):
        for rc in (False, True):
            sc = VariantScorer(env["model"], d / "ref.fa", window=WINDOW, rc=rc)
            df = sc.score([r[:4] for r in rows], mode="fast" if mode == "fast" else "exact")
            df["ctx"] = [r[4] for r in rows]
            means = df.groupby(["ctx", "alt"])[col].mean()
            counts = df.groupby(["ctx", "alt"])[col].size()
            for (ctx, alt), m in means.items():
                ai = "ACGT".index(alt)
                assert table.counts(mode, rc)[ctx, ai] == counts[(ctx, alt)]
                assert table.means(mode, rc)[ctx, ai] == pytest.approx(m, abs=1e-4)


def test_save_load_round_trip_exact(env, tmp_path):
    table = env["table"]
    path = table.save(tmp_path / "t.tsv")
    back = read_calibration(path)
    assert back.meta == table.meta and back.min_count == table.min_count and back.keys() == table.keys()
    ctxs = [context_string(i) for i in range(1024) for _ in range(4)]
    alts = [a for _ in range(1024) for a in "ACGT"]
    for key in table.keys():
        assert np.array_equal(back.counts(*key), table.counts(*key))
        assert np.array_equal(back.means(*key), table.means(*key), equal_nan=True)
        assert np.array_equal(back.lookup(*key, ctxs, alts), table.lookup(*key, ctxs, alts), equal_nan=True)
    assert back.to_text() == table.to_text()
    text = path.read_text().splitlines()
    assert text[0].startswith("# genomod calibration table: {") and text[1] == "mode\trc\tcontext\talt\tn\tmean"
    # load_calibration: a folder, its model.safetensors, or the file itself
    d = env["dir"] / "model"
    for where in (d, d / "model.safetensors", d / TABLE_NAME):
        assert load_calibration(where).to_text() == table.to_text()


def _hand_made(min_count: int = 10) -> CalibrationTable:
    rows = [
        ("fast", 0, "AACAA", "G", 12, 1.0),   # own 5-mer cell (n >= 10)
        ("fast", 0, "CACAC", "G", 5, 3.0),    # thin: 3-mer ACA>G pools 12 + 5 + 7 = 24 sites
        ("fast", 0, "GACAG", "G", 7, 6.0),
        ("fast", 0, "TTCTT", "G", 3, -3.0),   # 3-mer TCT>G has 3 sites: back off to C>G
    ]
    return CalibrationTable.from_rows(rows, {"window": WINDOW}, min_count=min_count)


def test_backoff_and_apply():
    t = _hand_made()
    ctx = ["AACAA", "CACAC", "GACAG", "TTCTT", "GGCGG", "AAAAA", "AANAA", "AACAA", "aacaa", "AACAA"]
    alt = ["G", "G", "G", "G", "G", "C", "G", "C", "G", "AT"]
    aca = (12 * 1.0 + 5 * 3.0 + 7 * 6.0) / 24
    c_g = (12 * 1.0 + 5 * 3.0 + 7 * 6.0 + 3 * -3.0) / 27
    want = [1.0, aca, aca, c_g, c_g, np.nan, np.nan, np.nan, 1.0, np.nan]
    got = t.lookup("fast", False, ctx, alt)
    assert np.allclose(got, want, equal_nan=True, rtol=0, atol=1e-12)
    assert t.levels("fast", False, ctx, alt).tolist() == [5, 3, 3, 1, 1, 0, 0, 0, 5, 0]
    raw = np.linspace(-2, 2, len(ctx))
    assert np.allclose(t.apply("fast", False, ctx, alt, raw), raw - np.asarray(want), equal_nan=True)
    low = _hand_made(min_count=5)  # CACAC now has enough sites of its own
    assert low.lookup("fast", False, ["CACAC", "GACAG"], ["G", "G"]).tolist() == [3.0, 6.0]
    with pytest.raises(ConfigError, match="no rows for mode exact"):
        t.lookup("exact", False, ["AACAA"], ["G"])
    with pytest.raises(ConfigError, match="--rc"):
        t.apply("fast", True, ["AACAA"], ["G"], [0.0])


@pytest.mark.parametrize(
    ("lines", "where", "what"),
    [
        (["mode\trc\tcontext\talt\tn\tmean"], "line 1", "not a genomod calibration table"),
        (["# genomod calibration table: {x", "mode\trc\tcontext\talt\tn\tmean"], "line 1", "JSON"),
        (["H", "mode\tcontext"], "line 2", "column header"),
        (["H", "C", "fast\t0\tAACAA\tG\t3\t1.0", "fast\t0\tAACAA\tG\t3"], "line 4", "6 tab-separated"),
        (["H", "C", "fast\t0\tAANAA\tG\t3\t1.0"], "line 3", "context"),
        (["H", "C", "fast\t0\tAACAA\tC\t3\t1.0"], "line 3", "alt"),
        (["H", "C", "slow\t0\tAACAA\tG\t3\t1.0"], "line 3", "mode"),
        (["H", "C", "fast\t2\tAACAA\tG\t3\t1.0"], "line 3", "rc"),
        (["H", "C", "fast\t0\tAACAA\tG\t0\t1.0"], "line 3", "positive integer"),
        (["H", "C", "fast\t0\tAACAA\tG\t3\tnan"], "line 3", "finite"),
        (["H", "C", "fast\t0\tAACAA\tG\t3\t1.0", "fast\t0\tAACAA\tG\t3\t1.0"], "line 4", "duplicate"),
        (["H", "C"], "", "no rows"),
    ],
)
def test_malformed_tables(tmp_path, lines, where, what):
    header = '# genomod calibration table: {"window": 64}'
    text = [header if x == "H" else "mode\trc\tcontext\talt\tn\tmean" if x == "C" else x for x in lines]
    path = tmp_path / "bad.tsv"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(InputError) as exc:
        read_calibration(path)
    msg = str(exc.value)
    assert str(path) in msg and where in msg and what in msg and "\n" not in msg


def test_scorer_calibrated_columns(env):
    d, genome, table = env["dir"], env["genome"], env["table"]
    s = genome["chr1"]
    alt = lambda b: "A" if b.upper() != "A" else "C"  # noqa: E731
    variants = [("chr1", p, s[p - 1].upper(), alt(s[p - 1])) for p in (30, 230, 420, 1200, 1498)]
    variants += [("chr1", 1, s[0], alt(s[0])),  # context runs past the contig start: NaN
                 ("chr1", 999, s[998], alt(s[998])),  # N at pos+2: NaN
                 ("chr1", 100, s[99], s[99] + "GT")]  # insertion: NaN (exact only)
    sc = VariantScorer(str(d / "model"), d / "ref.fa", window=WINDOW, calibrate=True, device="cpu")
    assert sc.score_columns("exact") == ("delta_ll_mean", "delta_ll_mean_cal", "delta_ll_sum", "delta_ll_sum_cal",
                                        "delta_embed", "delta_embed_cal")
    ctx = [s[p - 3 : p + 2].upper() if p >= 3 else "N" for _, p, _, _ in variants]
    alts = [v[3] for v in variants]
    fast = sc.score(variants, mode="fast")
    want = fast["delta_fast"].to_numpy() - table.lookup("fast", False, ctx, alts)
    assert np.array_equal(fast["delta_fast_cal"].to_numpy(), want, equal_nan=True)
    assert np.isfinite(want[:5]).all() and np.isnan(fast["delta_fast_cal"].to_numpy()[5:]).all()
    exact = sc.score(variants, mode="exact")
    want = exact["delta_ll_sum"].to_numpy() - table.lookup("exact", False, ctx, alts)
    assert np.array_equal(exact["delta_ll_sum_cal"].to_numpy(), want, equal_nan=True)
    assert np.allclose(exact["delta_ll_mean_cal"], want / (WINDOW - 1), equal_nan=True)
    assert exact["status"].tolist()[-1] == "ok" and np.isnan(exact["delta_ll_sum_cal"].iloc[-1])
    want = exact["delta_embed"].to_numpy() - table.lookup("embed", False, ctx, alts)
    assert np.array_equal(exact["delta_embed_cal"].to_numpy(), want, equal_nan=True)
    assert np.isfinite(want[:5]).all() and np.isnan(exact["delta_embed_cal"].to_numpy()[5:]).all()
    assert not np.allclose(want[:5], exact["delta_embed"].to_numpy()[:5])  # the background mean is not 0
    # a table without embed rows (built before embed calibration existed) calibrates delta LL only
    no_embed = CalibrationTable({k: v for k, v in table.cells.items() if k[0] != "embed"}, dict(table.meta))
    old = VariantScorer(env["model"], d / "ref.fa", window=WINDOW, calibration=no_embed)
    assert old.score_columns("exact")[-2:] == ("delta_ll_sum_cal", "delta_embed")
    assert "delta_embed_cal" not in old.score(variants[:2], mode="exact").columns
    rc = VariantScorer(env["model"], d / "ref.fa", window=WINDOW, rc=True, calibration=table)
    df = rc.score(variants[:3], mode="fast")
    assert np.array_equal(df["delta_fast_cal"], df["delta_fast"] - table.lookup("fast", True, ctx[:3], alts[:3]))
    # a table is refused for another window, for mode/rc rows it lacks, and for other weights
    with pytest.raises(ConfigError, match="window 64 but scoring uses window 32"):
        VariantScorer(env["model"], d / "ref.fa", window=32, calibration=table)
    fast_only = CalibrationTable({k: v for k, v in table.cells.items() if k[0] == "fast"}, dict(table.meta))
    with pytest.raises(ConfigError, match="no rows for mode exact"):
        VariantScorer(env["model"], d / "ref.fa", window=WINDOW, calibration=fast_only).score(variants, "exact")
    other = CalibrationTable(table.cells, {**table.meta, "weights_sha256": "0" * 64})
    with pytest.raises(ModelError, match="other weights"):
        VariantScorer(env["model"], d / "ref.fa", window=WINDOW, calibration=other)


def _score_args(env, out, model=None, *extra):
    d = env["dir"]
    return ["score", "-i", str(d / "in.vcf"), "-r", str(d / "ref.fa"), "-o", str(out), "--model",
            str(model or d / "model"), "--window", str(WINDOW), "--device", "cpu", *extra]


def test_score_cli_calibrate(env, tmp_path, capsys):
    d, s = env["dir"], env["genome"]["chr1"]
    alt = lambda b: "A" if b.upper() != "A" else "C"  # noqa: E731
    rows = [("chr1", p, s[p - 1].upper(), alt(s[p - 1])) for p in (40, 300, 1300)]
    rows += [("chr1", 600, s[599].upper(), ",".join(b for b in "ACGT" if b != s[599].upper())),
             ("chr1", 700, s[699].upper(), s[699].upper() + "T"), ("chr2", 1, s[0].upper(), "<DEL>")]
    head = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=1500>\n##contig=<ID=chr2,length=300>\n"
    head += "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    (d / "in.vcf").write_text(head + "".join(f"{c}\t{p}\tv{i}\t{r}\t{a}\t.\t.\t.\n" for i, (c, p, r, a) in
                                             enumerate(rows)))
    out = tmp_path / "o.vcf.gz"
    assert main(_score_args(env, out, None, "--mode", "fast", "--calibrate", "--tsv", str(tmp_path / "o.tsv"))) == 0
    with gzip.open(out, "rt") as fh:
        text = fh.read()
    assert '##INFO=<ID=GENOMOD_FAST_CAL,Number=A,Type=Float,Description="Calibrated GENOMOD_FAST' in text
    assert "##genomod_calibration=<File=" in text and "Sites=120" in text
    with pysam.VariantFile(str(out)) as vf:
        recs = list(vf)
    assert [r.id for r in recs] == [f"v{i}" for i in range(len(rows))]  # every record kept
    table = env["table"]
    for r in recs[:3]:
        ctx = s[r.pos - 3 : r.pos + 2].upper()
        want = r.info["GENOMOD_FAST"][0] - table.lookup("fast", False, [ctx], [r.alts[0]])[0]
        assert r.info["GENOMOD_FAST_CAL"][0] == pytest.approx(want, abs=1e-4)
    assert len(recs[3].info["GENOMOD_FAST_CAL"]) == 3 and "GENOMOD_FAST_CAL" not in recs[4].info
    tsv = pd.read_csv(tmp_path / "o.tsv", sep="\t")
    cols = list(tsv.columns)
    assert cols[cols.index("delta_fast") + 1] == "delta_fast_cal"
    # exact with rc: DLL_MEAN_CAL and DLL_SUM_CAL
    assert main(_score_args(env, tmp_path / "e.vcf", None, "--calibrate", "--rc")) == 0
    text = (tmp_path / "e.vcf").read_text()
    assert "ID=GENOMOD_DLL_MEAN_CAL" in text and "ID=GENOMOD_DLL_SUM_CAL" in text and "GENOMOD_DLL_SUM_CAL=" in text
    assert "ID=GENOMOD_EMBED_CAL" in text and "GENOMOD_EMBED_CAL=" in text
    capsys.readouterr()
    # a model without a table: one-line error naming the file looked for and how to build it
    bare = tmp_path / "bare"
    shutil.copytree(d / "model", bare)
    (bare / TABLE_NAME).unlink()
    assert main(_score_args(env, tmp_path / "x.vcf", bare, "--calibrate")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bare / TABLE_NAME) in err and "genomod calibrate" in err
    assert not (tmp_path / "x.vcf").exists()
    # --calibration TABLE: another file, implies --calibrate
    assert main(_score_args(env, tmp_path / "y.vcf", bare, "--mode", "fast", "--calibration",
                            str(d / "model" / TABLE_NAME))) == 0
    assert "GENOMOD_FAST_CAL=" in (tmp_path / "y.vcf").read_text()
    assert main(_score_args(env, tmp_path / "x.vcf", None, "--calibrate", "--window", "32")) == 2
    assert "window 64" in capsys.readouterr().err


def test_calibrate_cli(env, tmp_path, capsys):
    assert main(["calibrate", "--help"]) == 0
    assert "--sites" in capsys.readouterr().out
    d = env["dir"]
    target = tmp_path / "m"
    shutil.copytree(d / "model", target)
    (target / TABLE_NAME).unlink()
    args = ["calibrate", "--model", str(target), "--reference", str(d / "ref.fa"), "--sites", "40", "--window",
            str(WINDOW), "--exclude", str(d / "ex.bed"), "--device", "cpu", "--out", str(target)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "wrote" in err and "fast rc=0" in err
    t = load_calibration(target)
    assert t.keys() == [("fast", False)] and int(t.counts("fast", False).sum()) == 120
    assert t.meta["sources"][0]["sha256"] == file_sha256(d / "ref.fa") and t.meta["exclude"]["path"] == str(d / "ex.bed")
    assert sorted(p.name for p in target.iterdir() if p.name.startswith(".")) == []  # no temporary left
    assert main(args[:-1] + [str(tmp_path / "nodir" / "c.tsv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_brca1_calibrate(env, tmp_path, capsys):
    from genomod.eval.brca1 import brca1_table_path, load_brca1

    if not brca1_table_path().is_file():
        pytest.skip("shipped BRCA1 table not present")
    df = load_brca1()
    sub = pd.concat([df[df.func_class == "LOF"].head(12), df[df.func_class != "LOF"].head(28)])
    sub.to_csv(tmp_path / "sub.tsv", sep="\t", index=False)
    out = tmp_path / "b"
    rc = main(["eval", "brca1", "--model", str(env["dir"] / "model"), "--mode", "fast", "--window", str(WINDOW),
               "--device", "cpu", "--table", str(tmp_path / "sub.tsv"), "--n-boot", "0", "--calibrate",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "overall AUROC -delta_fast:" in text and "`-delta_fast_cal`" in text
    meta = json.loads((out / "metrics.json").read_text())
    names = [r["score"] for r in meta["overall"]]
    assert names.index("-delta_fast_cal") == names.index("-delta_fast") + 1
    cal = [r for r in meta["overall"] if r["score"] == "-delta_fast_cal"][0]
    assert cal["n_used"] == 40 and meta["calibration"]["n_sites"] == 120
    assert "## Background calibration" in (out / "report.md").read_text()
    assert main(["eval", "brca1", "--scores-tsv", str(tmp_path / "sub.tsv"), "--calibrate", "--out", str(out)]) == 2
