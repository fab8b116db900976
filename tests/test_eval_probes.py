"""Label-free probes (genomod.eval.probes): variant enumeration, Markov baselines, oracles, end to end, CLI."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from genomod.checkpoint import save_model
from genomod.cli.main import main
from genomod.errors import InputError
from genomod.eval import probes as P
from tests.model_helpers import tiny_test_model

pytestmark = pytest.mark.usefixtures("one_thread")


def snvs(variants, label=None, group=None) -> set[tuple[int, str, str]]:
    return {(v.pos, v.ref, v.alt) for v in variants
            if (label is None or v.label == label) and (group is None or v.group == group)}


# ---------------------------------------------------------------------------------------------- codons
def test_codon_table() -> None:
    assert len(P.CODON_TABLE) == 64 and P.STOP_CODONS == {"TAA", "TAG", "TGA"}
    assert P.CODON_TABLE["ATG"] == "M" and P.CODON_TABLE["TGG"] == "W" and P.CODON_TABLE["GGC"] == "G"
    assert sum(aa == "L" for aa in P.CODON_TABLE.values()) == 6


def test_orf_variants_exact_sets() -> None:
    # 0-based: GG | ATG 2-4 | TGG 5-7 | TAC 8-10 | CTG 11-13 | TAA 14-16 | CC
    seq = "GG" + "ATG" + "TGG" + "TAC" + "CTG" + "TAA" + "CC"
    orf = P.OrfRecord("t", seq, 2, 17)
    v = P.orf_variants(orf, record=3)
    assert snvs(v, 1) == {(6, "G", "A"), (7, "G", "A"), (10, "C", "A"), (10, "C", "G")}
    assert snvs(v, 0) == {(10, "C", "T"), (11, "C", "T"), (13, "G", "A"), (13, "G", "C"), (13, "G", "T")}
    assert {x.group for x in v if x.label == 1} == {"nonsense"} and all(x.record == 3 for x in v)
    # start (ATG) and stop (TAA -> TAG would be "synonymous") codons are never enumerated
    assert all(5 <= x.pos < 14 for x in v)
    # codons with N and in-frame stops are skipped
    v2 = P.orf_variants(P.OrfRecord("u", "ATG" + "CNG" + "TAA" + "CTG" + "TGA", 0, 15))
    assert snvs(v2, 0) == {(11, "G", "A"), (11, "G", "C"), (11, "G", "T"), (9, "C", "T")}


def test_read_orfs(tmp_path: Path) -> None:
    f = tmp_path / "orfs.fa.gz"
    with gzip.open(f, "wt") as fh:
        fh.write(">a cds=3-17 source=test\nGGATGTGGTACCT\nGTAACC\n>b cds=1-6\nATGTAA\n")
    recs = P.read_orfs(f)
    assert [(r.id, r.cds_start, r.cds_end, r.source) for r in recs] == [("a", 2, 17, "test"), ("b", 0, 6, "")]
    assert recs[0].seq == "GGATGTGGTACCTGTAACC"
    plain = tmp_path / "orfs.fa"
    plain.write_text(">a cds=3-17 source=test\nGGATGTGGTACCTGTAACC\n")
    assert P.read_orfs(plain)[0].cds_end == 17
    for header, msg in ((">x source=s", "lacks cds="), (">x cds=3-10", "not a multiple of 3"),
                        (">x cds=a-b", "START-END"), (">x cds=1-30", "outside")):
        plain.write_text(f">ok cds=1-6\nATGTAA\n{header}\nACGTACGTACGT\n")
        with pytest.raises(InputError, match=msg) as exc:
            P.read_orfs(plain)
        assert "orfs.fa" in str(exc.value) and "'x'" in str(exc.value) and "line 3" in str(exc.value)


# ---------------------------------------------------------------------------------------------- splice
def test_splice_variants_positions() -> None:
    # exon 0-9 | intron 10-49: GT + A*36 + AG | exon 50-54
    seq = "C" * 10 + "GT" + "A" * 36 + "AG" + "C" * 5
    rec = P.SpliceRecord("s", seq, 10, 49)
    v = P.splice_variants(rec)
    pos = {(g, lab): sorted({x.pos for x in v if (x.group, x.label) == (g, lab)})
           for g in ("donor", "acceptor") for lab in (0, 1)}
    assert pos[("donor", 1)] == [10, 11] and pos[("acceptor", 1)] == [48, 49]
    assert pos[("donor", 0)] == list(range(15, 31))
    assert pos[("acceptor", 0)] == list(range(31, 45))  # 29, 30 already listed under the donor
    assert len(v) == 3 * (2 + 2 + 16 + 14)
    assert snvs(v, 1, "donor") == {(10, "G", a) for a in "ACT"} | {(11, "T", a) for a in "ACG"}


def test_splice_variants_skip_and_clip() -> None:
    # donor GC (not GT): the donor is skipped entirely; the acceptor's negatives stay inside the intron
    seq = "C" * 10 + "GC" + "A" * 8 + "AG" + "C" * 5  # intron 10-21
    v = P.splice_variants(P.SpliceRecord("s", seq, 10, 21))
    assert {x.group for x in v} == {"acceptor"}
    assert sorted({x.pos for x in v if x.label == 0}) == list(range(10, 17))
    # short intron, both canonical: donor negatives stop before the acceptor's AG
    seq = "C" * 10 + "GT" + "A" * 12 + "AG" + "C" * 5  # intron 10-25
    v = P.splice_variants(P.SpliceRecord("s", seq, 10, 25))
    assert sorted({x.pos for x in v if x.label == 0 and x.group == "donor"}) == list(range(15, 24))
    assert not {x.pos for x in v if x.label == 0} & {10, 11, 24, 25}
    # donor only: the intron runs to the record end; acceptor only: from the record start
    seq = "C" * 5 + "GT" + "A" * 10
    v = P.splice_variants(P.SpliceRecord("s", seq, 5, None))
    assert sorted({x.pos for x in v if x.label == 0}) == list(range(10, 17))
    seq = "A" * 10 + "AG" + "CCC"
    v = P.splice_variants(P.SpliceRecord("s", seq, None, 11))
    assert sorted({x.pos for x in v if x.label == 0}) == list(range(0, 7))


def test_read_splice(tmp_path: Path) -> None:
    f = tmp_path / "splice.fa"
    f.write_text(">a donor=11 acceptor=50 source=x\n" + "C" * 60 + "\n>b donor=- acceptor=5\nAAAAAAAA\n")
    recs = P.read_splice(f)
    assert [(r.donor, r.acceptor) for r in recs] == [(10, 49), (None, 4)]
    f.write_text(">a donor=11 acceptor=99\n" + "C" * 60 + "\n")
    with pytest.raises(InputError, match=r"splice.fa: record 'a' \(line 1\): acceptor=99 outside"):
        P.read_splice(f)
    f.write_text(">a donor=11\n" + "C" * 60 + "\n")
    with pytest.raises(InputError, match="lacks acceptor="):
        P.read_splice(f)


def test_subsample_deterministic() -> None:
    v = P.orf_variants(P.OrfRecord("t", "ATG" + "TGGTACCTGTCATTG" * 4 + "TAA", 0, 66))
    a, b = P.subsample(v, 3, seed=1), P.subsample(v, 3, seed=1)
    assert a == b and len(a) == 6 and sum(x.label for x in a) == 3
    assert P.subsample(v, None) == v


# ---------------------------------------------------------------------------------------------- Markov
def naive_counts(seqs: list[str], k: int) -> np.ndarray:
    out = np.zeros((4**k, 4), dtype=np.int64)
    for s in seqs:
        for i in range(k, len(s)):
            w = s[i - k : i + 1]
            if all(c in "ACGT" for c in w):
                ctx = 0
                for c in w[:-1]:
                    ctx = ctx * 4 + "ACGT".index(c)
                out[ctx, "ACGT".index(w[-1])] += 1
    return out


def test_markov_counts_by_hand(tmp_path: Path) -> None:
    c = P.fit_markov_counts(["AACGTNAC"], 2)
    assert c[0].tolist() == [[3, 2, 1, 1]]
    assert c[1].tolist() == [[1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    expected2 = np.zeros((16, 4), dtype=np.int64)
    expected2[0, 1] = expected2[1, 2] = expected2[6, 3] = 1  # AA->C, AC->G, CG->T
    assert np.array_equal(c[2], expected2)
    # random sequences with N: strings, token arrays, a 2-D token array (rows separate), small chunks
    rng = random.Random(1)
    seqs = ["".join(rng.choice("ACGTACGTACGTN") for _ in range(n)) for n in (50, 3, 120)]
    rows = ["".join(rng.choice("ACGTN") for _ in range(30)) for _ in range(5)]
    from genomod.tokenizer import encode

    for k in range(4):
        want = naive_counts(seqs, k)
        assert np.array_equal(P.fit_markov_counts(seqs, 3)[k], want)
        assert np.array_equal(P.fit_markov_counts([encode(s).astype(np.uint8) for s in seqs], 3, chunk=7)[k], want)
        grid = np.stack([encode(s).astype(np.uint8) for s in rows])
        assert np.array_equal(P.fit_markov_counts(grid, 3, chunk=64)[k], naive_counts(rows, k))
    path = P.save_markov_counts(P.fit_markov_counts(seqs, 3), tmp_path / "markov_counts.npz")
    back = P.load_markov_counts(path)
    assert sorted(back) == [0, 1, 2, 3] and np.array_equal(back[3], naive_counts(seqs, 3))
    np.savez(tmp_path / "bad.npz", order_0=np.zeros((1, 4), dtype=np.int64), order_2=np.zeros((16, 4), dtype=np.int64))
    with pytest.raises(InputError, match="without gaps"):
        P.load_markov_counts(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad.npz", order_0=np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(InputError, match="shape"):
        P.load_markov_counts(tmp_path / "bad.npz")


def uniform(tokens: np.ndarray) -> np.ndarray:
    return np.full(tokens.shape, np.log(0.25))


def test_markov_perplexity_deterministic() -> None:
    seq = "ACGTT" * 200
    counts = P.fit_markov_counts([seq], 5)
    r = P.perplexity_probe(None, [seq], counts, window=100, logprob_fn=uniform, progress=False)
    assert r["n_windows"] == 10 and r["n_targets"] == 10 * (100 - 5)
    assert r["model"]["perplexity"] == pytest.approx(4.0)
    ppl = {m["order"]: m["perplexity"] for m in r["markov"]}
    assert all(ppl[k] < 1.05 for k in range(2, 6))  # deterministic from order 2 on (period 5)
    assert ppl[0] > 3.0 and r["best_markov_order"] >= 2 and r["model_beats_best_markov"] is False


def test_model_and_markov_scored_on_same_targets() -> None:
    """A 'model' that is the order-2 Markov chain gets exactly the order-2 NLL (N bases, tails included)."""
    rng = random.Random(3)
    train = ["".join(rng.choice("AACCGTTTN") for _ in range(500))]
    held = ["".join(rng.choice("ACGTTN") for _ in range(n)) for n in (230, 57)]
    counts = P.fit_markov_counts(train, 4)
    table = P.markov_logprobs(counts[2], alpha=1.0)

    def order2(tokens: np.ndarray) -> np.ndarray:
        x = P._base_index(tokens)
        return table[P._contexts(x, 2), np.where(x < 0, 0, x)]

    r = P.perplexity_probe(None, held, counts, window=40, logprob_fn=order2, progress=False)
    m2 = next(m for m in r["markov"] if m["order"] == 2)
    assert r["model"]["nll"] == pytest.approx(m2["nll"], rel=1e-12)
    assert r["settings"]["skip_first"] == 4 and r["n_windows"] == 6 + 2


# ---------------------------------------------------------------------------------------------- oracles
def random_seq(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


def make_orfs(rng: random.Random, n: int = 3, codons: int = 30) -> list[P.OrfRecord]:
    sense = [c for c, aa in P.CODON_TABLE.items() if aa != "*"]
    out = []
    for i in range(n):
        cds = "ATG" + "".join(rng.choice(sense) for _ in range(codons)) + "TAA"
        out.append(P.OrfRecord(f"orf{i}", random_seq(rng, 20) + cds + random_seq(rng, 15), 20, 20 + len(cds)))
    return out


def make_splice(rng: random.Random, n: int = 3) -> list[P.SpliceRecord]:
    out = []
    for i in range(n):
        intron = "GT" + random_seq(rng, 60) + "AG"
        out.append(P.SpliceRecord(f"sp{i}", random_seq(rng, 30) + intron + random_seq(rng, 30), 30, 30 + 63))
    out.append(P.SpliceRecord("bad", random_seq(rng, 30) + "CC" + random_seq(rng, 40), 30, None))
    return out


def test_oracle_score_fn_gives_auroc_one() -> None:
    rng = random.Random(0)

    def oracle(variants, seqs):
        assert all(seqs[v.record][v.pos] == v.ref for v in variants)
        return np.array([-5.0 if v.label == 1 else 0.0 for v in variants])

    r = P.nonsense_probe(None, make_orfs(rng), score_fn=oracle, n_boot=50, progress=False)
    assert r["overall"]["auroc"] == 1.0 and r["overall"]["auroc_lo"] == 1.0
    assert r["classes"]["nonsense"]["mean_delta"] == -5.0 and r["classes"]["synonymous"]["mean_delta"] == 0.0
    assert r["overall"]["n_pos"] == r["classes"]["nonsense"]["n"] > 0
    s = P.splice_probe(None, make_splice(rng), score_fn=oracle, n_boot=50, progress=False)
    assert s["overall"]["auroc"] == 1.0
    assert s["by_site"]["donor"]["auroc"] == 1.0 and s["by_site"]["acceptor"]["auroc"] == 1.0
    assert s["by_site"]["donor"]["n_sites"] == 3 and s["by_site"]["donor"]["n_sites_skipped_noncanonical"] == 1
    assert s["classes"]["donor_canonical"]["n"] == 3 * 6 and s["classes"]["donor_intronic"]["n"] == 3 * 16 * 3
    # an anti-oracle gives 0 and a constant score 0.5
    r = P.nonsense_probe(None, make_orfs(rng), score_fn=lambda v, s: -oracle(v, s), n_boot=0, progress=False)
    assert r["overall"]["auroc"] == 0.0
    r = P.nonsense_probe(None, make_orfs(rng), score_fn=lambda v, s: np.zeros(len(v)), n_boot=0, progress=False)
    assert r["overall"]["auroc"] == 0.5


def test_spliced_orf_keeps_the_mrna_and_frame() -> None:
    """Removing the inserted introns gives back the mRNA; exons inside the CDS are 60-180 bp; each insert is a
    whole held-out intron; nonsense/synonymous SNVs land on the same bases (an oracle still scores 1.0)."""
    rng = random.Random(3)
    orfs = make_orfs(rng, n=4, codons=150)
    introns = P.held_out_introns(make_splice(rng, 5))
    assert len(introns) == 5 and all(i[:2] == "GT" and i[-2:] == "AG" and len(i) == 64 for i in introns)
    gen = np.random.default_rng(0)
    for orf in orfs:
        gene, offsets = P.spliced_orf(orf, introns, gen)
        assert "".join(gene[o] for o in offsets) == orf.seq and len(gene) > len(orf.seq)
        jumps = np.flatnonzero(np.diff(offsets) > 1)  # last mRNA base before each intron
        assert len(jumps) >= 2 and all(gene[offsets[j] + 1 : offsets[j + 1]] in introns for j in jumps)
        exon_lens = np.diff(np.concatenate([[orf.cds_start - 1], jumps]))
        assert (exon_lens >= 60).all() and (exon_lens <= 180).all()
        assert orf.cds_end - 1 - jumps[-1] >= 60  # the last cut leaves at least one minimum exon of CDS

    def oracle(variants, seqs):
        assert all(seqs[v.record][v.pos] == v.ref for v in variants)
        return np.array([-5.0 if v.label == 1 else 0.0 for v in variants])

    r = P.exon_nonsense_probe(None, orfs, make_splice(rng), score_fn=oracle, n_boot=20, progress=False)
    plain = P.nonsense_probe(None, orfs, score_fn=oracle, n_boot=0, progress=False)
    assert r["overall"]["auroc"] == 1.0 and r["n_introns"] == 3
    assert r["overall"]["n_pos"] == plain["overall"]["n_pos"] and r["overall"]["n_neg"] == plain["overall"]["n_neg"]
    with pytest.raises(InputError, match="whole GT..AG introns"):
        P.exon_nonsense_probe(None, orfs, make_splice(rng)[-1:], score_fn=oracle, progress=False)


# ---------------------------------------------------------------------------------------------- end to end
def write_probe_dir(d: Path, markov: bool = True) -> Path:
    rng = random.Random(7)
    d.mkdir(parents=True, exist_ok=True)
    with gzip.open(d / "orfs.fa.gz", "wt") as fh:
        for r in make_orfs(rng, 2, 20):
            fh.write(f">{r.id} cds={r.cds_start + 1}-{r.cds_end} source=test\n{r.seq}\n")
    with gzip.open(d / "splice.fa.gz", "wt") as fh:
        for r in make_splice(rng, 2):
            donor = "-" if r.donor is None else r.donor + 1
            acc = "-" if r.acceptor is None else r.acceptor + 1
            fh.write(f">{r.id} donor={donor} acceptor={acc} source=test\n{r.seq}\n")
    held = [random_seq(rng, 150), "NNNN" + random_seq(rng, 90)]
    with gzip.open(d / "heldout.fa.gz", "wt") as fh:
        fh.writelines(f">h{i} source=test\n{s}\n" for i, s in enumerate(held))
    if markov:
        P.save_markov_counts(P.fit_markov_counts([random_seq(rng, 2000)], 3), d / "markov_counts.npz")
    return d


@pytest.fixture(scope="module")
def probe_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("probes")
    write_probe_dir(d / "probes")
    save_model(tiny_test_model(0), d / "model")
    return d


def test_run_probes_tiny_model(probe_env: Path) -> None:
    model = tiny_test_model(0)
    res = P.run_probes(model, probe_env / "probes", window=64, n_boot=20, progress=False)
    json.dumps(res, allow_nan=False)
    assert set(res["probes"]) == {"nonsense", "exon_nonsense", "splice", "perplexity"} and res["skipped"] == {}
    assert res["settings"]["window"] == 64 and res["settings"]["rc"] is True
    for name in ("nonsense", "exon_nonsense", "splice"):
        m = res["probes"][name]["overall"]
        assert 0.0 <= m["auroc"] <= 1.0 and m["n_missing"] == 0 and m["n_pos"] > 0 and m["n_neg"] > 0
    assert set(res["probes"]["splice"]["by_site"]) == {"donor", "acceptor"}
    p = res["probes"]["perplexity"]
    assert [m["order"] for m in p["markov"]] == [0, 1, 2, 3]
    assert p["model"]["perplexity"] > 1 and isinstance(p["model_beats_best_markov"], bool)
    # windows of 64: 150 bp -> 64+64+22; NNNN+90 bp -> 64+30, its first target needs 3 ACGT bases after the Ns
    assert p["n_targets"] == (64 - 3) * 2 + (22 - 3) + (64 - 4 - 3) + (30 - 3)


def test_exact_mode_with_rc(probe_env: Path) -> None:
    """Exact mode runs (with rc) through the same probe; a capped class count bounds its cost."""
    model = tiny_test_model(0)
    r = P.nonsense_probe(model, probe_env / "probes" / "orfs.fa.gz", mode="exact", window=32,
                         max_variants_per_class=4, n_boot=0, progress=False)
    assert r["classes"]["nonsense"]["n"] <= 4 and r["classes"]["synonymous"]["n"] == 4
    assert 0.0 <= r["overall"]["auroc"] <= 1.0
    # the fast and exact scorers see the same variants; exact + rc averages the two strands
    orfs = P.read_orfs(probe_env / "probes" / "orfs.fa.gz")
    v = P.subsample([x for i, o in enumerate(orfs) for x in P.orf_variants(o, i)], 2, seed=0)
    seqs = [o.seq for o in orfs]
    fwd = P.score_variants(model, v, seqs, "exact", rc=False, window=32, progress=False)
    both = P.score_variants(model, v, seqs, "exact", rc=True, window=32, progress=False)
    assert np.isfinite(fwd).all() and np.isfinite(both).all() and not np.allclose(fwd, both)


def test_scores_equal_variant_scorer(tmp_path: Path) -> None:
    """The probes' in-memory scoring gives exactly VariantScorer's scores on the same sequence as a FASTA."""
    import pandas as pd

    from genomod.scoring import VariantScorer

    rng = random.Random(2)
    seq = random_seq(rng, 200)
    (tmp_path / "c.fa").write_text(f">c0\n{seq}\n")
    model = tiny_test_model(0)
    v = [P.ProbeVariant(0, p, seq[p], a, 0, "x") for p in (0, 31, 32, 199) for a in "ACGT" if a != seq[p]]
    df = pd.DataFrame({"chrom": "c0", "pos": [x.pos + 1 for x in v], "ref": [x.ref for x in v],
                       "alt": [x.alt for x in v]})
    for mode, col in (("fast", "delta_fast"), ("exact", "delta_ll_sum"), ("embed", "delta_embed")):
        mine = P.score_variants(model, v, [seq], mode, rc=True, window=32, progress=False)
        sc_mode = "fast" if mode == "fast" else "exact"  # embed: exact mode's delta_embed column
        theirs = VariantScorer(model, tmp_path / "c.fa", window=32, rc=True).score(df, mode=sc_mode)[col]
        assert np.isfinite(mine).all()
        np.testing.assert_allclose(mine, theirs.to_numpy(), rtol=0, atol=1e-9)


def test_run_probes_skips_missing_files(tmp_path: Path) -> None:
    d = write_probe_dir(tmp_path / "p", markov=False)
    (d / "splice.fa.gz").unlink()
    res = P.run_probes(tiny_test_model(0), d, window=32, n_boot=0, max_records=1, progress=False)
    assert set(res["probes"]) == {"nonsense", "perplexity"} and "splice" in res["skipped"]
    assert res["probes"]["perplexity"]["markov"] == [] and "note" in res["probes"]["perplexity"]
    with pytest.raises(InputError, match="probe folder not found"):
        P.run_probes(tiny_test_model(0), tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_probes(probe_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(["eval", "probes", "--model", str(probe_env / "model"), "--probes", str(probe_env / "probes"),
               "--window", "32", "--max-records", "2", "--n-boot", "10", "--device", "cpu", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    res = json.loads((out / "probes.json").read_text())
    assert set(res["probes"]) == {"nonsense", "exon_nonsense", "splice", "perplexity"}
    assert res["settings"]["max_records"] == 2 and res["settings"]["model"] == str(probe_env / "model")
    assert "nonsense vs syn" in text and "in short exons" in text and "perplexity: model" in text and "wrote probes.json" in text


def test_cli_probes_errors(probe_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    model = str(probe_env / "model")
    assert main(["eval", "probes", "--model", model, "--probes", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genomod: error:") and "nope" in err[0]
    assert not (tmp_path / "o").exists()
    import genomod.data_paths

    monkeypatch.setattr(genomod.data_paths, "probes_dir", lambda: tmp_path / "shipped" / "probes")
    assert main(["eval", "probes", "--model", model, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shipped probe folder" in err[0] and "shipped/probes" in err[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "orfs.fa").write_text(">r1 cds=1-6\nATGTAA\n>r2 cds=oops\nACGT\n")
    assert main(["eval", "probes", "--model", model, "--probes", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "orfs.fa" in err[0] and "'r2'" in err[0]
