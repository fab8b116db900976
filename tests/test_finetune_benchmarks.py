"""scripts/finetune_benchmarks.py at a tiny size: every JSON it writes, with metrics, CIs and CPU time."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pandas as pd
import pytest
from model_helpers import tiny_test_config

from genomod.checkpoint import save_model
from genomod.model import build_model

pytest.importorskip("peft")
REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("finetune_benchmarks", REPO / "scripts" / "finetune_benchmarks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kmer_features_count_every_kmer() -> None:
    mod = _script()
    X = mod.kmer_features(["ACGTN", "AAAA"], ks=(1, 2))
    assert X.shape == (2, 4 + 16)
    assert X[0, :4].tolist() == [1, 1, 1, 1] and X[1, 0] == 4 and X[1, 4] == 3  # AA x3
    assert X[0, 4:].sum() == 3  # AC, CG, GT (the N breaks GT-N)


def test_benchmarks_tiny(tmp_path: Path, one_thread) -> None:
    import torch

    from genomod.eval.brca1 import load_brca1

    mod = _script()
    torch.manual_seed(0)
    base = save_model(build_model(tiny_test_config().replace(max_seqlen=64)), tmp_path / "base")
    rng = random.Random(0)
    rows = []
    for i in range(36):
        label = ["none", "donor", "acceptor"][i % 3]
        seq = "".join(rng.choice("ACGT") for _ in range(40))
        if label == "donor":
            seq = seq[:20] + "GT" + seq[22:]
        elif label == "acceptor":
            seq = seq[:18] + "AG" + seq[20:]
        rows.append({"id": f"r{i}", "source": "toy", "label": label, "split": ["train", "train", "val", "test"][i % 4],
                     "sequence": seq})
    splice = tmp_path / "splice.tsv"
    pd.DataFrame(rows).to_csv(splice, sep="\t", index=False)
    table = load_brca1()
    lof = table[table["func_class"] == "LOF"].sample(60, random_state=0)
    rest = table[table["func_class"] != "LOF"].sample(140, random_state=0)
    small = pd.concat([lof, rest]).sort_values(["pos", "alt"])
    brca1 = tmp_path / "brca1_small.tsv"
    small.to_csv(brca1, sep="\t", index=False)
    out = tmp_path / "results"
    code = mod.main(["--out", str(out), "--work", str(tmp_path / "work"), "--base", str(base),
                     "--splice-tsv", str(splice), "--brca1-table", str(brca1), "--modes", "lora,frozen",
                     "--n-boot", "10", "--in-process", "--params",
                     "--set", "train.max_steps=2", "--set", "split.n_folds=2", "--set", "train.micro_batch_size=8",
                     "--set", "data.max_length=40"])
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert {"splice_lora.json", "splice_frozen.json", "brca1_lora.json", "brca1_frozen.json",
            "splice_kmer_logistic.json", "brca1_reference.json", "parameters.json", "summary.md"} <= names
    rec = json.loads((out / "splice_lora.json").read_text())
    assert {"accuracy", "macro_f1", "accuracy_lo"} <= set(rec["metrics"]["test"]) and rec["cpu_time_s"] > 0
    assert 0 < rec["parameters"]["trainable_fraction"] < 1
    rec = json.loads((out / "brca1_frozen.json").read_text())
    assert rec["metrics"]["out_of_fold"]["n"] == 200 and "auroc" in rec["metrics"]["out_of_fold"]
    ref = json.loads((out / "brca1_reference.json").read_text())
    assert {"delta_ll_sum", "head_oof"} <= set(ref["scores"])
    kmer = json.loads((out / "splice_kmer_logistic.json").read_text())
    assert kmer["metrics"]["test"]["n"] == 9 and kmer["cpu_time_s"] > 0
    params = json.loads((out / "parameters.json").read_text())
    assert params["evo2-7b"]["full_trainable"] > 6e9 and 0 < params["evo2-7b"]["lora_fraction_of_base"] < 0.01
    assert "| splice | kmer_logistic |" in (out / "summary.md").read_text()
    # a later invocation (here with no task) tabulates every record already in --out, not only its own runs
    (out / "summary.md").unlink()
    assert mod.main(["--out", str(out), "--work", str(tmp_path / "work"), "--tasks", ""]) == 0
    summary = (out / "summary.md").read_text()
    assert "| splice | lora |" in summary and "| brca1 | frozen |" in summary


def test_splice_prep_test_split_is_held_out_of_pretraining(tmp_path: Path) -> None:
    """Test rows are exactly the records the mixture's seeded hash held out, minus copies of trained windows."""
    import gzip

    import yaml

    from data_prep.make_mixture import load_recipe, record_unit
    from data_prep.prepare_splice_finetune import main as prep_main

    rng = random.Random(1)
    root = tmp_path / "data"
    (root / "pretrain" / "windows").mkdir(parents=True)

    def rand(n: int) -> str:
        return "".join(rng.choice("ACGT") for _ in range(n))

    gue, seqs = [], {}
    for i in range(300):
        lab = i % 3
        s = rand(400)
        if lab == 1:
            s = s[:200] + "GT" + s[202:]
        seqs[f"gue{i}|GUE__splice__reconstructed|label={lab}"] = s
    seqs["gue999|GUE__prom__prom_300_all|label=1"] = rand(300)  # not a splice record: ignored
    for h, s in seqs.items():
        gue.append(f">{h}\n{s}\n")
    with gzip.open(root / "pretrain" / "windows" / "gue_human.fa.gz", "wt") as fh:
        fh.write("".join(gue))
    with gzip.open(root / "pretrain" / "windows" / "hs3d_splice_donors.fa.gz", "wt") as fh:
        fh.write("".join(f">HS{i}|1,2,2\n{rand(70)}GT{rand(68)}\n" for i in range(50)))
    recipe = {"window": 256, "seed": 0, "val_fraction": 0.05, "probe_fraction": 0.1,
              "sources": [{"name": "human_gue_splice_etc", "path": "pretrain/windows/gue_human.fa.gz",
                           "kind": "splice-window", "weight": 0.3, "splice_layout": "gue"},
                          {"name": "human_hs3d_donors", "path": "pretrain/windows/hs3d_splice_donors.fa.gz",
                           "kind": "splice-window", "weight": 1.0, "splice_layout": "hs3d"},
                          {"name": "other", "path": "pretrain/other.fa.gz", "kind": "genomic", "weight": 1.0}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(recipe))
    rec = load_recipe(tmp_path / "mix.yaml")
    held = [h for h in seqs if "splice" in h
            and record_unit(0, "human_gue_splice_etc", h) < rec.probe_fraction + rec.val_fraction]
    # a training record of another source contains the centre of one held-out window: that one must go
    copied = held[0]
    s = seqs[copied]
    with gzip.open(root / "pretrain" / "other.fa.gz", "wt") as fh:
        fh.write(f">chrX\n{rand(500)}{s[120:280]}{rand(500)}\n")
    out = tmp_path / "out"
    assert prep_main(["--data-root", str(root), "--recipe", str(tmp_path / "mix.yaml"), "--out", str(out)]) == 0
    df = pd.read_csv(out / "splice.tsv", sep="\t")
    test_ids = set(df.loc[df["split"] == "test", "id"])
    assert test_ids and {f"gue:{h}" for h in held[1:]} <= test_ids and f"gue:{copied}" not in test_ids
    assert all(record_unit(0, "human_gue_splice_etc", i[4:]) < 0.15 for i in test_ids if i.startswith("gue:"))
    assert (df.loc[df["split"] != "test", "pretrain"] == "train").all()
    assert set(df["label"]) == {"donor", "acceptor", "none"} and (df["sequence"].str.len() == 140).all()
    donors = df[df["label"] == "donor"]["sequence"]
    assert (donors.str[70:72] == "GT").all()  # GUE and HS3D donors share one offset after cropping
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["test_dropped_by_screen"] == 1 and "other" in manifest["screened_sources"]


def test_ship_picks_the_named_run_and_refuses_large_models(tmp_path: Path) -> None:
    mod = _script()
    records = []
    for task, mode, auroc in (("brca1", "lora", 0.6), ("brca1", "full", 0.55), ("brca1_aux", "lora", 0.58),
                              ("splice", "lora", 0.9)):
        run = tmp_path / f"{task}_{mode}"
        (run / "model").mkdir(parents=True)
        (run / "model" / "finetune.json").write_text(json.dumps({"task": task, "mode": mode}))
        records.append({"task": task, "mode": mode, "run_dir": str(run),
                        "metrics": {"out_of_fold" if task != "splice" else "test": {"auroc": auroc}}})
    dest = tmp_path / "out" / "brca1_model"
    for which, want in (("best", "brca1_lora"), ("full", "brca1_full"), ("brca1_aux:lora", "brca1_aux_lora")):
        mod.ship_brca1_model(records, which, dest)
        doc = json.loads((dest / "finetune.json").read_text())
        assert f"{doc['task']}_{doc['mode']}" == want
    with pytest.raises(SystemExit, match="no BRCA1 run"):
        mod.ship_brca1_model(records, "splice:lora", dest)
    with pytest.raises(SystemExit, match="MB"):
        mod.ship_brca1_model(records, "full", dest, limit_mb=1e-9)
