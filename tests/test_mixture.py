"""data_prep.make_mixture: recipe parsing, exclusion screen, hold-outs, packing, loss weights and RC augmentation."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from data_prep.make_mixture import (
    KmerScreen,
    Recipe,
    Source,
    longest_orf,
    make_mixture,
    parse_recipe,
    read_fasta,
    record_introns,
    splice_record,
    splice_sites,
)
from genomod.errors import ConfigError
from genomod.tokenizer import EOD_ID, encode, reverse_complement
from genomod.train.data import ShardWindows, loss_weights
from genomod.train.module import next_token_loss


def _rand(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(n))


def _write_fa(path: Path, records: list[tuple[str, str]]) -> Path:
    with gzip.open(path, "wt") as fh:
        for h, s in records:
            fh.write(f">{h}\n{s}\n")
    return path


def test_parse_recipe_errors_name_the_key() -> None:
    ok = {"window": 64, "sources": [{"name": "a", "path": "a.fa", "kind": "cds", "weight": 0.5}]}
    r = parse_recipe(ok)
    assert r.window == 64 and r.sources[0].weight == 0.5 and r.sources[0].softmask is True
    cases = [
        ({**ok, "window": 4}, "window"),
        ({**ok, "sources": []}, "sources"),
        ({**ok, "bogus": 1}, "bogus"),
        ({**ok, "sources": [{"name": "a", "path": "a.fa", "kind": "protein", "weight": 1}]}, "sources[0].kind"),
        ({**ok, "sources": [{"name": "a", "path": "a.fa", "kind": "cds", "weight": -1}]}, "sources[0].weight"),
        ({**ok, "sources": [{"name": "a", "path": "a.fa", "kind": "cds"}]}, "sources[0].weight"),
        ({**ok, "sources": ok["sources"] * 2}, "sources[1].name"),
        ({**ok, "sources": [{"name": "a", "path": "a.fa", "kind": "cds", "weight": 1, "colour": 1}]}, "colour"),
        ({**ok, "val_fraction": 0.9}, "val_fraction"),
    ]
    for doc, key in cases:
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            parse_recipe(doc)


def test_kmer_screen_fraction(tmp_path: Path) -> None:
    locus = _rand(2000, 1)
    screen = KmerScreen([_write_fa(tmp_path / "locus.fa.gz", [("l", locus)])], 31)
    inside = locus[500:800]
    rc = inside[::-1].translate(str.maketrans("ACGT", "TGCA"))
    other = _rand(300, 2)
    fr = screen.fractions([inside.encode(), rc.encode(), other.encode(), (inside[:150] + other[:150]).encode()])
    assert fr[0] == 1.0 and fr[1] == 1.0  # canonical k-mers: both strands
    assert fr[2] == 0.0
    assert 0.35 < fr[3] < 0.5  # 120 of 270 positions lie in the locus half
    # batching never lets a k-mer span two records
    assert screen.fractions([locus[:20].encode(), locus[20:40].encode()]).tolist() == [0.0, 0.0]


def test_longest_orf_and_splice_sites() -> None:
    seq = b"CC" + b"ATG" + b"GCT" * 120 + b"TAA" + b"GG"
    assert longest_orf(seq, 300) == (3, 2 + 3 + 360 + 3)
    assert longest_orf(seq, 1000) is None
    rec = b"A" * 50 + b"GTAAGT" + b"T" * 30 + b"CAG" + b"C" * 50
    d, a = splice_sites("x|intron=51-89;exon=90-139", rec, "header-intron")
    assert (d, a) == (51, 89)
    assert splice_sites("x|intron=52-89", rec, "header-intron") == (None, 89)  # no GT at 52: not a donor
    assert splice_sites("h", b"A" * 70 + b"GT" + b"A" * 68, "hs3d") == (71, None)


def _tiny_recipe(tmp_path: Path, **kw: object) -> Recipe:
    locus = _rand(3000, 7)
    _write_fa(tmp_path / "locus.fa.gz", [("chr17", locus)])
    mrna = [(f"sp|tx{i}", "GG" + "ATG" + _rand(330, 100 + i).replace("TAA", "TCA").replace("TAG", "TCG")
             .replace("TGA", "TCA") + "TAA" + "CC") for i in range(60)]
    genomic = [("chrZ", _rand(5000, 3).lower()[:1000] + _rand(4000, 4))]
    bad = [("sp|BRCA1_like", _rand(400, 5)), ("sp|copy", locus[100:600])]
    _write_fa(tmp_path / "mrna.fa.gz", mrna + bad)
    _write_fa(tmp_path / "genome.fa.gz", genomic)
    doc = {"window": 64, "seed": 0, "val_fraction": 0.1, "probe_fraction": 0.2, "segment": 1000,
           "exclusion": {"loci": [str(tmp_path / "locus.fa.gz")]},
           "sources": [{"name": "mrna", "path": "mrna.fa.gz", "kind": "mrna", "weight": 1.0},
                       {"name": "genome", "path": "genome.fa.gz", "kind": "genomic", "weight": 0.5}], **kw}
    return parse_recipe(doc)


def test_make_mixture_end_to_end(tmp_path: Path) -> None:
    recipe = _tiny_recipe(tmp_path)
    m = make_mixture(recipe, tmp_path, tmp_path / "mix", progress=False)
    src = {s["name"]: s for s in m["sources"]}
    assert src["mrna"]["dropped_name"] == 1 and src["mrna"]["dropped_kmer"] == 1
    assert src["mrna"]["probe_records"] > 0
    # weight 0.5 keeps about half of the genome's rows
    g = src["genome"]
    assert 0 < g["train_rows"] < g["train_rows_before_weight"]
    with h5py.File(tmp_path / "mix" / "train.h5") as h5:
        tok, mask = h5["tokens"][:], h5["softmask"][:]
        assert tok.shape[1] == 64 and tok.shape == mask.shape and len(tok) == m["counts"]["train"]
        assert (tok == EOD_ID).any()  # records packed with separators
        assert mask.any()  # the soft-masked genome start is kept as a track
    # probe records are never in train or val: no 40-mer of a probe ORF occurs in the shards
    probes = [line.strip() for line in gzip.open(tmp_path / "mix" / "probes" / "orfs.fa.gz", "rt")
              if not line.startswith(">")]
    assert probes
    shard_text = tok.astype(np.uint8).tobytes()
    with h5py.File(tmp_path / "mix" / "val.h5") as h5:
        shard_text += h5["tokens"][:].astype(np.uint8).tobytes()
    for p in probes[:5]:
        assert encode(p[10:50]).astype(np.uint8).tobytes() not in shard_text
    header = gzip.open(tmp_path / "mix" / "probes" / "orfs.fa.gz", "rt").readline()
    assert "cds=3-" in header
    n_headers = sum(1 for line in gzip.open(tmp_path / "mix" / "probes" / "orfs.fa.gz", "rt") if line[0] == ">")
    assert json.loads((tmp_path / "mix" / "manifest.json").read_text())["counts"]["probe_orfs"] == n_headers


def test_loss_weights_and_rc_augmentation(tmp_path: Path) -> None:
    toks = encode("ACGTNacgt")
    toks = np.concatenate([toks, [EOD_ID]])
    mask = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 0])
    w = loss_weights(toks, mask, 0.1)
    assert np.allclose(w, [1, 1, 1, 1, 0, 0.1, 0.1, 0.1, 0.1, 0])
    recipe = _tiny_recipe(tmp_path)
    make_mixture(recipe, tmp_path, tmp_path / "mix", progress=False)
    plain = ShardWindows([str(tmp_path / "mix")], "train", 64, seed=0, rc_augment=False)
    aug = ShardWindows([str(tmp_path / "mix")], "train", 64, seed=0, rc_augment=True)
    assert plain.weighted
    flipped = 0
    for i in range(40):
        (t0, w0), (t1, w1) = plain[i], aug[i]
        if not torch.equal(t0, t1):
            flipped += 1
            assert torch.equal(t1, reverse_complement(t0))
            assert torch.equal(w1, w0.flip(0))
        else:
            assert torch.equal(w1, w0)
    assert 5 < flipped < 35


def test_weighted_loss_ignores_zero_weights() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 512)
    tokens = torch.randint(65, 85, (2, 6))
    w = torch.ones(2, 6)
    assert torch.allclose(next_token_loss(logits, tokens, w), next_token_loss(logits, tokens))
    w2 = w.clone()
    w2[:, 3:] = 0
    sub = next_token_loss(logits[:, :3], tokens[:, :3])
    assert torch.allclose(next_token_loss(logits, tokens, w2), sub)


def test_source_defaults() -> None:
    s = Source(name="a", path="a", kind="cds", weight=1.0)
    assert s.record_fraction == 1.0 and s.splice_layout is None


def test_derived_recipe_reweights_the_base(tmp_path: Path) -> None:
    from data_prep.make_mixture import load_recipe

    base = {"window": 64, "seed": 3, "sources": [
        {"name": "a", "path": "a.fa", "kind": "cds", "weight": 0.5},
        {"name": "b", "path": "b.fa", "kind": "genomic", "weight": 1.0}]}
    (tmp_path / "base.yaml").write_text(json.dumps(base))
    (tmp_path / "stage2.yaml").write_text("base: base.yaml\nweights: {a: 2.0}\nval_fraction: 0.02\n")
    r = load_recipe(tmp_path / "stage2.yaml")
    assert [(s.name, s.weight) for s in r.sources] == [("a", 2.0), ("b", 1.0)]
    assert r.seed == 3 and r.window == 64 and r.val_fraction == 0.02 and r.splicing is None
    (tmp_path / "stage3.yaml").write_text("base: base.yaml\nsplicing: {sources: [a], introns: [b], fraction: 0.6}\n")
    sp = load_recipe(tmp_path / "stage3.yaml").splicing
    assert sp is not None and (sp.sources, sp.introns, sp.fraction, sp.exon_len) == (["a"], ["b"], 0.6, (60, 180))
    (tmp_path / "bad.yaml").write_text("base: base.yaml\nweights: {c: 2.0}\n")
    with pytest.raises(ConfigError, match="unknown source.*c"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "nobase.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml: recipe not found"):
        load_recipe(tmp_path / "nobase.yaml")


def test_splice_record_keeps_the_coding_sequence_in_order() -> None:
    cds = _rand(1000, 11).encode()
    intron = b"GT" + b"C" * 30 + b"AG"
    gene = splice_record(cds, [intron], np.random.default_rng(0), (60, 180))
    exons = gene.split(intron)
    assert b"".join(exons) == cds and len(exons) >= 6
    assert all(60 <= len(e) <= 180 for e in exons[:-1]) and len(exons[-1]) >= 60
    assert record_introns("x intron=3-8", b"AAGTCCAGTT", "header-intron") == [b"GTCCAG"]
    assert record_introns("x", b"GTTTTAG", None) == [b"GTTTTAG"] and record_introns("x", b"GATTTAG", None) == []


def test_splicing_uses_training_introns_only(tmp_path: Path) -> None:
    introns = [f"GT{_rand(50, 300 + i)}AG" for i in range(80)]
    eie = [(f"e{i} intron=41-{40 + len(x)}", _rand(40, 500 + i) + x + _rand(40, 700 + i))
           for i, x in enumerate(introns)]
    _write_fa(tmp_path / "eie.fa.gz", eie)
    _tiny_recipe(tmp_path)  # writes the mRNA and genome files
    bad = {"sources": ["mrna"], "introns": ["nope"]}
    with pytest.raises(ConfigError, match=r"splicing.introns: unknown source\(s\) nope"):
        _tiny_recipe(tmp_path, splicing=bad)
    with pytest.raises(ConfigError, match="splicing.exon_len"):
        _tiny_recipe(tmp_path, splicing={"sources": ["mrna"], "introns": ["mrna"], "exon_len": [90, 30]})
    sources = [{"name": "mrna", "path": "mrna.fa.gz", "kind": "cds", "weight": 1.0},
               {"name": "eie", "path": "eie.fa.gz", "kind": "exon-intron", "weight": 1.0,
                "splice_layout": "header-intron"}]
    recipe = _tiny_recipe(tmp_path, sources=sources,
                          splicing={"sources": ["mrna"], "introns": ["eie"], "fraction": 1.0})
    m = make_mixture(recipe, tmp_path, tmp_path / "mix", progress=False)
    src = {s["name"]: s for s in m["sources"]}
    assert src["mrna"]["spliced_records"] > 0
    n_pool = m["splicing"]["introns_per_source"]["eie"]
    assert 0 < n_pool < len(introns)  # the probe and validation records give no introns
    with h5py.File(tmp_path / "mix" / "train.h5") as h5:
        train = h5["tokens"][:].astype(np.uint8).tobytes()
    held = [seq.decode() for _, seq in read_fasta(tmp_path / "mix" / "probes" / "splice.fa.gz")]
    assert held
    in_train = [x for x in introns if encode(x).astype(np.uint8).tobytes() in train]
    assert in_train and len(in_train) <= n_pool
    for rec in held:  # a held-out exon-intron record's intron never reaches the training shards
        intron = rec[40:-40]
        assert encode(intron).astype(np.uint8).tobytes() not in train


def test_variant_aux_rows_from_training_records_only(tmp_path: Path) -> None:
    """data_prep.prepare_variant_aux: genetic-code and splice-consensus rows, from training records only."""
    from data_prep.make_mixture import _training_record
    from data_prep.prepare_variant_aux import collect, main
    from genomod.eval.probes import STOP_CODONS

    introns = [f"GT{_rand(50, 300 + i)}AG" for i in range(80)]
    _write_fa(tmp_path / "eie.fa.gz", [(f"e{i} intron=41-{40 + len(x)}", _rand(40, 500 + i) + x + _rand(40, 700 + i))
                                       for i, x in enumerate(introns)])
    _write_fa(tmp_path / "hs3d.fa.gz", [(f"h{i}", _rand(70, 900 + i) + "GT" + _rand(68, 1100 + i)) for i in range(60)])
    _tiny_recipe(tmp_path)  # writes mrna.fa.gz (with a BRCA1-named record and a copy of the locus)
    sources = [{"name": "mrna", "path": "mrna.fa.gz", "kind": "mrna", "weight": 1.0},
               {"name": "eie", "path": "eie.fa.gz", "kind": "exon-intron", "weight": 1.0,
                "splice_layout": "header-intron"},
               {"name": "hs3d", "path": "hs3d.fa.gz", "kind": "splice-window", "weight": 1.0, "splice_layout": "hs3d"}]
    recipe = _tiny_recipe(tmp_path, sources=sources, splicing={"sources": ["mrna"], "introns": ["eie"]})
    kw = dict(per_class=12, orf_sources=("mrna",), splice_sources=("eie", "hs3d"), seed=1)
    contigs, rows, counts = collect(recipe, tmp_path, **kw)
    assert counts["by_class"] == {"nonsense": 12, "synonymous": 12, "canonical": 12, "intronic": 12}
    assert collect(recipe, tmp_path, **kw)[1] == rows  # seeded
    seqs = dict(contigs)
    by_name = {s.name: s for s in recipe.sources}
    for r in rows:
        seq = seqs[r["chrom"]]
        p = r["pos"] - 1
        assert seq[p] == r["ref"] != r["alt"]
        assert _training_record(recipe, by_name[r["source"]], r["record"], 1)
        assert "BRCA1" not in r["record"] and r["record"] != "sp|copy"
        assert r["func_class"] == ("LOF" if r["kind"] in ("nonsense", "canonical") else "FUNC")
        alt = seq[:p] + r["alt"] + seq[p + 1 :]
        if r["kind"] == "nonsense":  # the new base completes a stop codon
            assert any(alt[q : q + 3] in STOP_CODONS for q in range(p - 2, p + 1))
        if r["kind"] == "canonical":
            assert seq[p - 1 : p + 1] in ("GT", "AG") or seq[p : p + 2] in ("GT", "AG")
    # the ORFs sit in genomic form: their contigs are longer than the mRNAs they came from (introns inserted)
    assert all(len(seqs[r["chrom"]]) > 340 for r in rows if r["kind"] == "nonsense")
    # the command line writes the three files
    import yaml

    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({
        "window": 64, "seed": 0, "val_fraction": 0.1, "probe_fraction": 0.2, "segment": 1000,
        "exclusion": {"loci": [str(tmp_path / "locus.fa.gz")]}, "sources": sources,
        "splicing": {"sources": ["mrna"], "introns": ["eie"]}}))
    args = ["--recipe", str(tmp_path / "recipe.yaml"), "--data-root", str(tmp_path), "--out", str(tmp_path / "aux")]
    assert main(args) == 2 and not (tmp_path / "aux").exists()  # the default sources are not in this recipe
    assert main([*args, "--orf-sources", "mrna", "--splice-sources", "eie,hs3d", "--per-class", "5"]) == 0
    assert {p.name for p in (tmp_path / "aux").iterdir()} == {"aux.fa", "aux_variants.tsv", "manifest.json"}
    manifest = json.loads((tmp_path / "aux" / "manifest.json").read_text())
    assert manifest["counts"]["variants"] == 20 and set(manifest["inputs"]) == {"mrna", "eie", "hs3d"}


def test_junction_flanks_marked_and_weighted(tmp_path: Path) -> None:
    """``junction_flank`` marks the bases around annotated junctions (track 2); training weighs them with
    ``junction_weight``, validation with 1; without the option the track is unchanged."""
    from data_prep.make_mixture import mark_junctions

    seq = (_rand(50, 1) + "GT" + _rand(80, 2) + "AG" + _rand(50, 3)).encode()
    header = "x|g|eie1|exon=1-50;intron=51-134;exon=135-184"
    mask = np.zeros(len(seq), np.uint8)
    assert mark_junctions(mask, header, seq, "header-intron", 4) == 16
    assert np.flatnonzero(mask == 2).tolist() == [46, 47, 48, 49, 50, 51, 52, 53, 130, 131, 132, 133, 134, 135, 136,
                                                  137]
    assert mark_junctions(np.zeros(len(seq), np.uint8), "x|g|no-annotation", seq, "header-intron", 4) == 0
    toks = encode("ACGTacgt")
    w = loss_weights(toks, np.array([0, 2, 1, 2, 1, 2, 0, 0]), 0.1, junction_weight=5.0)
    assert np.allclose(w, [1, 5, 0.1, 5, 0.1, 5, 1, 1])
    assert np.allclose(loss_weights(toks, np.array([0, 2, 1, 0, 0, 0, 0, 0]), 0.1), [1, 1, 0.1, 1, 1, 1, 1, 1])
    # end to end: an exon-intron source in a tiny recipe
    recs = [(f"at|G{i}|eie{i}|exon=1-50;intron=51-134;exon=135-184",
             _rand(50, 10 + i) + "GT" + _rand(80, 20 + i) + "AG" + _rand(50, 30 + i)) for i in range(40)]
    _write_fa(tmp_path / "eie.fa.gz", recs)
    doc = {"window": 64, "seed": 0, "probe_fraction": 0.0, "val_fraction": 0.1, "junction_flank": 4,
           "sources": [{"name": "eie", "path": "eie.fa.gz", "kind": "exon-intron", "weight": 1.0,
                        "splice_layout": "header-intron"}]}
    m = make_mixture(parse_recipe(doc), tmp_path, tmp_path / "mix", progress=False)
    assert m["sources"][0]["junction_bases"] == 40 * 16
    with h5py.File(tmp_path / "mix" / "train.h5") as h5:
        assert (h5["softmask"][:] == 2).sum() > 0
    train = ShardWindows([str(tmp_path / "mix")], "train", 64, seed=0, junction_weight=5.0)
    assert any((train[i][1] == 5.0).any() for i in range(len(train)))
    off = make_mixture(parse_recipe({**doc, "junction_flank": 0}), tmp_path, tmp_path / "mix0", progress=False)
    assert "junction_bases" not in off["sources"][0]
    with pytest.raises(ConfigError, match="junction_flank"):
        parse_recipe({**doc, "junction_flank": -1})
