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
