"""Model correctness on CPU: causality, FFT == direct conv, grouping, chunked == one-shot, RoPE, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genomod.checkpoint import load_model, save_model
from genomod.convert.evo2 import evo2_model_config
from genomod.errors import ConfigError, ModelError
from genomod.model import PRESETS, HybridModel, ModelConfig, build_model, count_parameters
from genomod.model.blocks import HyenaBlock
from genomod.ops import reference as ref

torch.manual_seed(0)

# Parameter counts documented per preset (also in docs/model.md); computed from the shapes.
DOCUMENTED_PARAMS = {
    "tiny": 6_499_664,
    "small": 51_037_280,
    "evo2-1b": 1_107_989_760,
    "evo2-7b": 6_481_059_584,
    "evo2-7b-1m": 6_581_722_880,
    "evo2-20b-1m": 19_738_780_160,
    "evo2-40b": 40_331_142_144,
    "evo2-40b-1m": 41_117_574_144,
}


def small_cfg(**kw) -> ModelConfig:
    base = dict(hidden_size=32, num_attention_heads=4, inner_mlp_size=64, se_filter_groups=4, mr_filter_groups=8,
                li_filter_groups=16, mr_filter_length=16, layer_types=["SE", "MR", "LI", "MHA", "SE", "MR", "LI"],
                max_seqlen=256)
    base.update(kw)
    return ModelConfig(**base)


def dna(b: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.tensor([65, 67, 71, 84])[torch.randint(0, 4, (b, n), generator=g)]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parameter_counts(name):
    cfg = ModelConfig.preset(name)
    model = build_model(cfg, meta=True)
    assert model.num_parameters() == DOCUMENTED_PARAMS[name] == count_parameters(cfg)


def test_evo2_presets_match_published_configs(shared_dir):
    yaml = pytest.importorskip("yaml")
    pairs = {"evo2-1b": "evo2-1b-8k.yml", "evo2-7b": "evo2-7b-8k.yml", "evo2-7b-1m": "evo2-7b-1m.yml",
             "evo2-40b": "evo2-40b-8k.yml", "evo2-40b-1m": "evo2-40b-1m.yml", "evo2-20b-1m": "evo2-20b-1m.yml"}
    for preset, fname in pairs.items():
        pub = evo2_model_config(yaml.safe_load((shared_dir / "evo2_configs" / fname).read_text()))
        ours = ModelConfig.preset(preset)
        for key in ("hidden_size", "layer_types", "num_attention_heads", "inner_mlp_size", "se_filter_groups",
                    "mr_filter_groups", "li_filter_groups", "se_filter_length", "mr_filter_length",
                    "li_state_size", "rotary_base", "rotary_scaling_factor", "qkv_proj_bias", "interleave",
                    "column_split_hyena", "evo2_style_activations"):
            assert getattr(pub, key) == getattr(ours, key), (preset, key)


@pytest.mark.parametrize("kind", ["SE", "MR", "LI", "MHA"])
def test_causality_per_operator(kind):
    cfg = small_cfg(layer_types=[kind])
    model = HybridModel(cfg).eval()
    x = dna(1, 64)
    y = x.clone()
    y[0, 40] = 84 if x[0, 40] != 84 else 65
    a, b = model(x).logits, model(y).logits
    # FFT convolutions spread float32 rounding over all positions: "unchanged" means within 1e-5
    assert (a[:, :40] - b[:, :40]).abs().max() < 1e-5
    assert (a[:, 40:] - b[:, 40:]).abs().max() > 1e-3


def test_causality_whole_model():
    model = HybridModel(small_cfg()).eval()
    x = dna(2, 80)
    for t in (1, 17, 79):
        y = x.clone()
        y[:, t] = 78  # N
        diff = (model(x).logits - model(y).logits).abs()
        assert diff[:, :t].max() < 1e-5 and diff[:, t:].max() > 1e-3


def test_fft_conv_equals_direct_conv():
    x = torch.randn(2, 6, 300, dtype=torch.float64)
    h = torch.randn(6, 130, dtype=torch.float64)
    direct = torch.zeros_like(x)
    for t in range(300):
        for j in range(min(t + 1, 130)):
            direct[..., t] += h[:, j] * x[..., t - j]
    assert torch.allclose(ref.fft_causal_conv(x.float(), h.float()).double(), direct, atol=1e-4)
    assert torch.allclose(ref.direct_causal_conv(x.float(), h.float()).double(), direct, atol=1e-4)


@pytest.mark.parametrize(("length", "taps"), [(639, 128), (512, 512), (300, 130), (7, 3), (1, 1)])
def test_fast_fft_length_has_no_wraparound_and_small_factors(length, taps):
    n = ref.fast_fft_length(length, taps)
    assert n >= length + min(taps, length) - 1
    m = n
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    assert m == 1
    assert ref.fast_fft_length(639, 128) == 768  # not 2 x 639 = 1278 (prime factor 71)


@pytest.mark.parametrize("length", [1, 2, 5, 40])
@pytest.mark.parametrize("with_state", [False, True])
def test_short_depthwise_conv_on_strided_views_equals_conv1d(length, with_state):
    """The shifted-sum FIR on a strided channel view (the featurizer's x2 / x1 / v), with or without carried
    state and for chunks shorter than the filter, equals conv1d over the explicitly padded input."""
    torch.manual_seed(0)
    z = torch.randn(2, length, 3 * 5)
    w = torch.randn(3 * 5, 1, 4)
    state = torch.randn(2, 3 * 5, 3) if with_state else None
    zt = z.transpose(1, 2)
    for i in range(3):
        x, wi = zt[:, i::3], w[i::3]
        pad = state[:, i::3] if with_state else torch.zeros(2, 5, 3)
        want = torch.nn.functional.conv1d(torch.cat([pad, x], dim=-1), wi, groups=5)
        got = ref.causal_depthwise_conv(x, wi, state=None if state is None else state[:, i::3])
        assert got.is_contiguous()
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_modal_filter_lean_equals_dense():
    lp = -torch.rand(8, 16, 1) * 0.5
    res = torch.randn(8, 16)
    assert torch.allclose(ref.modal_filter(lp, res, 500), ref.modal_filter_dense(lp, res, 500), atol=1e-5)


def test_grouped_filters_equal_ungrouped():
    grouped = small_cfg(layer_types=["SE", "MR", "LI"], se_filter_groups=4, mr_filter_groups=4, li_filter_groups=4)
    model_g = HybridModel(grouped).eval()
    ungrouped = grouped.replace(se_filter_groups=32, mr_filter_groups=32, li_filter_groups=32)
    model_u = HybridModel(ungrouped).eval()
    state = model_g.state_dict()
    expanded = {}
    for k, v in state.items():
        if k.endswith((".filter.h", ".filter.log_poles", ".filter.residues")):
            v = v.repeat_interleave(32 // 4, dim=0)
        expanded[k] = v
    model_u.load_state_dict(expanded)
    x = dna(1, 70)
    assert torch.allclose(model_g(x).logits, model_u(x).logits, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 7, 64, 100])
def test_chunked_forward_equals_one_shot(chunk):
    model = HybridModel(small_cfg()).eval()
    x = dna(2, 200, seed=3)
    with torch.no_grad():
        full = model(x, return_hidden=["blocks.2", "blocks.3.mlp.l3"])
        chunked = model.forward_chunked(x, chunk_size=chunk, return_hidden=["blocks.2", "blocks.3.mlp.l3"])
    # float32 tolerance: FFT sizes differ between chunkings
    assert torch.allclose(full.logits, chunked.logits, atol=2e-4, rtol=1e-4)
    for name in full.hidden:
        assert torch.allclose(full.hidden[name], chunked.hidden[name], atol=2e-4, rtol=1e-4)


def test_prefix_cache_reuse_matches_full_forward():
    model = HybridModel(small_cfg()).eval()
    x = dna(1, 120)
    alts = x.repeat(3, 1)
    alts[:, 90:] = dna(3, 30, seed=9)
    with torch.no_grad():
        pre = model(x[:, :90], use_cache=True)
        suffix = model(alts[:, 90:], cache=pre.cache.expand(3))
        full = model(alts)
    assert torch.allclose(suffix.logits, full.logits[:, 90:], atol=2e-4)


@pytest.mark.parametrize("layers", [["SE", "MR", "LI", "MHA", "SE", "MR", "LI"], ["SE", "LI", "MHA", "SE", "MR"],
                                    ["SE", "MR", "LI", "MHA"]])
def test_prefill_equals_cached_forward_and_ignores_the_batch(layers):
    # prefill computes only the outputs later blocks read (here: the trailing SE/MR blocks, the last LI or MHA
    # block's last positions); its logits and cache equal a full cached forward's, and each row's bits are
    # those of the row alone (no batch-dependent rounding)
    model = HybridModel(small_cfg(layer_types=layers)).eval()
    x = dna(3, 90, seed=4)
    need = model.config.trailing_outputs(90)
    assert need[-1] == 1 and need[0] == 90
    with torch.no_grad():
        full = model(x, use_cache=True)
        logits, cache = model.prefill(x)
        alone, alone_cache = model.prefill(x[1:2])
        cont = model(dna(3, 20, seed=5), cache=cache)
        cont_full = model(dna(3, 20, seed=5), cache=full.cache)
    assert torch.allclose(logits, full.logits[:, -1], atol=1e-4)
    assert cache.offset == 90
    for got, want in zip(cache.layers, full.cache.layers):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].shape == want[key].shape
            assert torch.allclose(got[key], want[key], atol=1e-4), key
    assert torch.allclose(cont.logits, cont_full.logits, atol=2e-4)
    assert torch.equal(alone[0], logits[1])
    for got, row in zip(alone_cache.layers, cache.layers):
        assert all(torch.equal(got[key][0], row[key][1]) for key in got)


def test_li_tables_are_kept_per_length_and_follow_the_weights():
    # inference keeps each Hyena-LI layer's pole powers and filter for the last length; an in-place change of
    # the poles (an optimizer step, load_state_dict) recomputes them, and values equal the uncached path
    model = HybridModel(small_cfg(layer_types=["LI", "SE"])).eval()
    li = model.blocks[0].filter
    x = dna(2, 64, seed=6)
    with torch.no_grad():
        first = model(x[:, :40], use_cache=True)
        kept = li._tables[1]
        again = model(x[:, :40], use_cache=True)
        assert li._tables[1] is kept
        li.log_poles.mul_(0.5)
        changed = model(x[:, :40], use_cache=True)
        assert li._tables[1] is not kept
        later = model(x[:, 40:], cache=changed.cache)
    assert torch.equal(first.logits, again.logits)
    assert not torch.allclose(first.logits, changed.logits)
    with torch.enable_grad():  # autograd: nothing is kept, the filter is computed in the graph
        grad_out = model(x, use_cache=True)
    assert torch.allclose(torch.cat([changed.logits, later.logits], 1), grad_out.logits.detach(), atol=2e-4)
    # a forward without cache takes the step path with the kept filter at inference: the reference operator's
    # arithmetic, bit for bit
    with torch.no_grad():
        kept_path = model(x).logits
        assert li.keeps_tables(64) and li._tables[0][0] == 64
    with torch.enable_grad():
        assert not li.keeps_tables(64)
        op_path = model(x).logits.detach()
    assert torch.equal(kept_path, op_path)
    lp = li.modal_params(32)[0]
    powers = ref.modal_powers(lp, 10)
    assert powers.shape == (32, lp.shape[1], 11)
    assert torch.allclose(powers[:, :, 3], torch.exp(lp * 3))
    # a table longer than the chunk serves every helper as the exact-length one does
    res = li.modal_params(32)[1]
    state, u = torch.randn(2, 32, lp.shape[1]), torch.randn(2, 32, 7)
    longer, exact = ref.modal_powers(lp, 10), ref.modal_powers(lp, 7)
    assert torch.equal(ref.modal_filter(lp, res, 7, powers=longer), ref.modal_filter(lp, res, 7, powers=exact))
    assert torch.equal(ref.modal_state_update(state, u, lp, longer), ref.modal_state_update(state, u, lp, exact))
    assert torch.equal(ref.modal_state_contribution(state, lp, res, 7, longer),
                       ref.modal_state_contribution(state, lp, res, 7, exact))


def test_loading_a_model_does_not_import_dynamo():
    # a meta-device build (load_model, parameter counts) must not initialise the embedding: normal_ on a meta
    # tensor imports torch._dynamo, about a second of every command's start-up
    import subprocess
    import sys

    code = ("import sys; from genomod.checkpoint import load_model; from genomod.model import build_model; "
            "load_model('default'); build_model('tiny', meta=True); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "False"
    with torch.device("meta"):
        assert HybridModel(small_cfg()).embedding_layer.weight.is_meta


def test_rope_interpolation_reduces_to_plain_rope_at_scale_one():
    pos = torch.arange(50)
    c1, s1 = ref.rotary_cos_sin(pos, 16, 10000.0, 1.0)
    inv = 1.0 / (10000.0 ** (torch.arange(0, 16, 2).float() / 16))
    assert torch.allclose(c1, torch.cos(pos[:, None].float() * inv))
    assert torch.allclose(s1, torch.sin(pos[:, None].float() * inv))
    c8, _ = ref.rotary_cos_sin(pos * 8, 16, 10000.0, 8.0)
    assert torch.allclose(c8, c1, atol=1e-5)  # interpolation: position 8t at scale 8 == position t


def test_checkpoint_round_trip_bit_identical(tmp_path):
    model = HybridModel(small_cfg()).eval()
    save_model(model, tmp_path / "ck", training={"steps": 3})
    loaded = load_model(tmp_path / "ck")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = dna(1, 50)
    assert torch.equal(model(x).logits, loaded(x).logits)
    assert loaded.checkpoint_info["training"] == {"steps": 3}


def test_checkpoint_errors(tmp_path):
    model = HybridModel(small_cfg()).eval()
    ck = save_model(model, tmp_path / "ck")
    weights = (ck / "model.safetensors").read_bytes()
    # truncated weights
    (ck / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ModelError, match="corrupt or truncated"):
        load_model(ck)
    (ck / "model.safetensors").write_bytes(weights)
    # shape mismatch between config and weights
    doc = json.loads((ck / "config.json").read_text())
    doc["model"]["inner_mlp_size"] = 48
    (ck / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="shape"):
        load_model(ck)
    # newer format version
    doc["model"]["inner_mlp_size"] = 64
    doc["format_version"] = 99
    (ck / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="newer genomod"):
        load_model(ck)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope")


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="unknown key"):
        ModelConfig.from_dict({"hidden_sise": 3})
    with pytest.raises(ConfigError, match="num_attention_heads"):
        small_cfg(num_attention_heads=5)
    with pytest.raises(ConfigError, match="layer_types"):
        small_cfg(layer_types=["SE", "XX"])
    with pytest.raises(ConfigError, match="newer"):
        ModelConfig.from_dict({"version": 99})
    cfg = ModelConfig.from_dict({"pattern": "SE MR LI MHA", "num_layers": 6})
    assert cfg.layer_types == ["SE", "MR", "LI", "MHA", "SE", "MR"]
    assert ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_rc_average_log_likelihoods():
    model = HybridModel(small_cfg()).eval()
    x = dna(1, 40)
    ll = model.log_likelihoods(x)
    assert torch.isnan(ll[0, 0]) and torch.isfinite(ll[0, 1:]).all()
    both = model.log_likelihoods(x, rc_average=True)
    assert torch.isfinite(both).all()


def test_tiny_model_overfits_real_dna(shared_dir):
    import gzip

    with gzip.open(shared_dir / "data" / "pretrain" / "hg38_chr2_1-2333275.fa.gz", "rt") as fh:
        seq = "".join(line.strip() for line in fh if not line.startswith(">"))
    window = seq[200_000:200_256].upper()
    from genomod.tokenizer import encode

    x = torch.from_numpy(encode(window))[None]
    torch.manual_seed(0)
    model = HybridModel(small_cfg(hidden_size=64, se_filter_groups=8, mr_filter_groups=8, li_filter_groups=64))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        logits = model(x).logits
        loss = torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * np.log(4), losses[::20]


def test_hyena_block_has_vortex_names():
    block = HyenaBlock(small_cfg(), 0, "MR")
    names = set(dict(block.named_parameters()))
    assert {"projections.weight", "filter.short_filter_weight", "filter.h", "filter.D",
            "out_filter_dense.weight", "mlp.l3.weight", "pre_norm.scale"} <= names


def test_query_blocked_attention_over_cache_equals_one_shot(monkeypatch):
    import genomod.ops.attention as attn

    monkeypatch.setattr(attn, "QUERY_BLOCK", 16)
    model = HybridModel(small_cfg(layer_types=["MHA", "SE", "MHA"])).eval()
    x = dna(2, 150, seed=5)
    with torch.no_grad():
        full = model(x).logits
        chunked = model.forward_chunked(x, chunk_size=60).logits
    assert torch.allclose(full, chunked, atol=2e-4)


def test_activation_checkpointing_is_a_block_option():
    """set_activation_checkpointing flags every block: same loss and gradients, same parameter names."""
    torch.manual_seed(0)
    model = HybridModel(small_cfg()).train()
    tokens = dna(2, 64)
    names = list(model.state_dict())

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = model(tokens).logits.float().logsumexp(-1).mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain_loss, plain_grads = loss_and_grads()
    assert model.set_activation_checkpointing(True) is model
    assert all(block.checkpoint_activations for block in model.blocks) and list(model.state_dict()) == names
    ckpt_loss, ckpt_grads = loss_and_grads()
    assert torch.equal(plain_loss, ckpt_loss)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain_grads, ckpt_grads))
    with torch.no_grad():  # inference and cached forwards are never checkpointed
        out = model(tokens, use_cache=True)
    assert out.cache is not None
    model.set_activation_checkpointing(False)
    assert not any(block.checkpoint_activations for block in model.blocks)
