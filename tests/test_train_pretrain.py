"""Pretraining: loss falls on real DNA, exact resume, corrupt-checkpoint fallback, DDP parity, config errors."""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from genomod.checkpoint import load_model, save_model
from genomod.errors import ConfigError
from genomod.model import HybridModel, ModelConfig
from genomod.tokenizer import encode
from genomod.train import average_checkpoints, check_inputs, load_config, run_pretraining, validation_loss
from genomod.train.checkpointing import STATE_JSON, STATE_TENSORS, find_resume_checkpoint, list_checkpoints

REPO = Path(__file__).resolve().parents[1]
REAL_FASTA = REPO.parent / "shared" / "data" / "pretrain" / "hg38_chr2_1-2333275.fa.gz"
STORED = 256  # stored shard window; training crops 128 at a random offset


def _write_shards(out: Path, tokens: np.ndarray, n_train: int = 192, n_val: int = 24) -> Path:
    starts = [s for s in range(0, len(tokens) - STORED, STORED) if (tokens[s : s + STORED] == ord("N")).mean() < 0.1]
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", starts[:n_train]), ("val", starts[-n_val:])):
        with h5py.File(out / f"{split}.h5", "w") as h5:
            h5["tokens"] = np.stack([tokens[s : s + STORED] for s in rows]).astype(np.uint8)
            h5["index"] = np.array([[0, 0, s] for s in rows], dtype=np.int64)
    (out / "manifest.json").write_text(json.dumps({"format": "genomod-shards-1", "window": STORED}))
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards from real human DNA (hg38 chr2 head) when /work/shared exists, else a synthetic Markov sequence."""
    out = tmp_path_factory.mktemp("shards")
    if REAL_FASTA.is_file():
        with gzip.open(REAL_FASTA, "rb") as fh:
            seq = b"".join(line.strip() for line in fh if not line.startswith(b">"))
        tokens = encode(seq[:3_000_000]).astype(np.uint8)
        tokens = tokens[np.argmax(tokens != ord("N")):]  # skip the leading telomere N run
    else:
        rng = np.random.default_rng(0)
        bases = np.frombuffer(b"ACGT", dtype=np.uint8)
        state, seq = 0, np.empty(80_000, dtype=np.uint8)
        for i in range(len(seq)):  # a sticky Markov chain: learnable structure
            state = state if rng.random() < 0.7 else rng.integers(4)
            seq[i] = bases[state]
        tokens = seq
    return _write_shards(out / "d", tokens)


def _overrides(shards: Path, out: Path, **extra: object) -> list[str]:
    base = {
        "model.hidden_size": 64, "model.layer_types": "[SE, MR, LI, MHA]", "model.inner_mlp_size": 128,
        "model.li_filter_groups": 64, "model.mr_filter_length": 32, "model.max_seqlen": 256,
        "data.shards": str(shards), "data.window": 128, "data.val_batches": 2, "data.rc_augment": True,
        "train.micro_batch_size": 4, "train.lr": 3e-3, "train.warmup_steps": 2, "train.max_steps": 12,
        "train.val_interval": 6, "train.log_interval": 1, "train.seed": 3, "train.deterministic": True,
        "checkpoint.interval": 3, "checkpoint.keep_last": 3, "output.dir": str(out),
        "output.progress_bar": False, "output.tensorboard": False, "distributed.accelerator": "cpu",
        "distributed.devices": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


class _KillAt:
    """Callback that aborts training after optimizer step ``step`` (simulates a killed job)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __getattr__(self, name: str):  # behave as a no-op Lightning callback for every other hook
        if name.startswith("on_") or name in ("setup", "teardown", "state_dict", "load_state_dict",
                                               "state_key"):
            return (lambda *a, **k: {}) if name == "state_dict" else (
                type(self).__name__ if name == "state_key" else (lambda *a, **k: None))
        raise AttributeError(name)

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("simulated kill")


@pytest.fixture(scope="module")
def reference_run(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 12-step run."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ref") / "run"
    run_pretraining(load_config(None, _overrides(shards, out)))
    return out


def test_loss_falls_on_real_dna(shards: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    summary = run_pretraining(load_config(None, _overrides(
        shards, out, **{"train.max_steps": 50, "train.val_interval": 25, "checkpoint.interval": 50})))
    losses = _losses(out)
    first, last = np.mean([losses[s] for s in range(1, 6)]), np.mean([losses[s] for s in range(46, 51)])
    assert last < first - 1.0, (first, last)
    assert summary["steps"] == 50 and summary["final_val_loss"] < 1.5  # < ~ln(4) per nucleotide + margin
    assert (out / "summary.json").is_file() and (out / "logs" / "version_0" / "metrics.csv").is_file()
    # the exported model loads with genomod.load_model and reproduces the trained model's loss
    model = load_model(out / "final")
    with h5py.File(shards / "val.h5") as h5:
        batch = torch.from_numpy(h5["tokens"][:2, 64:192].astype(np.int64))
    with torch.no_grad():
        logits = model(batch).logits
    val = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 512), batch[:, 1:].reshape(-1))
    assert float(val) < 1.6
    assert model.checkpoint_info["training"]["config"]["train"]["max_steps"] == 50


def test_kill_and_resume_is_exact(shards: Path, reference_run: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    cfg = load_config(None, _overrides(shards, out))
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_pretraining(cfg, extra_callbacks=[_KillAt(7)])  # dies after step 7; last checkpoint is step 6
    assert [p.name for p in list_checkpoints(out / "checkpoints")][-1] == "step_00000006"
    summary = run_pretraining(load_config(None, _overrides(shards, out)))
    assert summary["resumed_from"].endswith("step_00000006")
    ref, got = _losses(reference_run), _losses(out)
    assert sorted(got) == list(range(1, 13))
    for step in range(1, 13):
        assert abs(got[step] - ref[step]) <= 1e-6, (step, got[step], ref[step])
    a, b = load_model(reference_run / "final"), load_model(out / "final")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-6), k


def test_corrupt_latest_checkpoint_falls_back(shards: Path, reference_run: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        run_pretraining(load_config(None, _overrides(shards, out)), extra_callbacks=[_KillAt(9)])
    ckpts = list_checkpoints(out / "checkpoints")
    assert [p.name for p in ckpts] == ["step_00000003", "step_00000006", "step_00000009"]
    latest = ckpts[-1] / STATE_TENSORS  # truncate the latest state file
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    (ckpts[-2] / STATE_JSON).write_text("{not json")  # and corrupt the JSON of the one before
    with caplog.at_level(logging.WARNING, logger="genomod.train"):
        assert find_resume_checkpoint(out / "checkpoints") == ckpts[0]
        summary = run_pretraining(load_config(None, _overrides(shards, out)))
    assert "step_00000009" in caplog.text and "step_00000006" in caplog.text
    assert summary["resumed_from"].endswith("step_00000003")
    ref, got = _losses(reference_run), _losses(out)
    assert max(abs(got[s] - ref[s]) for s in range(1, 13)) <= 1e-6


def test_ddp_two_processes_matches_single(shards: Path, reference_run: Path, tmp_path: Path) -> None:
    """2 ranks x micro-batch 2 see exactly the 4 samples per step that 1 rank x micro-batch 4 sees.

    DDP averages the two ranks' mean losses/gradients (equal token counts), so only float summation order
    differs: losses agree to 1e-4.
    """
    out = tmp_path / "ddp"
    ov = _overrides(shards, out, **{"train.micro_batch_size": 2, "distributed.devices": 2,
                                    "distributed.strategy": "ddp", "train.deterministic": False})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "scripts" / "pretrain.py")] + [x for o in ov for x in ("--set", o)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    ref, got = _losses(reference_run), _losses(out)
    diffs = [abs(got[s] - ref[s]) for s in range(1, 13)]
    assert max(diffs) < 1e-4, diffs


def test_activation_checkpointing_same_loss(shards: Path, reference_run: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "ac"
    run_pretraining(load_config(None, _overrides(shards, out, **{"train.max_steps": 12,
                                                                   "train.activation_checkpointing": True})))
    ref, got = _losses(reference_run), _losses(out)
    assert max(abs(got[s] - ref[s]) for s in range(1, 4)) < 1e-5


@pytest.mark.parametrize("override, key", [
    ("train.lrr=1", "train.lrr"),
    ("train.lr=0", "train.lr"),
    ("train.lr=-1", "train.lr"),
    ("bogus.x=1", "bogus"),
    ("data.window=100000", "data.window"),
    ("model.hiden_size=3", "hiden_size"),
    ("model.hidden_size=-1", "hidden_size"),
    ("distributed.strategy=magic", "distributed.strategy"),
    ("train.precision=fp8", "train.precision"),
    ("checkpoint.keep_last=0", "checkpoint.keep_last"),
    ("train.betas=[0.9]", "train.betas"),
])
def test_config_errors_name_the_key(shards: Path, tmp_path: Path, override: str, key: str) -> None:
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, _overrides(shards, out) + [override])
    assert not out.exists()  # nothing started


def test_config_file_and_script_errors(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import pretrain
    finally:
        sys.path.pop(0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 0.001\n  warmpu_steps: 3\n")
    assert pretrain.main(["--config", str(bad)]) == 2
    assert "train.warmpu_steps" in capsys.readouterr().err
    assert pretrain.main(["--check"] + [x for o in _overrides(shards, tmp_path / "o") for x in ("--set", o)]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["lr"] == 3e-3
    for name in ("pretrain_tiny_cpu.yaml", "context_extension.yaml"):  # shipped examples parse (data aside)
        doc = __import__("yaml").safe_load((REPO / "configs" / name).read_text())
        assert set(doc) <= {"model", "data", "train", "checkpoint", "distributed", "output", "init_from",
                            "init_layers"}


def test_config_loading_reads_no_file(tmp_path: Path) -> None:
    """Shards are checked when the run starts (or by --check), not when the config loads; nothing is written."""
    out = tmp_path / "out"
    cfg = load_config(None, [f"data.shards={tmp_path / 'missing'}", "train.max_steps=1", f"output.dir={out}"])
    assert cfg.train.max_steps == 1 and cfg.data.shards == [str(tmp_path / "missing")]
    for start in (check_inputs, run_pretraining):
        with pytest.raises(ConfigError, match=r"data\.shards: .*missing: no train\.h5"):
            start(cfg)
    assert not out.exists()


def test_exponent_without_dot_is_a_number(tmp_path: Path) -> None:
    """YAML 1.1 reads ``1e-4`` (no dot) as text: learning rates written that way (file or --set) still load."""
    (tmp_path / "c.yaml").write_text(f"data:\n  shards: [{tmp_path}]\ntrain:\n  lr: 3e-4\n  max_steps: 1\n")
    assert load_config(tmp_path / "c.yaml", []).train.lr == 3e-4
    assert load_config(tmp_path / "c.yaml", ["train.lr=1e-4"]).train.lr == 1e-4
    with pytest.raises(ConfigError, match="train.lr: must be a number"):
        load_config(tmp_path / "c.yaml", ["train.lr=fast"])


def test_config_base_merges_sections(tmp_path: Path) -> None:
    """``base:`` reads another config first and merges this one over it section by section; cycles and a missing
    base are errors naming the file."""
    (tmp_path / "a.yaml").write_text(f"data:\n  shards: [{tmp_path}]\n  window: 64\ntrain:\n  lr: 3.0e-4\n"
                                     "  max_steps: 10\n  seed: 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\ntrain:\n  seed: 2\n  betas: [0.8, 0.9]\n")
    cfg = load_config(tmp_path / "sub" / "b.yaml", ["train.max_steps=5"])
    assert (cfg.data.window, cfg.train.lr, cfg.train.seed, cfg.train.max_steps) == (64, 3e-4, 2, 5)
    assert list(cfg.train.betas) == [0.8, 0.9]
    assert "base" not in cfg.to_dict()
    (tmp_path / "c.yaml").write_text("base: d.yaml\n")
    (tmp_path / "d.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match=r"c\.yaml includes itself"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "e.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"e\.yaml: base: .*nowhere\.yaml: config file not found"):
        load_config(tmp_path / "e.yaml")
    (tmp_path / "f.yaml").write_text("base: [a.yaml]\n")
    with pytest.raises(ConfigError, match="base: expected the path of another pretraining config"):
        load_config(tmp_path / "f.yaml")


def test_default_model_recipes_load() -> None:
    """Every pretraining stage recipe of the shipped model (most derive from another through ``base:``) validates,
    and a derived stage keeps what it does not set from its base."""
    recipes = sorted((REPO / "recipes" / "default_model").glob("pretrain*.yaml"))
    cfgs = {p.stem: load_config(p) for p in recipes}
    assert len(cfgs) >= 10
    s5, s8 = cfgs["pretrain_stage5"], cfgs["pretrain_stage8"]
    assert (s8.data.junction_weight, s5.data.junction_weight) == (25.0, 10.0)
    assert (s8.data.shards, s8.train.lr, s8.data.window) == (s5.data.shards, s5.train.lr, s5.data.window)
    assert s8.train.seed != s5.train.seed


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_validation_loss_of_a_checkpoint_matches_the_run(shards: Path, tmp_path: Path, precision: str) -> None:
    """``validation_loss`` on a run's final checkpoint gives the val_loss the run logged at its last step."""
    out = tmp_path / "r"
    cfg = load_config(None, _overrides(shards, out, **{"train.max_steps": 4, "train.val_interval": 4,
                                                       "train.precision": precision}))
    summary = run_pretraining(cfg)
    logged = summary["val_curve"][-1]["val_loss"]
    assert validation_loss(load_model(out / "final", dtype="float32"), cfg) == pytest.approx(logged, abs=1e-5)


def test_average_checkpoints(tmp_path: Path) -> None:
    """The soup is the weighted mean of every tensor; bad weights and different shapes are refused."""
    cfg = ModelConfig.preset("tiny", hidden_size=32, layer_types=["SE", "MR", "LI", "MHA"], inner_mlp_size=64,
                             li_filter_groups=32, mr_filter_length=16, max_seqlen=64)
    models = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        models.append(HybridModel(cfg))
        save_model(models[-1], tmp_path / f"m{seed}")
    paths = [tmp_path / f"m{i}" for i in range(3)]
    soup = average_checkpoints(paths, [0.5, 0.25, 0.25])
    states = [m.state_dict() for m in models]
    for name, t in soup.state_dict().items():
        want = 0.5 * states[0][name] + 0.25 * states[1][name] + 0.25 * states[2][name]
        torch.testing.assert_close(t, want, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(average_checkpoints(paths[:2]).state_dict()["embedding_layer.weight"],
                               (states[0]["embedding_layer.weight"] + states[1]["embedding_layer.weight"]) / 2)
    for bad in ([0.5, 0.5, 0.5], [1.5, -0.5, 0.0], [1.0]):
        with pytest.raises(ConfigError, match="weights must be 3 non-negative numbers"):
            average_checkpoints(paths, bad)
    with pytest.raises(ConfigError, match="at least two"):
        average_checkpoints(paths[:1])
    wide = ModelConfig.preset("tiny", hidden_size=48, layer_types=["SE", "MR", "LI", "MHA"], inner_mlp_size=64,
                              li_filter_groups=48, mr_filter_length=16, max_seqlen=64)
    save_model(HybridModel(wide), tmp_path / "wide")
    with pytest.raises(ConfigError, match="differs from .* in hidden_size"):
        average_checkpoints([paths[0], tmp_path / "wide"])
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import soup as soup_script
    finally:
        sys.path.pop(0)
    assert soup_script.main([str(paths[0]), str(paths[1]), "--out", str(tmp_path / "s")]) == 0
    written = json.loads((tmp_path / "s" / "config.json").read_text())["training"]["soup"]
    assert written == {"members": [str(paths[0]), str(paths[1])], "weights": [0.5, 0.5]}
    torch.testing.assert_close(load_model(tmp_path / "s").state_dict()["embedding_layer.weight"],
                               average_checkpoints(paths[:2]).state_dict()["embedding_layer.weight"])
    assert soup_script.main([str(paths[0]), str(tmp_path / "wide"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_final_validation_logged_once(shards: Path, tmp_path: Path) -> None:
    """A last step between validations is validated after fit: one val row for it in the log and the summary."""
    out = tmp_path / "v"
    summary = run_pretraining(load_config(None, _overrides(shards, out, **{"train.max_steps": 3,
                                                                          "train.val_interval": 2})))
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_loss" in r] == [2, 3]
    assert [r["step"] for r in summary["val_curve"]] == [2, 3]
    assert summary["final_val_loss"] == rows[-1]["val_loss"]


def test_atomic_dir_replaces_on_success_and_keeps_the_old_folder_on_failure(tmp_path):
    """Checkpoints, exported and fine-tuned models are published through ``atomic_dir``."""
    from genomod.utils import atomic_dir

    final = tmp_path / "out" / "model"
    with atomic_dir(final) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir()) and tmp.parent == final.parent
        (tmp / "a.txt").write_text("one")
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), atomic_dir(final, fsync=True) as tmp:
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("interrupted")
    assert (final / "a.txt").read_text() == "one"  # the old folder is untouched
    assert sorted(p.name for p in final.parent.iterdir()) == ["model"]  # no temporary folder left
    with atomic_dir(final, fsync=True) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]  # replaced whole, not merged


def test_depth_growth_from_a_checkpoint(shards: Path, reference_run: Path, tmp_path: Path) -> None:
    """``init_layers`` grows the init_from model: the built module computes the checkpoint's function at step 0."""
    from genomod.train.run import build

    src = reference_run / "final"
    grow = ["init_layers=[0, 1, null, 2, 3, null]", "model.layer_types=[SE, MR, SE, LI, MHA, MHA]"]
    cfg = load_config(None, _overrides(shards, tmp_path / "g") + [f"init_from={src}"] + grow)
    run = build(cfg)
    x = torch.randint(0, 512, (2, 64))
    old = load_model(str(src)).eval()
    with torch.no_grad():
        torch.testing.assert_close(run.module.model.eval()(x).logits, old(x).logits)
    assert len(run.module.model.blocks) == 6
    assert json.loads((tmp_path / "g" / "config.json").read_text())["init_layers"] == [0, 1, None, 2, 3, None]
    with pytest.raises(ConfigError, match="init_layers: needs init_from"):
        load_config(None, _overrides(shards, tmp_path / "n") + grow)
    bad = load_config(None, _overrides(shards, tmp_path / "b") + [f"init_from={src}", "init_layers=[0, 1, 3, 2]"])
    with pytest.raises(ConfigError, match=r"init_layers\[2\]: layer 2 is LI but init_from layer 3 is MHA"):
        check_inputs(bad)


def test_junction_aux_loss_by_hand() -> None:
    from genomod.train.module import junction_aux_loss

    weights = torch.tensor([[1.0, 25.0, 25.0, 0.0, 0.1]])
    logits = torch.tensor([[0.0, 2.0, -1.0, 5.0, 1.0]])[..., None]
    # targets 0, 1, 1, (weight 0: not counted), 0
    want = (math.log(2) + math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0)) + math.log1p(math.exp(1.0))) / 4
    assert abs(float(junction_aux_loss(logits, weights, 25.0)) - want) < 1e-6


def test_junction_aux_needs_a_distinct_junction_weight(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.junction_aux_weight"):
        load_config(None, _overrides(shards, tmp_path / "x", **{"data.junction_aux_weight": 0.5}))


def test_junction_aux_head_trains_resumes_exactly_and_is_not_exported(shards: Path, tmp_path: Path) -> None:
    """Shards with a softmask track whose value 2 marks every G and the base after it (a learnable "junction"):
    the head's loss starts at ln 2 and falls, a killed run resumes to the uninterrupted run's losses, and the exported
    model holds the model's tensors only."""
    torch.set_num_threads(1)
    marked = tmp_path / "marked"
    marked.mkdir()
    for split in ("train", "val"):
        with h5py.File(shards / f"{split}.h5") as src, h5py.File(marked / f"{split}.h5", "w") as dst:
            tok = src["tokens"][:]
            mask = np.zeros_like(tok)
            mask[tok == ord("G")] = 2
            mask[:, 1:][tok[:, :-1] == ord("G")] = 2
            dst["tokens"], dst["index"], dst["softmask"] = tok, src["index"][:], mask
    (marked / "manifest.json").write_text((shards / "manifest.json").read_text())
    extra = {"data.junction_weight": 5.0, "data.junction_aux_weight": 1.0, "train.max_steps": 24,
             "checkpoint.interval": 6}
    ref_out, out = tmp_path / "ref", tmp_path / "run"
    run_pretraining(load_config(None, _overrides(marked, ref_out, **extra)))
    rows = [json.loads(x) for x in (ref_out / "train_log.jsonl").read_text().splitlines()]
    aux = [r["junction_aux_loss"] for r in rows if "junction_aux_loss" in r]
    assert len(aux) == 24 and abs(aux[0] - math.log(2)) < 1e-6, aux  # the zero-initialised head starts at ln 2
    assert np.mean(aux[-4:]) < math.log(2) - 0.01, aux
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_pretraining(load_config(None, _overrides(marked, out, **extra)), extra_callbacks=[_KillAt(14)])
    summary = run_pretraining(load_config(None, _overrides(marked, out, **extra)))
    assert summary["resumed_from"].endswith("step_00000012")
    ref, got = _losses(ref_out), _losses(out)
    assert max(abs(got[s] - ref[s]) for s in range(1, 25)) <= 1e-6
    model = load_model(out / "final")
    assert set(model.state_dict()) == set(HybridModel(model.config).state_dict())
    assert not any("junction" in k for k in model.state_dict())
