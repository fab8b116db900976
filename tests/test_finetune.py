"""Fine-tuning: LoRA targets, merged == unmerged, exact resume, block folds, save/load round trip, CLI errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from model_helpers import tiny_test_model

from genomod.checkpoint import load_model, save_model
from genomod.cli.main import main as cli_main
from genomod.errors import ConfigError, InputError
from genomod.finetuning import finetune, load_config
from genomod.finetuning.tasks import load_task

pytest.importorskip("peft")

WINDOW = 48


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random genomod checkpoint with every layer kind (SE, MR, LI, MHA)."""
    out = tmp_path_factory.mktemp("base") / "tiny"
    save_model(tiny_test_model(seed=1), out)
    return out


@pytest.fixture(scope="module")
def variant_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 4 kb random reference and 60 labelled SNVs on it (label depends on the ALT base: learnable)."""
    rng = random.Random(3)
    folder = tmp_path_factory.mktemp("vdata")
    seq = "".join(rng.choice("ACGT") for _ in range(4000))
    (folder / "ref.fa").write_text(">chrT\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    rows = []
    for pos in sorted(rng.sample(range(100, 3900), 60)):
        ref = seq[pos - 1]
        alt = rng.choice([b for b in "ACGT" if b != ref])
        rows.append({"chrom": "chrT", "pos": pos, "ref": ref, "alt": alt, "cls": "LOF" if alt in "AG" else "FUNC",
                     "score": float(alt in "AG") + rng.random() * 0.1,
                     "split": "test" if pos >= 3000 else ("val" if pos >= 2600 else "train")})  # block-aligned
    pd.DataFrame(rows).to_csv(folder / "variants.tsv", sep="\t", index=False)
    return folder / "variants.tsv", folder / "ref.fa"


@pytest.fixture(scope="module")
def seq_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 labelled sequences: class A carries a GGGG motif, class B does not."""
    rng = random.Random(5)
    rows = []
    for i in range(40):
        s = "".join(rng.choice("ACT") for _ in range(30))
        label = "A" if i % 2 == 0 else "B"
        if label == "A":
            s = s[:10] + "GGGG" + s[14:]
        rows.append({"name": f"s{i}", "sequence": s, "label": label})
    path = tmp_path_factory.mktemp("sdata") / "seqs.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def _variant_cfg(base: Path, data: tuple[Path, Path], out: Path, **extra: object) -> dict:
    doc = {"task": "variant-effect", "base": str(base), "mode": "lora",
           "data": {"path": str(data[0]), "reference": str(data[1]), "label_column": "cls", "positive": ["LOF"],
                    "window": WINDOW},
           "split": {"method": "folds", "n_folds": 3, "block_size": 200, "final": False},
           "lora": {"r": 2, "alpha": 4},
           "head": {"hidden": 8, "radius": 8},
           "train": {"micro_batch_size": 4, "max_steps": 6, "warmup_steps": 1, "log_interval": 1, "seed": 2,
                     "deterministic": True, "lr": 3e-3, "head_lr": 3e-3},
           "eval": {"n_boot": 20},
           "checkpoint": {"interval": 2, "keep_last": 3},
           "distributed": {"accelerator": "cpu", "devices": 1},
           "output": {"dir": str(out), "progress_bar": False}}
    for key, value in extra.items():
        section, _, name = key.partition(".")
        if name:
            doc.setdefault(section, {})[name] = value
        else:
            doc[section] = value
    return doc


class _KillAt:
    """Callback that aborts training after optimizer step ``step`` (a killed job)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __getattr__(self, name: str):
        if name.startswith("on_") or name in ("setup", "teardown", "load_state_dict"):
            return lambda *a, **k: None
        if name == "state_dict":
            return lambda *a, **k: {}
        if name == "state_key":
            return type(self).__name__
        raise AttributeError(name)

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("simulated kill")


def _losses(fit_dir: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (fit_dir / "train_log.jsonl").read_text().splitlines() if x.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_lora_wraps_only_the_intended_linear_layers(base: Path) -> None:
    from genomod.finetuning.adapters import lora_layers, target_modules, wrap_lora

    model = load_model(base)
    expected = set()
    for i, kind in enumerate(model.config.layer_types):
        expected |= {f"blocks.{i}.mlp.l1", f"blocks.{i}.mlp.l2", f"blocks.{i}.mlp.l3"}
        if kind == "MHA":
            expected |= {f"blocks.{i}.inner_mha_cls.Wqkv", f"blocks.{i}.inner_mha_cls.out_proj"}
        else:
            expected |= {f"blocks.{i}.projections", f"blocks.{i}.out_filter_dense"}
    assert set(target_modules(model, ["projections", "hyena_out", "mlp", "attention"])) == expected
    wrapped = wrap_lora(model, 2, 4, 0.0, ["projections", "hyena_out", "mlp", "attention"])
    assert set(lora_layers(wrapped)) == expected
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # groups select subsets; filters, norms and the tied embedding are never wrapped
    assert set(target_modules(load_model(base), ["attention"])) == {n for n in expected if "inner_mha_cls" in n}
    assert not any(k in n for n in expected for k in ("embedding", "norm", "filter."))


def test_merged_equals_unmerged(base: Path) -> None:
    from genomod.finetuning.adapters import merge, wrap_lora

    torch.manual_seed(0)
    wrapped = wrap_lora(load_model(base), 4, 8, 0.0, ["projections", "hyena_out", "mlp", "attention"])
    with torch.no_grad():
        for n, p in wrapped.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # adapters start at B = 0; make them matter
    tokens = torch.randint(0, 4, (2, 40)).mul(1).add(65)
    wrapped.eval()
    with torch.no_grad():
        before = wrapped.get_base_model()(tokens).logits
        plain = load_model(base)(tokens).logits
        merged = merge(wrapped)
        after = merged(tokens).logits
    assert (before - plain).abs().max() > 1e-3  # the adapters change the output ...
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)  # ... and merging keeps it
    assert not any("lora" in k for k in merged.state_dict())


def test_variant_folds_never_share_a_block(base: Path, variant_data: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = load_config(_variant_cfg(base, variant_data, tmp_path / "o"))
    data = load_task(cfg, 1024)
    assert data.folds is not None and set(data.folds) == {0, 1, 2}
    blocks = pd.DataFrame({"block": data.groups, "fold": data.folds})
    assert (blocks.groupby("block")["fold"].nunique() == 1).all()
    assert data.ref_tokens.shape == (60, WINDOW) and (data.ref_tokens != data.alt_tokens).sum(1).tolist() == [1] * 60
    # a split column that cuts a block in two is refused
    seq = variant_data[1].read_text().split("\n", 1)[1].replace("\n", "")
    bad = pd.read_csv(variant_data[0], sep="\t")
    for i, pos in enumerate((1000, 1001)):  # two variants in block 5 (block_size 200), one train, one test
        bad.loc[i, ["pos", "ref", "alt", "split"]] = [pos, seq[pos - 1], "ACGT"["ACGT".index(seq[pos - 1]) - 1],
                                                      ("train", "test")[i]]
    path = tmp_path / "bad.tsv"
    bad.to_csv(path, sep="\t", index=False)
    cfg = load_config(_variant_cfg(base, (path, variant_data[1]), tmp_path / "o2", **{"split.method": "column"}))
    with pytest.raises(InputError, match="genomic block"):
        load_task(cfg, 1024)


def test_resume_is_exact(base: Path, variant_data: tuple[Path, Path], tmp_path: Path, one_thread) -> None:
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    finetune(_variant_cfg(base, variant_data, ref_out, **{"split.n_folds": 2}))
    with pytest.raises(RuntimeError, match="simulated kill"):
        finetune(_variant_cfg(base, variant_data, out, **{"split.n_folds": 2}), extra_callbacks=[_KillAt(5)])
    ckpts = sorted(p.name for p in (out / "fits" / "fold0" / "checkpoints").iterdir())
    assert ckpts[-1] == "step_00000004"
    card = finetune(_variant_cfg(base, variant_data, out, **{"split.n_folds": 2}))
    assert card["fits"]["fold0"]["resumed_from"].endswith("step_00000004")
    for fold in ("fold0", "fold1"):
        a, b = _losses(ref_out / "fits" / fold), _losses(out / "fits" / fold)
        assert sorted(b) == list(range(1, 7))
        for step in a:
            assert abs(a[step] - b[step]) <= 1e-6, (fold, step, a[step], b[step])
    pa = pd.read_csv(ref_out / "predictions.tsv", sep="\t")
    pb = pd.read_csv(out / "predictions.tsv", sep="\t")
    np.testing.assert_allclose(pa["p_positive"], pb["p_positive"], atol=1e-6)
    assert not (out / "fits" / "fold0" / "checkpoints").exists()  # finished fits drop their checkpoints


@pytest.mark.parametrize("mode", ["lora", "full", "frozen"])
def test_save_load_round_trip_and_scoring(mode: str, base: Path, variant_data: tuple[Path, Path], tmp_path: Path,
                                          one_thread) -> None:
    from genomod.scoring import VariantScorer

    out = tmp_path / mode
    card = finetune(_variant_cfg(base, variant_data, out, mode=mode, **{"split.method": "column"}))
    assert set(card["metrics"]) == {"val", "test"} and card["metrics"]["test"]["n"] > 0
    assert card["data"]["files"][0]["sha256"] and card["parameters"]["trainable"] > 0
    frac = card["parameters"]["trainable_fraction"]
    assert (frac > 0.99) if mode == "full" else (frac < 0.5)
    model_dir = out / "model"
    files = {p.name for p in model_dir.iterdir()}
    assert {"finetune.json", "head.safetensors"} <= files
    assert ("adapter_model.safetensors" in files) == (mode == "lora")
    assert ("model.safetensors" in files) == (mode != "frozen")
    # the scorer reads the folder directly and reproduces the run's test predictions
    pred = pd.read_csv(out / "predictions.tsv", sep="\t", dtype={"chrom": str})
    test = pred[pred["split"] == "test"]
    scorer = VariantScorer(model=model_dir, reference=variant_data[1], device="cpu")
    scores = scorer.score(test[["chrom", "pos", "ref", "alt"]], mode="fast")
    np.testing.assert_allclose(scores["ft"].to_numpy(), test["p_positive"].to_numpy(), atol=1e-4)
    if mode != "frozen":  # the backbone is a plain checkpoint too
        load_model(model_dir)


def test_probes_on_finetuned_variant_model(base: Path, variant_data: tuple[Path, Path], tmp_path: Path,
                                           one_thread) -> None:
    """`eval probes` on a fine-tuned variant folder ranks by the head's P(positive), as the scorer's ``ft``."""
    from test_eval_probes import write_probe_dir

    from genomod.eval import probes as P
    from genomod.scoring import VariantScorer
    from genomod.scoring.finetuned import finetuned_variant_model

    out = tmp_path / "run"
    finetune(_variant_cfg(base, variant_data, out, mode="full", **{"split.method": "column"}))
    model_dir = out / "model"
    res = P.run_probes(model_dir, write_probe_dir(tmp_path / "probes"), n_boot=0, progress=False)
    assert set(res["probes"]) == {"nonsense", "exon_nonsense", "splice"} and "perplexity" in res["skipped"]
    assert res["settings"]["mode"] == "finetuned" and res["settings"]["window"] == WINDOW
    for m in res["probes"].values():
        assert 0.0 <= m["overall"]["auroc"] <= 1.0 and m["overall"]["n_missing"] == 0
    # the probe scores are -ft of VariantScorer on the same sequence written as a FASTA
    rng = random.Random(4)
    seq = "".join(rng.choice("ACGT") for _ in range(150))
    (tmp_path / "c.fa").write_text(f">c0\n{seq}\n")
    v = [P.ProbeVariant(0, p, seq[p], a, 0, "x") for p in (0, 40, 149) for a in "ACGT" if a != seq[p]]
    ft = finetuned_variant_model(model_dir)
    mine = P.finetuned_score_fn(ft, load_model(ft.backbone))(v, [seq])
    df = pd.DataFrame({"chrom": "c0", "pos": [x.pos + 1 for x in v], "ref": [x.ref for x in v],
                       "alt": [x.alt for x in v]})
    theirs = VariantScorer(model=model_dir, reference=tmp_path / "c.fa", device="cpu").score(df, mode="fast")["ft"]
    np.testing.assert_allclose(mine, -theirs.to_numpy(), rtol=0, atol=1e-6)
    assert np.ptp(mine) > 0


def test_auxiliary_variants_train_every_fit_and_are_never_evaluated(base: Path, variant_data: tuple[Path, Path],
                                                                   tmp_path: Path, one_thread) -> None:
    rng = random.Random(8)
    seq = "".join(rng.choice("ACGT") for _ in range(1200))
    (tmp_path / "aux.fa").write_text(f">aux0\n{seq}\n")
    rows = []
    for pos in sorted(rng.sample(range(60, 1140), 24)):
        alt = rng.choice([b for b in "ACGT" if b != seq[pos - 1]])
        rows.append({"chrom": "aux0", "pos": pos, "ref": seq[pos - 1], "alt": alt,
                     "cls": "LOF" if alt in "AG" else "FUNC"})
    rows.append({**rows[0], "ref": "N" if rows[0]["ref"] != "N" else "A"})  # REF mismatch: dropped, counted
    pd.DataFrame(rows).to_csv(tmp_path / "aux.tsv", sep="\t", index=False)
    aux = {"path": str(tmp_path / "aux.tsv"), "reference": str(tmp_path / "aux.fa")}
    card = finetune(_variant_cfg(base, variant_data, tmp_path / "run", mode="frozen",
                                 **{"data.auxiliary": aux, "train.max_steps": 2, "split.folds": [0, 2]}))
    n_main = len(pd.read_csv(variant_data[0], sep="\t"))
    counts = card["data"]["counts"]
    assert counts["auxiliary"]["used"] == 24 and counts["auxiliary"]["dropped_ref_mismatch_or_unknown_contig"] == 1
    assert counts["by_split"]["aux"] == 24 and counts["used"] == n_main + 24
    assert [f["role"] for f in card["data"]["files"][2:]] == ["auxiliary", "auxiliary reference"]
    assert set(card["fits"]) == {"fold0", "fold2"}  # split.folds: only these folds are fitted
    for k in (0, 2):  # each fold trains on the other folds plus all auxiliary rows
        fit = card["fits"][f"fold{k}"]
        assert fit["train_rows"] + fit["eval_rows"] == n_main + 24
    pred = pd.read_csv(tmp_path / "run" / "predictions.tsv", sep="\t", dtype={"chrom": str})
    assert not pred["id"].str.startswith("aux:").any() and (pred["chrom"] == "chrT").all()
    assert set(pred["split"]) == {"fold0", "fold2"} and len(pred) == sum(card["fits"][f]["eval_rows"] for f in
                                                                         ("fold0", "fold2"))
    assert card["metrics"]["out_of_fold"]["n"] == len(pred) < n_main
    with pytest.raises(ConfigError, match="split.folds"):
        load_config(_variant_cfg(base, variant_data, tmp_path / "x", **{"split.folds": [0, 3]}))
    with pytest.raises(ConfigError, match="data.auxiliary"):
        load_config(_variant_cfg(base, variant_data, tmp_path / "x", **{"data.auxiliary": {"path": aux["path"]}}))
    with pytest.raises(ConfigError, match="data.auxiliary.reference"):
        load_config(_variant_cfg(base, variant_data, tmp_path / "x",
                                 **{"data.auxiliary": {**aux, "reference": str(tmp_path / "nope.fa")}}))


def test_merge_command(base: Path, variant_data: tuple[Path, Path], tmp_path: Path, one_thread) -> None:
    out = tmp_path / "run"
    finetune(_variant_cfg(base, variant_data, out, **{"split.method": "column", "output.save_merged": False}))
    model_dir = out / "model"
    assert not (model_dir / "model.safetensors").exists()
    from genomod.errors import ModelError
    from genomod.scoring import VariantScorer

    with pytest.raises(ModelError, match="finetune merge"):
        VariantScorer(model=model_dir, reference=variant_data[1], device="cpu")
    assert cli_main(["finetune", "merge", str(model_dir), "--out", str(tmp_path / "merged")]) == 0
    merged = tmp_path / "merged"
    load_model(merged)
    pred = pd.read_csv(out / "predictions.tsv", sep="\t", dtype={"chrom": str})
    test = pred[pred["split"] == "test"]
    scores = VariantScorer(model=merged, reference=variant_data[1], device="cpu").score(
        test[["chrom", "pos", "ref", "alt"]], mode="fast")
    np.testing.assert_allclose(scores["ft"].to_numpy(), test["p_positive"].to_numpy(), atol=1e-4)


def test_sequence_classification_and_duplicates(base: Path, seq_data: Path, tmp_path: Path, one_thread) -> None:
    doc = {"task": "sequence-classification", "base": str(base), "mode": "frozen",
           "data": {"path": str(seq_data), "id_column": "name"},
           "split": {"method": "random", "val_fraction": 0.2, "test_fraction": 0.25, "seed": 1},
           "head": {"hidden": 0, "dropout": 0.0},
           "train": {"micro_batch_size": 8, "max_steps": 4, "warmup_steps": 0},
           "eval": {"n_boot": 10}, "distributed": {"accelerator": "cpu", "devices": 1},
           "output": {"dir": str(tmp_path / "seq"), "progress_bar": False}}
    card = finetune(doc)
    assert {"accuracy", "macro_f1", "auroc"} <= set(card["metrics"]["test"])
    assert card["data"]["counts"]["dropped_duplicates"] == 0
    # a sequence copied into another record: error by default, dropped from the later split with drop
    df = pd.read_csv(seq_data, sep="\t")
    df = pd.concat([df, df.assign(name=df["name"] + "_copy")], ignore_index=True)
    dup = tmp_path / "dup.tsv"
    df.to_csv(dup, sep="\t", index=False)
    doc["data"]["path"] = str(dup)
    with pytest.raises(InputError, match="same sequence"):
        load_task(load_config(doc), 1024)
    doc["split"]["duplicates"] = "drop"
    data = load_task(load_config(doc), 1024)
    assert data.counts["dropped_duplicates"] > 0
    by_split = pd.DataFrame({"g": data.groups, "s": data.split}).groupby("g")["s"].nunique()
    assert (by_split == 1).all()


def test_fasta_labels_from_headers(base: Path, tmp_path: Path) -> None:
    fa = tmp_path / "x.fa"
    fa.write_text("".join(f">r{i}|label={'yes' if i % 2 else 'no'}\n{'ACGT' * (3 + i % 3)}\n" for i in range(12)))
    doc = {"task": "sequence-classification", "base": str(base), "data": {"path": str(fa)},
           "split": {"duplicates": "drop"}}
    data = load_task(load_config(doc), 1024)
    assert data.classes == ["no", "yes"] and len(data) == 12 - data.counts["dropped_duplicates"]


def _cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = cli_main(args)
    return code, capsys.readouterr().err


def test_cli_errors(base: Path, variant_data: tuple[Path, Path], seq_data: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture) -> None:
    import yaml

    def write(doc: dict) -> str:
        path = tmp_path / "task.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    good = _variant_cfg(base, variant_data, tmp_path / "o")
    # missing label column: names the data file and the key
    code, err = _cli(["finetune", "-c", write(good), "--set", "data.label_column=klass"], capsys)
    assert code == 2 and "variants.tsv" in err and "'klass'" in err and "data.label_column" in err
    # unknown base model
    code, err = _cli(["finetune", "-c", write(good), "--set", "base=no_such_model"], capsys)
    assert code == 2 and "task.yaml: base:" in err and "no_such_model" in err
    # wrong task kind (a typo, and a kind that does not fit the data)
    code, err = _cli(["finetune", "-c", write(good), "--set", "task=variant-efect"], capsys)
    assert code == 2 and "task: one of sequence-classification" in err
    seq = {"task": "sequence-classification", "base": str(base), "data": {"path": str(variant_data[0])},
           "output": {"dir": str(tmp_path / "s"), "progress_bar": False}}
    code, err = _cli(["finetune", "-c", write(seq)], capsys)
    assert code == 2 and "data.sequence_column" in err and "'sequence'" in err
    fa = tmp_path / "y.fa"
    fa.write_text(">a|label=1\nACGT\n")
    code, err = _cli(["finetune", "-c", write({**good, "data": {**good["data"], "path": str(fa)}})], capsys)
    assert code == 2 and "is a FASTA, but variant-effect" in err
    # unknown key and a bad value name the key
    code, err = _cli(["finetune", "-c", write(good), "--set", "train.lr=0"], capsys)
    assert code == 2 and "train.lr: must be > 0" in err
    code, err = _cli(["finetune", "-c", write(good), "--set", "lora.rank=4"], capsys)
    assert code == 2 and "lora.rank: unknown key" in err
    with pytest.raises(ConfigError, match="data.reference"):
        load_config({**good, "data": {k: v for k, v in good["data"].items() if k != "reference"}})


def test_lower_layers_never_import_finetuning() -> None:
    """genomod.finetuning sits above train and heads: nothing below it (nor the scorer's hook) imports it."""
    root = Path(__file__).resolve().parents[1] / "genomod"
    lower = [p for sub in ("io", "model", "ops", "scoring", "heads", "eval", "train", "convert")
             for p in (root / sub).rglob("*.py")]
    lower += [root / "tokenizer.py", root / "checkpoint.py", root / "utils.py", root / "errors.py"]
    offenders = [str(p.relative_to(root)) for p in lower if "genomod.finetuning" in p.read_text()]
    assert not offenders, offenders


def test_lora_targets_on_an_evo2_shape() -> None:
    """The same target groups cover a converted Evo 2 model (same module names); counted on the meta device."""
    from genomod.finetuning.adapters import target_modules
    from genomod.model import build_model

    model = build_model("evo2-7b", meta=True)
    names = target_modules(model, ["projections", "hyena_out", "mlp", "attention"])
    n_attn = model.config.layer_types.count("MHA")
    assert len(names) == 5 * model.config.num_layers
    assert sum("inner_mha_cls" in n for n in names) == 2 * n_attn


def test_peft_is_imported_only_for_lora(base: Path, seq_data: Path) -> None:
    """import genomod, the CLI's help and a frozen/full config never import peft (slow to import)."""
    import subprocess
    import sys

    code = ("import sys, genomod, genomod.finetuning; from genomod.finetuning import load_config; "
            f"load_config({{'task': 'sequence-classification', 'base': {str(base)!r}, 'mode': 'frozen', "
            f"'data': {{'path': {str(seq_data)!r}}}}}); print('peft' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip().splitlines()[-1] == "False"


def test_variant_task_from_vcf(base: Path, variant_data: tuple[Path, Path], tmp_path: Path) -> None:
    """A VCF gives the label from an INFO key; REF mismatches are dropped and counted."""
    df = pd.read_csv(variant_data[0], sep="\t")
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chrT,length=4000>",
             '##INFO=<ID=CLS,Number=1,Type=String,Description="class">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for i, r in enumerate(df.itertuples()):
        ref = r.ref if i else ("A" if r.ref != "A" else "C")  # the first REF does not match the reference
        lines.append(f"chrT\t{r.pos}\t.\t{ref}\t{r.alt}\t.\t.\tCLS={r.cls}")
    vcf = tmp_path / "v.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    doc = _variant_cfg(base, (vcf, variant_data[1]), tmp_path / "o")
    doc["data"]["label_column"] = "CLS"
    data = load_task(load_config(doc), 1024)
    assert len(data) == 59 and data.counts["dropped_ref_mismatch_or_unknown_contig"] == 1
    assert data.y.tolist() == (df["cls"].iloc[1:] == "LOF").astype(int).tolist()
