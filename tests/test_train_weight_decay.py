"""Weight decay is chosen by parameter kind: every nn.Linear weight decays, nothing else does."""

from __future__ import annotations

import torch

from genomod.model import HybridModel, ModelConfig
from genomod.train.module import param_groups


def _groups(model: torch.nn.Module) -> tuple[set[str], set[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    return {names[id(p)] for p in decay["params"]}, {names[id(p)] for p in no_decay["params"]}


def test_linear_weights_decay_and_nothing_else() -> None:
    model = HybridModel(ModelConfig.preset("tiny", hidden_size=64, li_filter_groups=64, inner_mlp_size=128,
                                           num_attention_heads=2, se_filter_groups=8, mr_filter_groups=8))
    decay, no_decay = _groups(model)
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert decay == linear
    # the Hyena output projections decay like attention's out_proj (the old name filter missed them)
    hyena_out = {n for n in decay if n.endswith("out_filter_dense.weight")}
    assert hyena_out and any(n.endswith("out_proj.weight") for n in decay)
    for name in no_decay:
        assert not name.endswith(("projections.weight", "out_filter_dense.weight", "mlp.l1.weight"))
    assert "embedding_layer.weight" in no_decay
    assert any(n.endswith("filter.h") for n in no_decay) and any(n.endswith("log_poles") for n in no_decay)
    assert decay.isdisjoint(no_decay)
    assert len(decay) + len(no_decay) == sum(1 for _ in model.parameters())


def test_tagged_parameter_and_untied_unembedding() -> None:
    model = HybridModel(ModelConfig.preset("tiny", hidden_size=64, li_filter_groups=64, inner_mlp_size=128,
                                           num_attention_heads=2, se_filter_groups=8, mr_filter_groups=8,
                                           tie_embeddings=False))
    model.blocks[0].mlp.l1.weight._no_weight_decay = True
    decay, no_decay = _groups(model)
    assert "blocks.0.mlp.l1.weight" in no_decay
    assert "unembed.weight" in decay  # an untied output projection is a Linear weight


def test_log_poles_are_clamped_to_stable_filters() -> None:
    from genomod.train.config import TrainArgs
    from genomod.train.module import PretrainModule, clamp_log_poles

    cfg = ModelConfig.preset("tiny", hidden_size=64, li_filter_groups=64, inner_mlp_size=128,
                             num_attention_heads=2, se_filter_groups=8, mr_filter_groups=8)
    model = HybridModel(cfg)
    poles = [p for n, p in model.named_parameters() if n.endswith("log_poles")]
    assert poles
    with torch.no_grad():
        poles[0][0, 0, 0] = 0.03
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert clamp_log_poles(model, 0.0) == 1 and float(poles[0].max()) <= 0.0
    assert clamp_log_poles(model, 0.0) == 0
    # a module started from weights with a growing mode is projected on construction (and after each update)
    module = PretrainModule(cfg, TrainArgs(max_log_pole=0.0), total_steps=1, init_weights=weights)
    assert all(float(p.max()) <= 0.0 for n, p in module.model.named_parameters() if n.endswith("log_poles"))
    off = PretrainModule(cfg, TrainArgs(max_log_pole=None), total_steps=1, init_weights=weights)
    assert max(float(p.max()) for n, p in off.model.named_parameters() if n.endswith("log_poles")) > 0.0
