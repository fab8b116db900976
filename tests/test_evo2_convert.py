"""Evo 2 checkpoint converter: key/shape checks, Wqkv column split, split ``.part`` files, safe loading, CLI.

These tests need no vortex: a genomod model with Evo 2's parameter names stands in for the reference and
is written the way Evo 2 ships it (training Wqkv layout, TE ``_extra_state`` BytesIO, rotary ``inv_freq``).
"""

from __future__ import annotations

import collections
import io
import json
from pathlib import Path

import pytest
import torch
import yaml

from genomod.checkpoint import load_model
from genomod.cli.main import main as cli_main
from genomod.convert.evo2 import (
    EVO2_CONFIGS,
    EVO2_PRESETS,
    checkpoint_parts,
    convert_evo2,
    evo2_config_dir,
    evo2_model_config,
    evo2_sequence_scores,
    guess_config_name,
    split_wqkv,
    unsplit_wqkv,
    write_presets,
)
from genomod.data_paths import presets_dir
from genomod.errors import ConfigError, InputError, ModelError
from genomod.model import HybridModel, ModelConfig
from genomod.model.config import PRESETS


class Payload:
    """An arbitrary picklable class: ``weights_only`` loading must refuse it."""


def small_yaml(tmp_path: Path, name: str = "evo2-7b-1m.yml", num_layers: int = 5) -> Path:
    """A shrunk Evo 2 YAML (pattern/options kept, width 32) written to ``tmp_path``."""
    cfg = yaml.safe_load((evo2_config_dir() / name).read_text())
    for k in ("hcs_layer_idxs", "hcm_layer_idxs", "hcl_layer_idxs", "attn_layer_idxs"):
        cfg[k] = [i for i in cfg[k] if i < num_layers]
    cfg.update(hidden_size=32, num_filters=32, num_attention_heads=4, inner_mlp_size=48, hcl_filter_groups=32,
               hcm_filter_groups=8, hcs_filter_groups=8, num_layers=num_layers, qkv_proj_bias=True)
    path = tmp_path / "small.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def reference_model(cfg_path: Path) -> HybridModel:
    """A random fp32 model with stable LI poles, standing in for a vortex model."""
    torch.manual_seed(0)
    model = HybridModel(evo2_model_config(cfg_path, dtype="float32"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("log_poles"):
                p.copy_(-p.abs() - 0.05)
            elif name.endswith("bias"):
                p.normal_()  # non-zero Wqkv bias: checks the bias permutation too
    return model.eval()


def evo2_state(model: HybridModel) -> dict:
    """``model``'s weights as an Evo 2 .pt holds them (training Wqkv layout, TE extra state, inv_freq)."""
    state = collections.OrderedDict(model.state_dict())
    cfg = model.config
    for i in cfg.layer_indices("MHA"):
        for s in ("weight", "bias"):
            k = f"blocks.{i}.inner_mha_cls.Wqkv.{s}"
            if k in state:
                state[k] = split_wqkv(state[k], cfg.num_attention_heads)
        state[f"blocks.{i}.inner_mha_cls.rotary_emb.inv_freq"] = torch.ones(cfg.head_dim // 2)
    for i in cfg.layer_indices("SE"):
        state[f"blocks.{i}.projections._extra_state"] = io.BytesIO(b"te fp8 metadata")
    return state


def _logits(model: HybridModel, length: int = 40) -> torch.Tensor:
    x = torch.tensor([65, 67, 71, 84])[torch.randint(0, 4, (2, length), generator=torch.Generator().manual_seed(3))]
    with torch.no_grad():
        return model(x).logits


def test_shipped_configs_match_presets(tmp_path: Path) -> None:
    """All seven shipped YAMLs translate; the six shipped ``evo2-*`` preset files are exactly their translation."""
    assert sorted(p.name for p in evo2_config_dir().glob("*.yml")) == sorted(EVO2_CONFIGS.values())
    for name in EVO2_CONFIGS:
        evo2_model_config(name)
    assert {p for p in PRESETS if p.startswith("evo2")} == set(EVO2_PRESETS)
    for preset, name in EVO2_PRESETS.items():
        assert ModelConfig.preset(preset) == evo2_model_config(name).replace(name=preset)
    regenerated = write_presets(tmp_path)
    for path in regenerated:
        assert path.read_text() == (presets_dir() / path.name).read_text(), f"{path.name}: rerun write_presets()"
    assert evo2_model_config("7b-1m").rotary_scaling_factor == 128.0
    assert evo2_model_config("7b-262k").rotary_scaling_factor == 32.0
    assert evo2_model_config("40b").rotary_scaling_factor == 1.0
    assert evo2_model_config("40b").layer_indices("MHA") == [3, 10, 17, 24, 31, 35, 42, 49]


def test_guess_config_and_parts(tmp_path: Path) -> None:
    assert guess_config_name("x/evo2_7b.pt") == "7b-1m"
    assert guess_config_name("evo2_40b_base.pt.part3") == "40b"
    assert guess_config_name("mine.pt") is None
    with pytest.raises(InputError, match="not found"):
        checkpoint_parts(tmp_path / "none.pt")
    for i in (0, 1, 3):
        (tmp_path / f"m.pt.part{i}").write_bytes(b"x")
    with pytest.raises(InputError, match="part2 is missing"):
        checkpoint_parts(tmp_path / "m.pt")


def test_wqkv_permutation_is_vortex_column_split() -> None:
    """``unsplit_wqkv`` equals vortex custom_load_state_dict's reshape/unbind/cat (written out here)."""
    heads, hd, d = 4, 3, 12
    w = torch.randn(3 * d, d)
    t = w.permute(1, 0).reshape(d, heads, 3, hd)
    wq, wk, wv = t.unbind(dim=-2)
    ref = torch.cat([wq.reshape(d, -1), wk.reshape(d, -1), wv.reshape(d, -1)], dim=-1).permute(1, 0)
    assert torch.equal(unsplit_wqkv(w, heads), ref)
    assert torch.equal(split_wqkv(unsplit_wqkv(w, heads), heads), w)
    b = torch.randn(3 * d)
    bq, bk, bv = b.reshape(heads, 3, hd).unbind(dim=-2)
    assert torch.equal(unsplit_wqkv(b, heads), torch.cat([bq.reshape(-1), bk.reshape(-1), bv.reshape(-1)]))


@pytest.mark.parametrize("split", [False, True])
def test_convert_round_trip(tmp_path: Path, split: bool) -> None:
    """Evo 2-style .pt (or .part0..2) -> genomod checkpoint -> load_model: identical logits, metadata."""
    cfg_path = small_yaml(tmp_path)
    ref = reference_model(cfg_path)
    pt = tmp_path / "evo2_small.pt"
    torch.save(evo2_state(ref), pt)
    given = pt
    if split:
        data = pt.read_bytes()
        cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
        for i in range(3):
            (tmp_path / f"evo2_small.pt.part{i}").write_bytes(data[cuts[i] : cuts[i + 1]])
        pt.unlink()
        given = tmp_path / "evo2_small.pt.part0"
    out = convert_evo2(given, tmp_path / "out", config=cfg_path, dtype="float32")
    assert not list(out.glob("*.tmp")), "temporary merged file left behind"
    model = load_model(out)
    assert model.config.dtype == "float32" and model.config.rotary_scaling_factor == 128.0
    torch.testing.assert_close(_logits(model), _logits(ref), rtol=0, atol=1e-5)
    src = json.loads((out / "config.json").read_text())["training"]["source"]
    assert src["parts"] == (3 if split else 1) and src["config"] == "small.yml" and len(src["sha256"]) == 64
    assert src["dropped_keys"] == len(ref.config.layer_indices("MHA")) + len(ref.config.layer_indices("SE"))
    # the default (no dtype) keeps the file's dtypes and runs in bfloat16
    out16 = convert_evo2(given, tmp_path / "out16", config=cfg_path)
    assert load_model(out16).config.dtype == "bfloat16"


def test_column_split_false_keeps_wqkv(tmp_path: Path) -> None:
    cfg_path = small_yaml(tmp_path)
    data = yaml.safe_load(cfg_path.read_text())
    data["column_split"] = False
    cfg_path.write_text(yaml.safe_dump(data))
    ref = reference_model(cfg_path)
    torch.save(ref.state_dict(), tmp_path / "plain.pt")
    out = convert_evo2(tmp_path / "plain.pt", tmp_path / "out", config=cfg_path, dtype="float32")
    torch.testing.assert_close(_logits(load_model(out)), _logits(ref), rtol=0, atol=1e-5)


def test_convert_errors(tmp_path: Path) -> None:
    cfg_path = small_yaml(tmp_path)
    state = evo2_state(reference_model(cfg_path))
    bad = dict(state)
    del bad["blocks.1.filter.h"]
    bad["blocks.1.filter.extra"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match=r"missing keys: blocks\.1\.filter\.h; unknown keys: blocks\.1\.filter\.extra"):
        convert_evo2(tmp_path / "bad.pt", tmp_path / "o1", config=cfg_path)
    wrong = dict(state)
    wrong["norm.scale"] = torch.ones(7)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match=r"norm\.scale \(7,\) \(config expects \(32,\)\)"):
        convert_evo2(tmp_path / "wrong.pt", tmp_path / "o2", config=cfg_path)
    torch.save({"w": Payload()}, tmp_path / "evil.pt")  # an arbitrary class: refused, never unpickled
    with pytest.raises(ModelError, match="refused to load"):
        convert_evo2(tmp_path / "evil.pt", tmp_path / "o3", config=cfg_path)
    with pytest.raises(ConfigError, match="cannot tell which Evo 2 model"):
        convert_evo2(tmp_path / "wrong.pt", tmp_path / "o4")
    with pytest.raises(ConfigError, match="not a known name"):
        convert_evo2(tmp_path / "wrong.pt", tmp_path / "o5", config="9b")
    with pytest.raises(ModelError, match="does not match config evo2-7b"):  # a real config, wrong model
        convert_evo2(tmp_path / "wrong.pt", tmp_path / "o6", config="7b")


def test_evo2_scoring_convention(tmp_path: Path) -> None:
    """Mean over t=1..L-1 of log p(x_t|x_<t) (first token unscored); BOS variant scores all; RC averaged."""
    model = reference_model(small_yaml(tmp_path))
    seq = "ACGTTGCAAGGCTTAACGTA"
    toks = torch.tensor([list(seq.encode())])
    logp = torch.log_softmax(model(toks).logits.double(), -1)
    expect = logp[0, :-1].gather(-1, toks[0, 1:, None]).mean().item()
    assert evo2_sequence_scores(model, [seq])[0] == pytest.approx(expect, abs=1e-6)
    bos = torch.cat([torch.zeros(1, 1, dtype=torch.long), toks], dim=1)
    logp_b = torch.log_softmax(model(bos).logits.double(), -1)
    expect_b = logp_b[0, :-1].gather(-1, bos[0, 1:, None]).sum().item()
    assert evo2_sequence_scores(model, [seq], prepend_bos=True, reduce_method="sum")[0] == pytest.approx(expect_b, abs=1e-5)
    rc = "TACGTTAAGCCTTGCAACGT"
    both = evo2_sequence_scores(model, [seq, rc])
    assert evo2_sequence_scores(model, [seq], average_reverse_complement=True)[0] == pytest.approx(sum(both) / 2)


def test_cli_convert_evo2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = small_yaml(tmp_path)
    torch.save(evo2_state(reference_model(cfg_path)), tmp_path / "e.pt")
    rc = cli_main(["convert", "evo2", "--checkpoint", str(tmp_path / "e.pt"), "--config", str(cfg_path),
                   "--out", str(tmp_path / "out")])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    assert load_model(tmp_path / "out").config.num_layers == 5
    rc = cli_main(["convert", "evo2", "--checkpoint", str(tmp_path / "e.pt"), "--out", str(tmp_path / "o2")])
    assert rc == 2 and "--config" in capsys.readouterr().err
