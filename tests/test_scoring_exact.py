"""Exact delta-LL scoring: prefix reuse equals naive recomputation; inputs, edges, embeddings, threads."""

from __future__ import annotations

import random
import threading

import numpy as np
import pysam
import pytest
import torch

from genomod.scoring import VariantScorer
from genomod.scoring.exact import build_site, exact_deltas, local_split, naive_deltas, rc_deltas, window_ll
from tests.model_helpers import tiny_test_config, tiny_test_model

TOL = 1e-4  # abs tolerance on delta_ll_sum (float32 model, sums over <= 128 positions)
W = 128


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: oversubscribed threads are far slower
    yield
    torch.set_num_threads(n)


def tiny_model(seed: int = 0):
    return tiny_test_model(seed)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def genome():
    rng = random.Random(11)
    return {
        "chr1": "".join(rng.choice("ACGT") for _ in range(500)),
        "chr2": "".join(rng.choice("ACGT") for _ in range(90)),
    }


@pytest.fixture
def fasta(tmp_path, genome):
    path = tmp_path / "ref.fa"
    path.write_text("".join(f">{k}\n{v}\n" for k, v in genome.items()))
    return path


def _alt(base: str) -> str:
    return "A" if base != "A" else "C"


def test_exact_equals_naive_snv_indel_edges(model, genome):
    seq = genome["chr1"]
    fetch = lambda c, s, e: seq[s:e]  # noqa: E731
    sites = []
    for p in (0, 3, 250, 497, 499):  # contig edges on both sides
        alleles = [(seq[p], _alt(seq[p]))]
        if p + 3 <= len(seq):
            alleles += [(seq[p : p + 3], seq[p]), (seq[p], seq[p] + "GTA"), (seq[p : p + 2], "TTTT")]
        sites.append(build_site(fetch, "chr1", p, alleles, W, len(seq)))
    naive = naive_deltas(model, sites, batch_size=3)
    # allele counts 4, 4, 4, 1, 1: slot forwards without cache copies, partial slots, slots packed together
    for suffix_batch in (None, 1, 2, 7, 100):
        exact = exact_deltas(model, sites, batch_size=3, suffix_batch=suffix_batch)
        assert [len(e) for e in exact] == [len(s.alt_tokens) for s in sites]
        diff = max(float(np.abs(e - n).max()) for e, n in zip(exact, naive))
        assert diff < TOL, suffix_batch
    # a site with fewer ALTs ahead of sites with more (slot members are not a prefix of the group)
    back = exact_deltas(model, sites[::-1], batch_size=3, suffix_batch=2)
    assert max(float(np.abs(e - n).max()) for e, n in zip(back, naive[::-1])) < TOL
    assert sites[0].pad == W // 2 and sites[2].pad == 0
    # the RC path equals naive RC full forwards
    rc = rc_deltas(model, sites[:2], batch_size=2)
    s = sites[0]
    manual = (
        window_ll(model, np.stack(s.alt_tokens), rc=True) - window_ll(model, s.ref_tokens[None], rc=True)[0]
    )
    assert np.allclose(rc[0], manual, atol=TOL)


def test_local_split_snv_sites(model, genome):
    cfg = tiny_test_config()  # SE (7 taps), MR (16 taps), LI, MHA after a 3-tap featurizer
    assert cfg.block_reach() == [8, 17, None, None]
    assert local_split(cfg, 64) == (2, 26)  # the window-128 suffix: SE and MR over 26 positions
    assert local_split(cfg, 20) == (1, 9)  # MR's reach would cover the whole suffix
    assert local_split(cfg, 5) == (0, 1)
    seq = genome["chr1"]
    fetch = lambda c, s, e: seq[s:e]  # noqa: E731
    sites = [build_site(fetch, "chr1", p, [(seq[p], b) for b in "ACGT" if b != seq[p]][: 1 + p % 3], W, len(seq))
             for p in (1, 60, 130, 200, 333, 470, 498)]
    naive = naive_deltas(model, sites, batch_size=4)
    for batch_size, suffix_batch in ((3, None), (3, 1), (4, 5), (7, 100)):
        exact = exact_deltas(model, sites, batch_size=batch_size, suffix_batch=suffix_batch)
        assert max(float(np.abs(e - n).max()) for e, n in zip(exact, naive)) < TOL, (batch_size, suffix_batch)
    # a row's arithmetic does not depend on its group: beside an indel site, the SNVs score the same to the bit
    indel = build_site(fetch, "chr1", 250, [(seq[250:252], seq[250]), (seq[250], _alt(seq[250]))], W, len(seq))
    alone = exact_deltas(model, sites[:3], batch_size=4)
    mixed = exact_deltas(model, [*sites[:3], indel], batch_size=4)
    assert all(np.array_equal(a, b) for a, b in zip(alone, mixed[:3]))
    assert abs(mixed[3][1] - exact_deltas(model, [build_site(fetch, "chr1", 250, [(seq[250], _alt(seq[250]))], W,
                                                             len(seq))])[0][0]) < TOL


def test_alt_window_layout(genome):
    seq = genome["chr1"]
    fetch = lambda c, s, e: seq[s:e]  # noqa: E731
    site = build_site(
        fetch, "chr1", 200, [(seq[200:203], seq[200]), (seq[200], seq[200] + "GG")], 32, len(seq)
    )
    ref, dele, ins = (bytes(t.astype(np.uint8)).decode() for t in (site.ref_tokens, *site.alt_tokens))
    assert ref == seq[184:216]
    assert dele == seq[184:201] + seq[203:218]  # left flank kept, right side extended from the reference
    assert ins == (seq[184:201] + "GG" + seq[201:216])[:32]  # cut on the right


def test_scorer_inputs_and_skips(model, fasta, genome, tmp_path):
    import pandas as pd

    seq = genome["chr1"]
    sc = VariantScorer(model, fasta, window=W, batch_size=4)
    tuples = [
        ("chr1", 10, seq[9], _alt(seq[9])),
        ("chr1", 20, seq[19], "A,C,G,T"),
        ("chrX", 5, "A", "C"),
        ("chr1", 30, _alt(seq[29]), seq[29]),
        ("chr1", 40, seq[39], "<DEL>"),
        ("1", 50, seq[49:52], seq[49]),
    ]
    df = sc.score(tuples)
    assert list(df.record_index) == [0, 1, 1, 1, 1, 2, 3, 4, 5]
    assert df.status.tolist().count("ok") == 5
    assert df.loc[df.status == "ok", "delta_ll_sum"].notna().all()
    reasons = " ".join(df.reason.dropna())
    assert "not in reference" in reasons and "does not match" in reasons and "symbolic" in reasons
    ok = df[df.status == "ok"]
    assert np.allclose(ok.delta_ll_mean, ok.delta_ll_sum / (W - 1))
    # DataFrame and pysam-record inputs give the same scores
    frame = pd.DataFrame(tuples, columns=["chrom", "pos", "ref", "alt"])
    assert np.allclose(sc.score(frame).delta_ll_sum, df.delta_ll_sum, equal_nan=True)
    vcf = tmp_path / "x.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=chr1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        + "".join(f"chr1\t{p}\tid{p}\t{r}\t{a}\t.\t.\t.\n" for _, p, r, a in tuples[:2])
    )
    with pysam.VariantFile(str(vcf)) as vf:
        recs = sc.score(list(vf))
    from_path = sc.score(vcf)
    assert np.allclose(recs.delta_ll_sum, df.delta_ll_sum[:5], equal_nan=True)
    assert np.allclose(from_path.delta_ll_sum, recs.delta_ll_sum, equal_nan=True)
    assert recs.id.tolist()[0] == "id10"
    # streaming: chunks do not change results
    rows = list(sc.iter_scores(tuples, chunk_size=2))
    assert np.allclose([r["delta_ll_sum"] for r in rows], df.delta_ll_sum, equal_nan=True)


def test_rc_and_fast_columns(model, fasta, genome):
    seq = genome["chr1"]
    sc = VariantScorer(model, fasta, window=64, rc=True)
    df = sc.score([("chr1", 100, seq[99], _alt(seq[99])), ("chr1", 110, seq[109:111], seq[109])], mode="fast")
    assert df.status.tolist() == ["ok", "skipped"] and "SNVs only" in df.reason[1]
    assert np.isfinite(df.delta_fast[0])
    ex = sc.score([("chr1", 100, seq[99], _alt(seq[99]))])
    assert np.isfinite(ex.delta_ll_sum[0])


def test_embed_shapes(model, fasta, genome):
    seq = genome["chr1"]
    sc = VariantScorer(model, fasta, window=64)
    emb = sc.embed(
        [("chr1", 100, seq[99], _alt(seq[99])), ("chrX", 1, "A", "C")], layers=["blocks.1", "norm"], radius=8
    )
    assert emb["ref"].shape == (2, 64) and emb["alt/norm"].shape == (2, 32)
    assert np.isfinite(emb["ref"][0]).all() and np.isnan(emb["ref"][1]).all()
    assert emb["status"].tolist() == ["ok", "skipped"]
    assert not np.allclose(emb["ref"][0], emb["alt"][0])


def test_embed_equals_full_window_pooling(model, fasta, genome):
    """Truncated forwards and per-site ref sharing give the same pooled states as full-window forwards."""
    import torch

    from genomod.scoring.exact import build_site

    seq = genome["chr1"]
    sc = VariantScorer(model, fasta, window=64)
    variants = [("chr1", 100, seq[99], b) for b in "ACGT" if b != seq[99]] + [("chr1", 140, seq[139], _alt(seq[139]))]
    emb = sc.embed(variants, layers=["blocks.1"], radius=8)
    for i, (_, pos, r, a) in enumerate(variants):
        site = build_site(sc.reference.fetch, "chr1", pos - 1, [(r, a)], 64, len(seq))
        for key, toks in (("ref", site.ref_tokens), ("alt", site.alt_tokens[0])):
            h = model(torch.from_numpy(toks)[None], return_hidden=["blocks.1"]).hidden["blocks.1"]
            assert np.allclose(emb[key][i], h[0, 24:41].mean(0).numpy(), atol=1e-5)


def test_threads_share_one_scorer(model, fasta, genome):
    seq = genome["chr1"]
    sc = VariantScorer(model, fasta, window=64)
    variants = [("chr1", p, seq[p - 1], _alt(seq[p - 1])) for p in (50, 150, 250, 350)]
    expected = sc.score(variants).delta_ll_sum.to_numpy()
    results: list = [None, None]

    def work(i: int) -> None:
        results[i] = sc.score(variants).delta_ll_sum.to_numpy()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert np.allclose(r, expected, atol=1e-5)


def test_scorer_loads_checkpoint_and_errors(model, fasta, tmp_path):
    from genomod.checkpoint import save_model
    from genomod.errors import ConfigError, ModelError

    save_model(model, tmp_path / "m")
    sc = VariantScorer(tmp_path / "m", fasta, device="cpu", window=32)
    assert sc.model_name.endswith("m")
    with pytest.raises(ModelError):
        VariantScorer(tmp_path / "missing", fasta)
    with pytest.raises(ConfigError):
        sc.score([("chr1", 5, "A", "C")], mode="bogus")


def _naive_embed(model, site, allele: int, rc: bool) -> float:
    """delta_embed by definition: full forwards of both windows, last block's states after the variant."""
    from genomod.scoring.exact import embed_layer
    from genomod.tokenizer import reverse_complement

    layer = embed_layer(model)
    rows = torch.from_numpy(np.stack([site.ref_tokens, site.alt_tokens[allele]]))
    if rc:
        rows = reverse_complement(rows)
    h = model(rows, return_hidden=[layer]).hidden[layer].double()
    w = rows.shape[1]
    start = w - 1 - w // 2 if rc else w // 2
    return -float((h[1, start:] - h[0, start:]).norm(dim=-1).mean())


def test_delta_embed_equals_definition(model, genome):
    seq = genome["chr1"]
    fetch = lambda c, s, e: seq[s:e]  # noqa: E731
    sites = []
    for p in (2, 120, 250, 498):  # contig edges, three ALTs, an indel
        alts = [b for b in "ACGT" if b != seq[p]]
        alleles = [(seq[p], a) for a in alts] + [(seq[p : p + 2], seq[p])]
        sites.append(build_site(fetch, "chr1", p, alleles, W, len(seq)))
    naive = naive_deltas(model, sites, batch_size=3)
    with torch.no_grad():
        want = [[_naive_embed(model, s, j, False) for j in range(3)] for s in sites]
        want_rc = [[_naive_embed(model, s, j, True) for j in range(3)] for s in sites]
    for suffix_batch in (None, 1, 5, 100):
        deltas, embeds = exact_deltas(model, sites, batch_size=3, suffix_batch=suffix_batch, embed=True)
        assert max(float(np.abs(d - n).max()) for d, n in zip(deltas, naive)) < TOL  # LL unchanged by embed
        for e, w in zip(embeds, want):
            assert np.allclose(e[:3], w, atol=1e-5) and np.isnan(e[3])  # the indel has none
            assert (e[:3] < 0).all()
    deltas, embeds = rc_deltas(model, sites, batch_size=2, embed=True)
    assert max(float(np.abs(d - n).max()) for d, n in zip(deltas, rc_deltas(model, sites, batch_size=2))) < TOL
    for e, w in zip(embeds, want_rc):
        assert np.allclose(e[:3], w, atol=1e-5) and np.isnan(e[3])
    # chunked (windows longer than the chunk) equals one pass, both strands
    chunked = exact_deltas(model, sites, chunk_size=20, embed=True)
    assert all(np.allclose(a, b, atol=1e-5, equal_nan=True) for a, b in zip(chunked[1], exact_deltas(
        model, sites, embed=True)[1]))
    chunked_rc = rc_deltas(model, sites, chunk_size=20, embed=True)
    assert all(np.allclose(a[:3], w, atol=1e-5) for a, w in zip(chunked_rc[1], want_rc))
    # SNV-only sites share the RC prefix (exact_deltas on the RC rows): the same as full RC forwards
    snv_sites = [build_site(fetch, "chr1", s.start, [(seq[s.start], b) for b in "ACGT" if b != seq[s.start]], W,
                            len(seq)) for s in sites] + [build_site(fetch, "chr1", 300, [(seq[300], _alt(seq[300]))],
                                                                    W, len(seq))]
    for chunk in (None, 20):
        deltas, embeds = rc_deltas(model, snv_sites, batch_size=2, chunk_size=chunk, embed=True)
        for site, d, e in zip(snv_sites, deltas, embeds):
            full = window_ll(model, np.stack(site.alt_tokens), rc=True) - window_ll(model, site.ref_tokens[None],
                                                                                    rc=True)[0]
            assert np.allclose(d, full, atol=TOL)
            assert np.allclose(e, [_naive_embed(model, site, j, True) for j in range(len(site.alt_tokens))],
                               atol=1e-5)


def test_scorer_reports_delta_embed(model, fasta, genome):
    seq = genome["chr1"]
    items = [("chr1", 100, seq[99], _alt(seq[99])), ("chr1", 100, seq[99], "T" if seq[99] != "T" else "G"),
             ("chr1", 110, seq[109:111], seq[109])]
    for rc in (False, True):
        df = VariantScorer(model, fasta, window=64, rc=rc).score(items)
        assert "delta_embed" in df.columns and df.status.tolist() == ["ok"] * 3
        assert (df.delta_embed[:2] < 0).all() and np.isnan(df.delta_embed[2])
    assert "delta_embed" not in VariantScorer(model, fasta, window=64).score_columns("fast")
